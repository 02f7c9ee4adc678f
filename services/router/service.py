"""The router: a contact and what is known of its customer in, a published decision out.

``decide`` (``services/router/decide.py``) is the pure rule; this module feeds it the caller's
card from the directory view, the agents from the ``AgentBoard`` and the configuration as it
is on disk now, and turns its answer into the ``contact.routed.v1`` event that the webhook
publishes on ``sb.routing.v1`` before it answers the provider.

The caller's card is read first, apart (``known``): on PostgreSQL that read belongs in a
worker thread, while the decision itself touches the board and stays on the event loop.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol
from uuid import UUID

from contracts import ContactRouted, RouteTarget, RoutingFacts
from projections.directory import Card
from services.router.board import AgentBoard
from services.router.config import RoutingConfig, RoutingConfigError, load_routing_config
from services.router.decide import AgentState, CallerFacts, Contact, Decision, decide

log = logging.getLogger(__name__)
# Enough for Twilio's retries (seconds apart) at hundreds of calls a second; more only adds to
# what every full garbage collection walks (bench/screenpop.py).
_RECENT = 2_048


class CardDirectory(Protocol):
    def customer_for_address(self, address: str) -> UUID | None: ...
    def card(self, customer_id: UUID) -> Card | None: ...


class ReloadingConfig:
    """The routing file as it is now: read again when it changed, checked at most every
    ``check_every_s``.  A file that no longer loads leaves the last good configuration in
    force; ``error`` says why (and the log, once per bad version)."""

    def __init__(self, path: Path, *, check_every_s: float = 1.0) -> None:
        self.path = path
        self.check_every_s = check_every_s
        self._config = load_routing_config(path)  # a bad file at start is the caller's error
        self._stamp = self._stat()
        self._checked = time.monotonic()
        self.loaded_at = datetime.now(UTC)
        self.error: str | None = None

    @property
    def current(self) -> RoutingConfig:
        now = time.monotonic()
        if now - self._checked >= self.check_every_s:
            self._checked = now
            self.reload_if_changed()
        return self._config

    def reload_if_changed(self) -> bool:
        """Load the file again if it changed; True when a new configuration is in force."""
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            config = load_routing_config(self.path)
        except RoutingConfigError as e:
            self.error = str(e)
            log.warning("routing: %s was not reloaded, the last good one stays: %s", self.path, e)
            return False
        self._config = config
        self.loaded_at = datetime.now(UTC)
        self.error = None
        log.info("routing: reloaded %s", self.path)
        return True

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size


@dataclass(frozen=True)
class Known:
    """What the directory says of a caller: their customer and card, if any."""

    customer_id: UUID | None = None
    card: Card | None = None


class Router:
    def __init__(
        self,
        config: ReloadingConfig | RoutingConfig,
        board: AgentBoard,
        directory: CardDirectory | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._config = config
        self.board = board
        self.directory = directory
        self.clock = clock
        # The decisions just made, by provider_ref: a webhook retried (Kafka was slow to
        # confirm) gets the same decision again, the one that may already be recorded.
        self._recent: OrderedDict[str, ContactRouted] = OrderedDict()

    @property
    def config(self) -> RoutingConfig:
        c = self._config
        return c.current if isinstance(c, ReloadingConfig) else c

    @property
    def offer_timeout_s(self) -> float:
        return self.config.offer_timeout_s

    def overflow_after_s(self, queue: str | None) -> float | None:
        """How long a contact waits in ``queue`` before it overflows; None: it stays."""
        q = self.config.queues.get(queue or "")
        overflow = getattr(q, "overflow", None)
        return None if overflow is None else overflow.after_s

    def serves(self, agent: str) -> list[str]:
        return self.config.serves(agent)

    def known(self, address: str) -> Known:
        """The caller's card (blocking I/O on PostgreSQL: call it off the event loop)."""
        if self.directory is None:
            return Known()
        customer_id = self.directory.customer_for_address(address)
        if customer_id is None:
            return Known()
        return Known(customer_id, self.directory.card(customer_id))

    def customer_of(self, known: Known) -> UUID | None:
        return known.customer_id

    def route(
        self,
        *,
        channel: str,
        party: str,
        contact_ref: str,
        known: Known = Known(),
        dialled: str | None = None,
        attempt: int = 1,
        exclude: Iterable[str] = (),
        waited_s: float = 0.0,
        agents: Mapping[str, AgentState] | None = None,
    ) -> ContactRouted:
        """Decide where the contact goes, hold it on the board, and return the decision as
        the event to publish.  ``agents``: the agents as the caller counts them (messages
        count their load from the desk), else as the board has them."""
        ref = f"{contact_ref}:routed:{attempt}"
        if (again := self._recent.get(ref)) is not None:
            return again
        now = self.clock()
        card = known.card
        facts = _facts(card)
        decision: Decision = decide(
            Contact(channel=channel, party=party, dialled=dialled, customer_id=known.customer_id),
            facts,
            self.board.states() if agents is None else agents,
            now,
            self.config,
            exclude=frozenset(exclude),
            waited_s=waited_s,
        )
        target = decision.target
        event = ContactRouted(
            channel=channel,
            party=party,
            endpoint=dialled,
            contact_ref=contact_ref,
            attempt=attempt,
            provider_ref=ref,
            occurred_at=now,
            target=RouteTarget(kind=target.kind, queue=target.queue, agent=target.agent),
            rule=decision.rule,
            reason=decision.reason,
            customer_id=known.customer_id,
            facts=None
            if facts is None
            else RoutingFacts(
                tier=facts.tier,
                language=facts.language,
                tags=list(facts.tags),
                last_agent=facts.last_agent,
            ),
        )
        self.board.routed(event)
        self._recent[ref] = event
        if len(self._recent) > _RECENT:
            self._recent.popitem(last=False)
        return event


def _facts(card: Card | None) -> CallerFacts | None:
    if card is None:
        return None
    p = card.profile
    return CallerFacts(
        tier=p.get("tier"),
        language=p.get("language"),
        tags=tuple(p.get("tags") or ()),
        last_agent=card.last_agent,
        last_agent_at=card.last_agent_at,
    )
