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
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, Tracking

from projections.follower import Follower, NewEvents
from services.desk.contacts import contact_of
from services.desk.store import load_or_start_desk, save_desks
from services.domain.customer import Customer
from services.domain.desk import ConversationIndex, CustomerDesk
from services.history.customers import CustomerHistory

log = logging.getLogger(__name__)

TRACKING_NAME = "desk"
TOPICS = (Customer.InteractionRecorded.TOPIC,)


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
        except IntegrityError as e:
            # Another follower placed (some of) these, or an agent changed a desk meanwhile.
            self.position = self._stored_position()
            log.info("desk: batch conflicted (%s); continuing from position %s", e, self.position)
            return len(notifications)
        self.position = notifications[-1].id
        return len(notifications)

    def _place(self, notifications: Sequence[Any]) -> None:
        to_domain = self.history.mapper.to_domain_event
        contacts = [contact_of(n.id, to_domain(n)) for n in notifications]
        customers = list(dict.fromkeys(self._customer_of(n) for n in notifications))
        desks: dict[UUID, CustomerDesk] = {
            c: load_or_start_desk(self.history, c) for c in customers
        }
        if self._stored_position() > self.position:
            raise IntegrityError("another desk follower got here first")
        for notification, contact in zip(notifications, contacts, strict=True):
            desks[self._customer_of(notification)].record_contact(contact, quiet_gap=self.quiet_gap)
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
