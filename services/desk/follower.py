"""Opens and joins conversations from the contacts the recorder stored: exactly once.

Modelled on ``projections.follower``: it polls the customer history's notification log for
``Customer.InteractionRecorded`` and saves the changed desks together with its position
(tracking name ``desk``) in ONE transaction of the same store.  So a contact joins exactly
one conversation exactly once, whether the process is killed mid-batch or two followers run.

Two followers: the tracking row only moves forward, and after loading the desks of a batch
the follower reads the position again — a follower whose batch another has already placed
sees it and moves on; one that loaded a desk before the other's commit fails on the desk's
version (``IntegrityError``), rereads the position and continues from there.  An agent's
change to a desk between load and save is the same conflict: the batch is placed again.

The desk never stops on one event (as ``projections.follower``): a batch that fails for any
other reason while the store answers is placed again one event at a time, and an event that
fails on its own is skipped — logged at ERROR, counted (``skips``) and recorded with its
reason (``skipped()``, the history's ``skipped_events`` table) in the same transaction as the
position that moves past it.  While the store does not answer, the batch is retried.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError, Tracking

from contracts.errors import ConfigError
from projections.follower import Follower, NewEvents
from services.desk.contacts import contact_of, routed_to_agent
from services.desk.store import load_or_start_desk, save_desks
from services.domain.customer import Customer
from services.domain.desk import ConversationIndex, CustomerDesk
from services.history.customers import CustomerHistory
from services.history.sealing import ErasedEvent
from services.history.sql import SkippedEvent

log = logging.getLogger(__name__)

TRACKING_NAME = "desk"
TOPICS = (Customer.InteractionRecorded.TOPIC,)
# The store does not answer: nothing is wrong with the events, the batch is retried.
_STORE_DOWN = (OperationalError, InterfaceError)


class DeskFollower(Follower):
    name = "desk"
    position = 0

    def __init__(
        self,
        history: CustomerHistory,
        *,
        quiet_gap: timedelta,
        batch_size: int = 500,
        idle_wait: float = 0.05,
        new_events: NewEvents | None = None,
    ) -> None:
        self.new_events = new_events or NewEvents()
        self.history = history
        self.quiet_gap = quiet_gap
        self.batch_size = batch_size
        self.idle_wait = idle_wait
        self.skips = 0  # events this follower moved past without placing them
        self.position = self._stored_position()

    def _stored_position(self) -> int:
        return self.history.recorder.max_tracking_id(TRACKING_NAME) or 0

    def run_once(self) -> int:
        """Place the next batch of contacts; how many stored events were read."""
        notifications = self.history.recorder.select_notifications(
            start=self.position, limit=self.batch_size, topics=TOPICS, inclusive_of_start=False
        )
        if not notifications:
            return 0
        try:
            self._place(notifications)
            self.position = notifications[-1].id
        except IntegrityError as e:
            self._conflicted(e)
        except (*_STORE_DOWN, ConfigError):
            raise
        except Exception as e:
            log.warning(
                "desk: batch after %s failed (%r); placing it event by event", self.position, e
            )
            try:
                for notification in notifications:
                    if notification.id > self.position:
                        self._place_or_skip(notification)
            except IntegrityError as conflict:
                self._conflicted(conflict)
        return len(notifications)

    def _conflicted(self, e: IntegrityError) -> None:
        # Another follower placed (some of) these, or an agent changed a desk meanwhile.
        self.position = self._stored_position()
        log.info("desk: batch conflicted (%s); continuing from position %s", e, self.position)

    def _place_or_skip(self, notification: Any) -> None:
        """Place one event, or record that it cannot be placed and move past it."""
        try:
            self._place([notification])
        except (IntegrityError, *_STORE_DOWN, ConfigError):
            raise
        except Exception as e:
            # Raises while the store does not answer: then the batch is retried, not skipped.
            stored = self._stored_position()
            if stored >= notification.id:  # another follower placed it meanwhile
                self.position = stored
                return
            reason = f"{type(e).__name__}: {e}"
            skip = SkippedEvent(TRACKING_NAME, notification.id, reason)
            # The record and the position past the event in one transaction: exactly once.
            save_desks(
                self.history,
                [],
                trackings=[Tracking(TRACKING_NAME, notification.id)],
                skipped=[skip],
            )
            self.skips += 1
            log.error(
                "desk skipped stored event %s, which it cannot place: %s", notification.id, reason
            )
        self.position = notification.id

    def skipped(self) -> list[SkippedEvent]:
        """The stored events the desk moved past without placing them, oldest first."""
        return self.history.recorder.skipped_events(TRACKING_NAME)

    def _place(self, notifications: Sequence[Any]) -> None:
        mapper = self.history.mapper
        prepare = getattr(mapper, "prepare_stored", None)
        if prepare is not None:
            prepare(notifications)  # the batch's keys in one query
        decoded = [(n, mapper.to_domain_event(n)) for n in notifications]
        # An erased person's contacts are skeletons: nothing to place (the position moves on).
        placed = [(n, e) for n, e in decoded if not isinstance(e, ErasedEvent)]
        contacts = [contact_of(n.id, e) for n, e in placed]
        customers = list(dict.fromkeys(self._customer_of(n) for n, _ in placed))
        desks: dict[UUID, CustomerDesk] = {
            c: load_or_start_desk(self.history, c) for c in customers
        }
        if self._stored_position() > self.position:
            raise IntegrityError("another desk follower got here first")
        for (notification, event), contact in zip(placed, contacts, strict=True):
            desk = desks[self._customer_of(notification)]
            routed = routed_to_agent(event)
            if routed is not None:
                desk.assign_routed(
                    routed.contact_key, routed.agent, by=routed.by, reason=routed.reason
                )
            else:
                desk.record_contact(contact, quiet_gap=self.quiet_gap)
        changed = [d for d in desks.values() if d.pending_events]
        # Each new conversation's index, in the same transaction as its opening.
        indexes: list[Aggregate] = [
            ConversationIndex(conversation_id=e.conversation_id, customer_id=d.customer_id)
            for d in changed
            for e in d.pending_events
            if isinstance(e, CustomerDesk.ConversationOpened)
        ]
        save_desks(
            self.history,
            [*changed, *indexes],
            trackings=[Tracking(TRACKING_NAME, notifications[-1].id)],
        )

    @staticmethod
    def _customer_of(notification: Any) -> UUID:
        return UUID(str(notification.originator_id))

    def resync(self) -> None:
        self.position = self._stored_position()
