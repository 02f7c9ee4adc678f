"""The live parts of one gateway process, wired together: the agents' board, the router, the
screen pops and the Kafka feed that keeps them current (``Hub.routing()`` builds it once)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from channels.publishing import InteractionPublisher
from channels.webhooks import confirmed
from contracts import (
    AgentPresenceChanged,
    ContactRouted,
    OfferAnswered,
    RouteTarget,
    SendMessage,
)
from projections.timeline import TimelineView
from services.bootstrap.settings import Settings
from services.desk.contacts import HANDED_OVER
from services.domain.desk import Conversation
from services.gateway.customers_api import card_out
from services.gateway.floor import Floor
from services.gateway.pops import PopBoard
from services.router.board import AgentBoard
from services.router.feed import RoutingFeed
from services.router.offers import OfferBook
from services.router.service import ReloadingConfig, Router

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 2.0


@dataclass
class Routing:
    settings: Settings
    board: AgentBoard
    pops: PopBoard
    floor: Floor
    config: ReloadingConfig | None
    router: Router | None
    offers: OfferBook

    def serves(self, agent: str) -> list[str]:
        return [] if self.config is None else self.config.current.serves(agent)

    def agents_of_queue(self, queue: str) -> list[str]:
        return [] if self.config is None else self.config.current.agents_of(queue)

    def queues(self) -> list[str]:
        return [] if self.config is None else list(self.config.current.queues)

    def capacity(self, agent: str, channel: str) -> int:
        return 0 if self.config is None else self.config.current.capacity(agent, channel)

    def agents(self) -> list[str]:
        configured = [] if self.config is None else list(self.config.current.agents)
        return sorted({*configured, *self.board.with_presence()})

    def feed(self, bootstrap: str) -> RoutingFeed:
        s = self.settings
        now = datetime.now(UTC)
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        feed = RoutingFeed(
            bootstrap,
            presence_topic=s.presence_topic,
            routing_topic=s.routing_topic,
            interactions_topic=s.interactions_topic,
            # From the start of the day: the supervisor's figures are today's.
            lookback_s=max(300.0, (now - midnight).total_seconds()),
        )
        feed.handlers.presence.append(self.board.presence_changed)
        feed.handlers.routed += [
            self.board.routed,
            self.offers.routed,
            self.pops.routed,
            self.floor.routed,
        ]
        feed.handlers.answered += [self.offers.answered, self.pops.answered]
        feed.handlers.calls += [self.board.call_event, self.pops.call_event, self.floor.call_event]
        return feed

    async def publish_presence(
        self, publisher: InteractionPublisher, event: AgentPresenceChanged
    ) -> None:
        await confirmed(
            publisher.publish_raw(
                event.model_dump_json().encode(),
                key=event.agent,
                topic=self.settings.presence_topic,
            ),
            timeout_s=PUBLISH_TIMEOUT_S,
            what=f"presence of {event.agent}",
        )

    async def publish_routed(
        self, publisher: InteractionPublisher, event: ContactRouted | OfferAnswered
    ) -> None:
        await confirmed(
            publisher.publish(event, topic=self.settings.routing_topic),
            timeout_s=PUBLISH_TIMEOUT_S,
            what=f"routing of {event.contact_ref}",
        )

    async def publish_answer(self, publisher: InteractionPublisher, event: OfferAnswered) -> None:
        """An agent's answer to an offer: on Kafka (the router of its partition acts on it, the
        recorder files it, the desk assigns an accepted one), and at once on this instance."""
        await self.publish_routed(publisher, event)
        self.offers.answered(event)
        self.pops.answered(event)

    async def handed_over(
        self,
        publisher: InteractionPublisher,
        before: Conversation,
        after: Conversation,
        by: str,
        reason: str,
    ) -> None:
        """A conversation given to an agent at the desk: published as a routing decision (rule
        ``handed-over``), so every gateway tells the agents and the history says who and why.
        Calls are not handed over this way: they are answered."""
        if after.channel == "voice" or after.assignee is None:
            return
        why = f"{by} gave the conversation to {after.assignee}" + (
            f" (from {before.assignee})" if before.assignee else ""
        )
        try:
            event = ContactRouted(
                channel=after.channel,
                party=after.party,
                contact_ref=str(after.conversation_id),
                attempt=after.version,
                provider_ref=f"{after.conversation_id}:routed:{after.version}",
                occurred_at=datetime.now(UTC),
                target=RouteTarget(kind="agent", agent=after.assignee),
                rule=HANDED_OVER,
                reason=f"{why}: {reason}" if reason else why,
                customer_id=after.customer_id,
                from_agent=before.assignee,
            )
        except ValidationError as e:  # an assignee no agent can be: saved, but told nobody
            log.warning("desk: the hand-over of %s is not pushed: %s", after.conversation_id, e)
            return
        await self.publish_routed(publisher, event)

    async def publish_command(self, publisher: InteractionPublisher, command: SendMessage) -> None:
        await confirmed(
            publisher.publish_command(command, topic=self.settings.outbound_topic),
            timeout_s=PUBLISH_TIMEOUT_S,
            what=f"command {command.command_id}",
        )


def build_routing(
    settings: Settings, view: TimelineView, *, clock: Callable[[], datetime] | None = None
) -> Routing:
    config = (
        ReloadingConfig(settings.routing_config) if settings.routing_config is not None else None
    )
    board = AgentBoard()

    async def card_of(customer_id: UUID) -> dict[str, Any] | None:
        if view.reads_in_process:
            card = view.card(customer_id)
        else:
            card = await asyncio.to_thread(view.card, customer_id)
        return None if card is None else card_out(card).model_dump(mode="json")

    routing = Routing(
        settings=settings,
        board=board,
        pops=PopBoard(agents_of_queue=lambda q: routing.agents_of_queue(q), card_of=card_of),
        floor=Floor(
            board,
            agents_of_queue=lambda queue: routing.agents_of_queue(queue),
            queues=lambda: routing.queues(),
            agents=lambda: [] if routing.config is None else list(routing.config.current.agents),
            capacity=lambda agent, channel: routing.capacity(agent, channel),
        ),
        config=config,
        router=None
        if config is None
        else Router(config, board, view, **({} if clock is None else {"clock": clock})),
        offers=OfferBook(),
    )
    board.on_presence.append(routing.pops.presence)
    return routing
