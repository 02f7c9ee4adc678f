"""The outbound ledger: one event-sourced record per send command (the idempotency key).

Claimed before the provider is called, marked sent or failed after; so a command seen
again (Kafka redelivery, a retried campaign) is not sent twice, and every attempt is
auditable.  The window in which a crash still causes a duplicate: after the provider
accepted the message and before ``mark_sent`` commits (one provider round trip plus one
local commit, typically a few to a few hundred milliseconds).  A command found still
*claimed* on restart is sent again, because we cannot know whether the provider got it:
at-least-once rather than maybe-never.  E-mail keeps the same Message-ID on a resend, so
mail clients show one message.
"""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError


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

    class Snapshot(Aggregate.Snapshot):
        TOPIC = "switchboard:OutboundCommand.Snapshot"

    @staticmethod
    def create_id(command_id: str, channel: str, to: str) -> UUID:
        return command_aggregate_id(command_id)

    @event(Claimed)
    def __init__(self, command_id: str, channel: str, to: str) -> None:
        self.state = "claimed"
        self.provider_ref: str | None = None

    @event(Sent)
    def mark_sent(self, provider_ref: str) -> None:
        self.state = "sent"
        self.provider_ref = provider_ref

    @event(Failed)
    def mark_failed(self, reason: str, code: str | None) -> None:
        self.state = "failed"

    @property
    def is_done(self) -> bool:
        return self.state in ("sent", "failed")


class OutboundLedger(Application[UUID]):
    name = "outbound"

    def find(self, command_id: str) -> OutboundCommand | None:
        try:
            return self.repository.get(command_aggregate_id(command_id))
        except AggregateNotFoundError:
            return None

    def claim(self, command_id: str, *, channel: str, to: str) -> OutboundCommand:
        """The command's record, created now if this is the first attempt."""
        found = self.find(command_id)
        if found is not None:
            return found
        command = OutboundCommand(command_id=command_id, channel=channel, to=to)
        try:
            self.save(command)
        except IntegrityError:  # another dispatcher claimed it at the same moment
            return self.repository.get(command.id)
        return command

    def record_sent(self, command: OutboundCommand, provider_ref: str) -> None:
        command.mark_sent(provider_ref=provider_ref)
        self.save(command)

    def record_failed(self, command: OutboundCommand, reason: str, code: str | None) -> None:
        command.mark_failed(reason=reason, code=code)
        self.save(command)
