"""The union of all interaction events, and the one fast way in and out of bytes."""

from typing import Annotated, TypeVar, get_args

from pydantic import Field, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from contracts.calls import CallAnswered, CallEnded, CallMissed, CallRinging, VoicemailRecorded
from contracts.consent import ConsentChanged
from contracts.delivery import DeliveryStatusChanged
from contracts.envelope import InteractionEvent
from contracts.errors import InputError
from contracts.messages import MessageReceived, MessageSent
from contracts.routing import AgentPresenceChanged, ContactRouted, OfferAnswered

__all__ = [
    "INTERACTION_TYPES",
    "MAX_PAYLOAD_BYTES",
    "Interaction",
    "InvalidInteraction",
    "dump_interaction",
    "parse_interaction",
    "parse_payload",
    "parse_presence",
]

Interaction = Annotated[
    CallRinging
    | CallAnswered
    | CallEnded
    | CallMissed
    | VoicemailRecorded
    | MessageReceived
    | MessageSent
    | DeliveryStatusChanged
    | ConsentChanged
    | ContactRouted
    | OfferAnswered,
    Field(discriminator="type"),
]

INTERACTION_TYPES: dict[str, type[InteractionEvent]] = {
    cls.model_fields["type"].default: cls for cls in get_args(get_args(Interaction)[0])
}

# Bigger than any legitimate event (the body limit is 64 Ki characters); refusing early keeps a
# hostile or broken producer from making the consumer parse megabytes.
MAX_PAYLOAD_BYTES = 1024 * 1024
_MAX_REASON_CHARS = 1000

_ADAPTER: TypeAdapter[Interaction] = TypeAdapter(Interaction)

T = TypeVar("T")


class InvalidInteraction(InputError):
    """A payload that is not a valid interaction event; the consumer dead-letters it.

    ``reason`` is a short summary for people (``field.path: message; ...``), ``raw`` the payload.
    """

    def __init__(self, reason: str, raw: bytes) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw


def parse_interaction(raw: bytes | str) -> Interaction:
    """Validate one JSON payload into its event class, or raise InvalidInteraction."""
    return parse_payload(_ADAPTER, raw, InvalidInteraction)


def parse_payload(adapter: TypeAdapter[T], raw: bytes | str, error: type[InvalidInteraction]) -> T:
    """Bytes from Kafka -> a contract, or ``error``: nothing else ever escapes.

    Strict: on the wire a time is a string and a flag a boolean, as the JSON Schemas say;
    ``"yes"`` or a number of seconds is refused rather than guessed at.
    """
    if isinstance(raw, str):
        try:
            raw = raw.encode()
        except UnicodeEncodeError as exc:
            raise error(f"payload is not valid UTF-8: {exc}", b"") from None
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise error(f"payload is {len(raw)} bytes, over the {MAX_PAYLOAD_BYTES} byte limit", raw)
    try:
        return adapter.validate_json(raw, strict=True)
    except ValidationError as exc:
        raise error(_summarize(exc), raw) from None
    except Exception as exc:  # a validator's own bug must cost one record, not the consumer
        raise error(f"payload could not be read: {type(exc).__name__}: {exc}", raw) from None


def dump_interaction(event: InteractionEvent) -> bytes:
    """The compact JSON bytes of ``event``, as published to Kafka."""
    return event.model_dump_json().encode()


def _summarize(exc: ValidationError) -> str:
    parts = [_describe(error) for error in exc.errors(include_url=False, include_input=False)]
    reason = "; ".join(parts)
    if len(reason) > _MAX_REASON_CHARS:
        reason = reason[: _MAX_REASON_CHARS - 3] + "..."
    return reason


def _describe(error: ErrorDetails) -> str:
    known = ", ".join(sorted(INTERACTION_TYPES))
    if error["type"] == "union_tag_invalid":
        tag = error.get("ctx", {}).get("tag")
        return f"type: unknown type {tag!r}; known types: {known}"
    if error["type"] == "union_tag_not_found":
        return f"type: missing; known types: {known}"
    loc = error["loc"]
    # The first element of a discriminated union's location is the tag, not a field.
    if loc and loc[0] in INTERACTION_TYPES:
        loc = loc[1:]
    path = ".".join(str(part) for part in loc)
    return f"{path}: {error['msg']}" if path else error["msg"]


_PRESENCE: TypeAdapter[AgentPresenceChanged] = TypeAdapter(AgentPresenceChanged)


def parse_presence(value: bytes) -> AgentPresenceChanged:
    """A record of ``sb.presence.v1`` -> ``AgentPresenceChanged``, or ``InvalidInteraction``:
    strict and size-capped like every interaction (``parse_payload``), nothing else escapes."""
    return parse_payload(_PRESENCE, value, InvalidInteraction)
