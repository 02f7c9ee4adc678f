"""The one bootstrap: every part of the hub built from the settings, in one place.

As in cosmicpython's ``bootstrap()``: the entry points (the CLI, ``run_hub``, the benchmarks)
and the tests all build the hub through it, and a test hands in stand-ins (senders that
record, a store of its own) instead of patching.  Nothing is built before it is asked for,
so ``switchboard lookup`` opens one view and nothing else.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from fastapi import APIRouter, FastAPI

from channels.email import EmailIngestion, EmailSender
from channels.email.blobs import LocalBlobStore
from channels.outbound import Sender
from channels.publishing import InteractionPublisher
from channels.sms import TwilioSmsSender, twilio_sms_router
from channels.social import (
    MessengerSender,
    TelegramSender,
    WhatsAppSender,
    messenger_router,
    telegram_router,
    whatsapp_router,
)
from channels.voice import cti_router, twilio_voice_router
from contracts import Channel
from contracts.errors import ConfigError
from projections.follower import NewEvents, SharedDecodes, TimelineFollower
from projections.reachability_store import ReachabilityFollower, ReachabilityView
from projections.timeline import TimelineView
from services.audit.access_log import open_access_log
from services.audit.erasure import erase_person
from services.bootstrap.channels import ChannelConfigs, channel_configs
from services.bootstrap.routing import Routing, build_routing
from services.bootstrap.settings import Settings
from services.bootstrap.stores import (
    open_campaign_store,
    open_history,
    open_outbound_ledger,
    open_reachability_view,
    open_timeline_view,
    open_user_directory,
)
from services.campaigns.host import CampaignHost
from services.campaigns.plan import Reachability
from services.campaigns.plans import PlanArchive
from services.campaigns.progress import read_progress
from services.campaigns.runner import RunnerKafka
from services.campaigns.service import CampaignService
from services.campaigns.store import CampaignStore
from services.consumers import kafka_consumer
from services.desk.follower import DeskFollower
from services.desk.service import DeskService
from services.gateway.access import AccessTable
from services.gateway.api import create_api
from services.gateway.audit_api import audit_router, erasure_router
from services.gateway.auth import v1_router
from services.gateway.campaigns_api import campaigns_router
from services.gateway.customers_api import customer_commands_router
from services.gateway.desk_api import desk_router
from services.gateway.operations import Drain
from services.gateway.realtime import agents_router, supervisor_router
from services.gateway.replies_api import replies_router
from services.gateway.session import SessionCodec, session_secret
from services.history.customers import CustomerHistory
from services.history.keys import Keyring, KeyringBlobSealer
from services.history.ledger import OutboundLedger
from services.history.users import UserDirectory
from services.outbound.dispatcher import RETRY_DELAYS, OutboundDispatcher
from services.recorder import Recorder
from services.router.feed import RoutingFeed
from services.router.messages import MessageRouter

__all__ = ["Hub", "bootstrap"]

log = logging.getLogger(__name__)


def bootstrap(
    settings: Settings,
    *,
    senders: Mapping[Channel, Sender] | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Hub:
    """The hub as ``settings`` describe it; ``senders`` replaces the channels' real senders,
    ``clock`` the router's (what time a routing decision is made at: tests of business hours)."""
    return Hub(settings, senders, clock=clock)


@dataclass
class Hub:
    settings: Settings
    stand_in_senders: Mapping[Channel, Sender] | None = None
    clock: Callable[[], datetime] | None = None
    # Every store part this hub opens tells its followers about new events at once.
    new_events: NewEvents = field(default_factory=NewEvents)
    # The timeline and reachability followers of this process open each stored event once.
    decodes: SharedDecodes = field(default_factory=SharedDecodes)
    _routing: Routing | None = None
    _keyring: Keyring | None = None
    # The message routers built (one per run of the router service): tests and health read them.
    message_routers: list[MessageRouter] = field(default_factory=list)

    @property
    def kafka(self) -> str:
        if not self.settings.kafka_bootstrap:
            raise ConfigError("no Kafka: set SWITCHBOARD_KAFKA_BOOTSTRAP")
        return self.settings.kafka_bootstrap

    def channels(self) -> ChannelConfigs:
        return channel_configs(self.settings)

    # -- the stores ----------------------------------------------------------------------

    def history(self, *, cached: bool = True) -> CustomerHistory:
        history = open_history(self.settings, cached=cached)
        history.on_saved = self.new_events.notify
        return history

    def outbound_ledger(self) -> OutboundLedger:
        return open_outbound_ledger(self.settings)

    def campaign_store(self) -> CampaignStore:
        return open_campaign_store(self.settings)

    def user_directory(self) -> UserDirectory:
        return open_user_directory(self.settings)

    # -- campaigns -------------------------------------------------------------------------

    def reachability(self) -> Reachability:
        """How reachable each customer is on each channel, for campaign planning: the
        reachability view (``projections/reachability*.py``), ranked for marketing."""
        return self.reachability_view()

    def campaign_service(self, *, view: TimelineView | None = None) -> CampaignService:
        """The campaign manager's operations (CLI and API): the campaign store, the
        directory for audiences, the ledger for caps and tracking; the plans are kept under
        the data directory, where the campaigns service finds them."""
        s = self.settings
        return CampaignService(
            store=self.campaign_store(),
            view=view if view is not None else self.timeline_view(),
            ledger=self.outbound_ledger(),
            reachability=self.reachability(),
            plans=PlanArchive(s.data_dir / "campaigns"),
            default_region=s.default_region,
            progress=self._campaign_progress if s.kafka_bootstrap else None,
        )

    def _campaign_progress(self, campaign_id: UUID) -> int | None:
        """How many of the campaign's commands are on the outbound topic (its runner's
        committed progress), or None when Kafka does not answer within a few seconds."""
        s = self.settings
        assert s.kafka_bootstrap
        try:
            found = asyncio.run(
                read_progress(
                    s.kafka_bootstrap,
                    s.campaign_progress_topic,
                    campaign_id,
                    timeout=5,
                    committed_only=True,
                )
            )
        except Exception as e:  # tracking shows "?" rather than failing
            log.info("campaign %s: progress not read: %s", campaign_id, e)
            return None
        return 0 if found is None else found.produced

    def campaign_host(self) -> CampaignHost:
        """The campaigns service: runs every running campaign (``switchboard serve campaigns``)."""
        s = self.settings
        return CampaignHost(
            self.campaign_service(),
            kafka=RunnerKafka(
                bootstrap=self.kafka,
                outbound_topic=s.outbound_topic,
                progress_topic=s.campaign_progress_topic,
            ),
        )

    def timeline_view(self) -> TimelineView:
        return open_timeline_view(self.settings)

    def timeline_follower(self) -> TimelineFollower:
        return TimelineFollower(
            self.history(), self.timeline_view(), new_events=self.new_events, decodes=self.decodes
        )

    def reachability_view(self) -> ReachabilityView:
        return open_reachability_view(self.settings)

    def reachability_follower(self) -> ReachabilityFollower:
        return ReachabilityFollower(
            self.history(cached=False),
            self.reachability_view(),
            new_events=self.new_events,
            decodes=self.decodes,
        )

    def blobs(self) -> LocalBlobStore:
        """File contents by SHA-256: e-mail attachments and the desk's files, one store,
        each file sealed with a key of its own from the keyring (erasure deletes it)."""
        if self._keyring is None:
            self._keyring = self.history(cached=False).keyring
        return LocalBlobStore(
            self.settings.data_dir / "blobs", sealer=KeyringBlobSealer(self._keyring)
        )

    def desk(self) -> DeskService:
        """The desk's commands; its store is opened on first use.  Not cached: the desk
        follower writes the same desks from another instance."""
        return DeskService(
            lambda: self.history(cached=False),
            blobs=self.blobs,
            max_file_bytes=self.settings.desk_max_file_bytes,
        )

    def desk_follower(self) -> DeskFollower:
        quiet_gap = timedelta(hours=self.settings.desk_quiet_gap_hours)
        return DeskFollower(
            self.history(cached=False), quiet_gap=quiet_gap, new_events=self.new_events
        )

    # -- the services --------------------------------------------------------------------

    def recorder(self, *, client_id: str = "switchboard-recorder") -> Recorder:
        s = self.settings
        return Recorder(
            self.history(),
            bootstrap=self.kafka,
            # Each topic-partition's position is tracked in the store on its own.
            topics=[s.interactions_topic, s.routing_topic],
            deadletter_topic=s.deadletter_topic,
            group_id=s.recorder_group,
            # Made with the recorder, for its one run (which starts and stops it).
            dead_letters=self.publisher(
                topic=s.deadletter_topic, client_id=f"{client_id}-deadletters"
            ),
            batch_size=s.recorder_batch,
            session_timeout_ms=s.session_timeout_ms,
            client_id=client_id,
        )

    def dispatcher(self, *, retry_delays: tuple[float, ...] = RETRY_DELAYS) -> OutboundDispatcher:
        s = self.settings
        return OutboundDispatcher(
            # Not the customers' writer: a cache would only see its own writes, and miss an
            # opt-out the recorder stored (snapshots keep uncached loads fast).
            self.history(cached=False),
            ledger=self.outbound_ledger(),
            senders=self.senders(),
            bootstrap=self.kafka,
            topic=s.outbound_topic,
            # Outcomes and dead letters; made with the dispatcher, for its one run (which
            # starts and stops it).
            interactions=self.publisher(client_id="switchboard-outbound"),
            deadletter_topic=s.deadletter_topic,
            group_id=s.outbound_group,
            retry_delays=retry_delays,
            session_timeout_ms=s.session_timeout_ms,
        )

    def email_ingestion(self) -> EmailIngestion | None:
        """The IMAP ingester for the configured mailboxes, or None when there are none."""
        configs = self.channels()
        if not configs.mailboxes:
            return None
        self.kafka  # noqa: B018 -- no Kafka configured fails here, not at the first run
        return EmailIngestion(
            configs.mailboxes,
            # A producer per run: each run starts and stops its own (Kafka may be away).
            publisher=lambda: self.publisher(client_id="switchboard-email"),
            deadletter_topic=self.settings.deadletter_topic,
            data_dir=self.settings.data_dir,
            timing=configs.imap_timing,
            blobs=self.blobs(),
        )

    def publisher(self, *, topic: str | None = None, **producer: Any) -> InteractionPublisher:
        """A confirmed producer for the interactions topic (or ``topic``)."""
        return InteractionPublisher(
            self.kafka, topic=topic or self.settings.interactions_topic, **producer
        )

    def senders(self) -> dict[Channel, Sender]:
        """One sender per channel with credentials (or the stand-ins this hub was given)."""
        if self.stand_in_senders is not None:
            return dict(self.stand_in_senders)
        return {channel: make(config) for channel, (make, config) in self._sending().items()}

    def sending_channels(self) -> set[Channel]:
        """The channels the dispatcher can send on, without building their clients."""
        if self.stand_in_senders is not None:
            return set(self.stand_in_senders)
        return set(self._sending())

    def _sending(self) -> dict[Channel, tuple[Callable[[Any], Sender], Any]]:
        c = self.channels()
        candidates: dict[Channel, tuple[Callable[[Any], Sender], Any]] = {
            Channel.email: (EmailSender, c.smtp),
            Channel.sms: (TwilioSmsSender, c.sms),
            Channel.whatsapp: (WhatsAppSender, c.whatsapp),
            Channel.messenger: (MessengerSender, c.messenger),
            Channel.telegram: (TelegramSender, c.telegram),
        }
        return {ch: pair for ch, pair in candidates.items() if pair[1] is not None}

    def routing(self, view: TimelineView) -> Routing:
        """The agents' board, the router, the screen pops: one set per process (the API's
        webhooks decide with them, the routing feed keeps them current)."""
        if self._routing is None:
            self._routing = build_routing(self.settings, view, clock=self.clock)
        return self._routing

    def routing_feed(self, view: TimelineView) -> RoutingFeed:
        return self.routing(view).feed(self.kafka)

    def message_router(
        self, view: TimelineView, publisher: InteractionPublisher, *, client_id: str = "router"
    ) -> MessageRouter | None:
        """The router of inbound messages (one consumer group: one router per partition);
        None without a routing file (nobody to route to)."""
        routing = self.routing(view)
        if routing.router is None:
            return None
        s = self.settings
        router = MessageRouter(
            routing.router,
            consumer=lambda: kafka_consumer(
                s.interactions_topic,
                bootstrap=self.kafka,
                group_id=s.router_group,
                client_id=f"switchboard-{client_id}",
                session_timeout_ms=s.session_timeout_ms,
                fetch_max_wait_ms=20,  # a message waits on this fetch for its agent
                max_poll_interval_ms=60_000,
            ),
            publish=lambda event: routing.publish_routed(publisher, event),
            loads=view.assigned_load,
            offers=routing.offers,
            topic=s.interactions_topic,
        )
        self.message_routers.append(router)
        return router

    def session_codec(self) -> SessionCodec:
        s = self.settings
        secret = s.session_secret.get_secret_value() if s.session_secret else None
        return SessionCodec(session_secret(secret, s.data_dir), hours=s.session_hours)

    def webhook_routers(
        self, *, publisher: InteractionPublisher, directory: TimelineView
    ) -> list[APIRouter]:
        """A router per channel with credentials: its webhooks check the provider's signature."""
        configs = self.channels()
        routers: list[APIRouter] = []
        if configs.voice:
            routers.append(
                twilio_voice_router(
                    publisher=publisher,
                    config=configs.voice,
                    directory=directory,
                    router=self.routing(directory).router,
                    routing_topic=self.settings.routing_topic,
                )
            )
        if configs.cti:
            routers.append(
                cti_router(
                    publisher=publisher,
                    config=configs.cti,
                    router=self.routing(directory).router,
                    routing_topic=self.settings.routing_topic,
                )
            )
        if configs.sms:
            routers.append(twilio_sms_router(publisher=publisher, config=configs.sms))
        if configs.whatsapp:
            routers.append(whatsapp_router(publisher=publisher, config=configs.whatsapp))
        if configs.messenger:
            routers.append(messenger_router(publisher=publisher, config=configs.messenger))
        if configs.telegram:
            routers.append(telegram_router(publisher=publisher, config=configs.telegram))
        return routers

    def api(
        self,
        *,
        view: TimelineView,
        publisher: InteractionPublisher,
        users: UserDirectory | None = None,
        readiness: Callable[[], Awaitable[dict[str, str]]] | None = None,
        drain: Drain | None = None,
    ) -> FastAPI:
        """The HTTP API with the configured channels' webhooks; ``users`` say who may call it;
        ``drain`` refuses webhooks while the process shuts down."""
        users = users or self.user_directory()
        access = AccessTable(users)
        desk = v1_router()  # under /v1: bearer and role table, like every /v1 operation
        routing = self.routing(view)
        desk.include_router(
            desk_router(
                self.desk(),
                handed_over=lambda before, after, by, reason: routing.handed_over(
                    publisher, before, after, by, reason
                ),
            )
        )
        # Not the customers' writer (the recorder is): decide on what is stored, not cached.
        stored = self.history(cached=False)
        desk.include_router(
            customer_commands_router(stored, view, default_region=self.settings.default_region)
        )
        desk.include_router(
            agents_router(
                board=routing.board,
                pops=routing.pops,
                serves=routing.serves,
                agents=routing.agents,
                publish_presence=lambda event: routing.publish_presence(publisher, event),
                conversations_of=lambda agent: view.assigned_to(agent),
                publish_answer=lambda event: routing.publish_answer(publisher, event),
            )
        )
        desk.include_router(supervisor_router(routing.floor))
        # The auditor's replay and subject-access export read the system of record.
        desk.include_router(audit_router(stored, view))
        desk.include_router(
            erasure_router(
                lambda customer_id, by, basis, reason: erase_person(
                    self, customer_id, by=by, basis=basis, reason=reason
                )
            )
        )
        # Built on first use: building the API (its document) opens no campaign store.
        desk.include_router(campaigns_router(lambda: self.campaign_service(view=view)))
        desk.include_router(
            replies_router(
                view,
                sending_channels=self.sending_channels,
                publish_command=lambda command: routing.publish_command(publisher, command),
            )
        )
        return create_api(
            view=view,
            users=users,
            default_region=self.settings.default_region,
            routers=[desk, *self.webhook_routers(publisher=publisher, directory=view)],
            access=access,
            sessions=self.session_codec(),
            readiness=readiness,
            drain=drain,
            access_log=open_access_log(self.settings),
            reachability=self.reachability_view(),
        )
