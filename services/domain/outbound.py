"""A send command's record: claimed before the provider is called, then sent or failed.

The aggregate of the outbound ledger (``services/history/ledger.py`` stores it): its id is
derived from the command id, so a command has one record however often it is delivered.
"""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event


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
