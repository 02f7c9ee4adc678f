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

import hashlib
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError

from services.domain.outbound import OutboundCommand, command_aggregate_id


class OutboundLedger(Application[UUID]):
    name = "outbound"

    def find(self, command_id: str) -> OutboundCommand | None:
        try:
            return self.repository.get(command_aggregate_id(command_id))
        except AggregateNotFoundError:
            return None

    def claim(self, command_id: str, *, channel: str, to: str) -> OutboundCommand:
        """The command's record, created now if this is the first attempt.  The recipient is
        kept as the SHA-256 of the address: the ledger outlives an erasure and is in backups,
        and no one reads the address back from it (the command on Kafka carries it)."""
        found = self.find(command_id)
        if found is not None:
            return found
        to = hashlib.sha256(to.encode()).hexdigest()
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
