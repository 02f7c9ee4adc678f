"""A send command's record: claimed before the provider is called, then sent or failed.

The aggregate of the outbound ledger (``services/history/ledger.py`` stores it): its id is
derived from the command id, so a command has one record however often it is delivered.
"""

from __future__ import annotations

from typing import Literal
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

# Why a command failed, as far as what comes next is concerned:
# - rejected: the provider refused it for good (an invalid number, a hard bounce at SMTP time);
# - gave_up: it kept failing transiently and the retries were used up;
# - no_sender: this hub has no sender for the channel (nothing on it can ever go out);
# - refused: our own policy said no (consent withdrawn, a messaging window): a person who
#   opted out must not be chased on another channel;
# - unknown: recorded before the kind was (class_version 1).
FailureKind = Literal["rejected", "gave_up", "no_sender", "refused", "unknown"]
# The failures after which a campaign may try the recipient's next channel.
HARD_FAILURES: frozenset[str] = frozenset({"rejected", "gave_up", "no_sender"})


def command_aggregate_id(command_id: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"/switchboard/outbound/{command_id}")


class OutboundCommand(Aggregate):
    TOPIC = "switchboard:OutboundCommand"

    class Event(Aggregate.Event):
        TOPIC = "switchboard:OutboundCommand.Event"

    class Claimed(Aggregate.Created):
        TOPIC = "switchboard:OutboundCommand.Claimed"
        command_id: str
        channel: str
        to: str

    class Sent(Event):
        TOPIC = "switchboard:OutboundCommand.Sent"
        provider_ref: str

    class Failed(Event):
        TOPIC = "switchboard:OutboundCommand.Failed"
        reason: str
        code: str | None
        kind: str  # a FailureKind
        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict) -> None:
            state["kind"] = "unknown"  # no fallback after a failure of unknown kind

    class Snapshot(Aggregate.Snapshot):
        TOPIC = "switchboard:OutboundCommand.Snapshot"

    @staticmethod
    def create_id(command_id: str, channel: str, to: str) -> UUID:
        return command_aggregate_id(command_id)

    @event(Claimed)
    def __init__(self, command_id: str, channel: str, to: str) -> None:
        self.state = "claimed"
        self.provider_ref: str | None = None
        self.failure_kind: str | None = None

    @event(Sent)
    def mark_sent(self, provider_ref: str) -> None:
        self.state = "sent"
        self.provider_ref = provider_ref

    @event(Failed)
    def mark_failed(self, reason: str, code: str | None, kind: str) -> None:
        self.state = "failed"
        self.failure_kind = kind

    @property
    def is_done(self) -> bool:
        return self.state in ("sent", "failed")
