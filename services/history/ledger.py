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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.postgres import PostgresAggregateRecorder
from eventsourcing.sqlite import SQLiteAggregateRecorder
from psycopg.sql import SQL, Identifier

from services.domain.outbound import FailureKind, OutboundCommand, command_aggregate_id

_CHUNK = 500


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """Where one command stands in the ledger, read in bulk (``OutboundLedger.outcomes``)."""

    command_id: str
    channel: str
    state: str  # claimed, sent or failed
    at: datetime  # when it reached that state
    provider_ref: str | None = None  # the provider's message id, once sent
    failure_kind: str | None = None  # once failed: a FailureKind


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

    def record_failed(
        self, command: OutboundCommand, reason: str, code: str | None, *, kind: FailureKind
    ) -> None:
        """``kind`` says whether another channel may be tried (``HARD_FAILURES``)."""
        command.mark_failed(reason=reason, code=code, kind=kind)
        self.save(command)

    def outcomes(self, command_ids: Iterable[str]) -> dict[str, CommandOutcome]:
        """The commands of ``command_ids`` the ledger knows, by command id: a few statements
        for thousands of commands (``find`` is one read per command), for campaign tracking."""
        wanted = {command_aggregate_id(c): c for c in command_ids}
        ids = list(wanted)
        found: dict[str, CommandOutcome] = {}
        for start in range(0, len(ids), _CHUNK):
            for stored in self._events_of(ids[start : start + _CHUNK]):
                event = self.mapper.to_domain_event(stored)
                if isinstance(event, OutboundCommand.Claimed):
                    found[event.command_id] = CommandOutcome(
                        event.command_id, event.channel, "claimed", event.timestamp
                    )
                    continue
                command_id = wanted.get(stored.originator_id)  # type: ignore[call-overload]
                before = found.get(command_id) if command_id else None
                if before is None:  # no Claimed event read: not one of ours
                    continue
                if isinstance(event, OutboundCommand.Sent):
                    found[before.command_id] = CommandOutcome(
                        before.command_id,
                        before.channel,
                        "sent",
                        event.timestamp,
                        event.provider_ref,
                    )
                elif isinstance(event, OutboundCommand.Failed):
                    found[before.command_id] = CommandOutcome(
                        before.command_id,
                        before.channel,
                        "failed",
                        event.timestamp,
                        failure_kind=event.kind,
                    )
        return found

    def _events_of(self, aggregate_ids: Sequence[UUID]) -> list[StoredEvent]:
        """The stored events of several aggregates in one statement, in version order."""
        recorder = self.recorder
        if isinstance(recorder, SQLiteAggregateRecorder):
            marks = ",".join("?" * len(aggregate_ids))
            with recorder.datastore.transaction(commit=False) as c:
                c.execute(
                    f"SELECT * FROM {recorder.events_table_name} WHERE originator_id IN "
                    f"({marks}) ORDER BY originator_id, originator_version",
                    [i.hex for i in aggregate_ids],
                )
                rows = c.fetchall()
            return [
                StoredEvent(
                    originator_id=recorder.convert_originator_id(r["originator_id"]),
                    originator_version=r["originator_version"],
                    topic=r["topic"],
                    state=r["state"],
                )
                for r in rows
            ]
        if isinstance(recorder, PostgresAggregateRecorder):
            statement = SQL(
                "SELECT * FROM {schema}.{table} WHERE originator_id = ANY(%s) "
                "ORDER BY originator_id, originator_version"
            ).format(
                schema=Identifier(recorder.datastore.schema),
                table=Identifier(recorder.events_table_name),
            )
            as_text = recorder.datastore.originator_id_type == "text"
            params = [str(i) for i in aggregate_ids] if as_text else list(aggregate_ids)
            with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
                curs.execute(statement, (params,))
                rows = curs.fetchall()
            return [
                StoredEvent(
                    originator_id=UUID(str(r["originator_id"])),
                    originator_version=r["originator_version"],
                    topic=r["topic"],
                    state=bytes(r["state"]),
                )
                for r in rows
            ]
        return [e for i in aggregate_ids for e in recorder.select_events(i)]
