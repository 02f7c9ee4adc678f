"""Switchboard's Kafka contracts: pydantic models of everything that crosses the wire.

This package imports nothing from the rest of the project. The JSON Schemas and the AsyncAPI
document in ``contracts/schemas/`` are generated from it by ``python -m contracts.schema_gen``.
"""

from contracts.addresses import (
    AddressError,
    call_party,
    identity_of,
    is_withheld_party,
    normalize_email,
    normalize_party,
    normalize_phone,
    parse_any_address,
    withheld_caller,
)
from contracts.calls import CallAnswered, CallEnded, CallMissed, CallRinging, VoicemailRecorded
from contracts.consent import ConsentChanged
from contracts.deadletter import DeadLetter
from contracts.delivery import DeliveryStatus, DeliveryStatusChanged, status_advances, status_of
from contracts.envelope import Channel, Direction, InteractionEvent
from contracts.interactions import (
    INTERACTION_TYPES,
    MAX_PAYLOAD_BYTES,
    Interaction,
    InvalidInteraction,
    dump_interaction,
    parse_interaction,
    parse_presence,
)
from contracts.messages import MAX_BODY_CHARS, AttachmentRef, MessageReceived, MessageSent
from contracts.outbound import (
    InvalidCommand,
    MessageTemplate,
    SendMessage,
    dump_command,
    parse_command,
)
from contracts.routing import (
    AgentPresenceChanged,
    ContactRouted,
    OfferAnswered,
    RouteTarget,
    RoutingFacts,
)
from contracts.topics import (
    DEADLETTER_TOPIC,
    INTERACTIONS_TOPIC,
    OUTBOUND_TOPIC,
    PRESENCE_TOPIC,
    ROUTING_TOPIC,
)

__all__ = [
    "DEADLETTER_TOPIC",
    "INTERACTIONS_TOPIC",
    "INTERACTION_TYPES",
    "MAX_BODY_CHARS",
    "MAX_PAYLOAD_BYTES",
    "OUTBOUND_TOPIC",
    "PRESENCE_TOPIC",
    "ROUTING_TOPIC",
    "AddressError",
    "AgentPresenceChanged",
    "AttachmentRef",
    "CallAnswered",
    "CallEnded",
    "CallMissed",
    "CallRinging",
    "Channel",
    "ConsentChanged",
    "ContactRouted",
    "DeadLetter",
    "DeliveryStatus",
    "DeliveryStatusChanged",
    "Direction",
    "Interaction",
    "InteractionEvent",
    "InvalidCommand",
    "InvalidInteraction",
    "MessageReceived",
    "MessageSent",
    "MessageTemplate",
    "OfferAnswered",
    "RouteTarget",
    "RoutingFacts",
    "SendMessage",
    "VoicemailRecorded",
    "call_party",
    "dump_command",
    "dump_interaction",
    "identity_of",
    "is_withheld_party",
    "normalize_email",
    "normalize_party",
    "normalize_phone",
    "parse_any_address",
    "parse_command",
    "parse_interaction",
    "parse_presence",
    "status_advances",
    "status_of",
    "withheld_caller",
]
