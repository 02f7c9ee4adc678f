"""Build the store objects from the settings (used by the composition root and tests)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from eventsourcing.persistence import InfrastructureFactory, IntegrityError, PersistenceError
from eventsourcing.utils import Environment

from projections.timeline import TimelineView
from projections.timeline_postgres import PostgresTimelineView
from projections.timeline_sqlite import SQLiteTimelineView
from services.bootstrap.settings import Settings
from services.history.customers import CustomerHistory
from services.history.ledger import OutboundLedger
from services.history.users import UserDirectory

if TYPE_CHECKING:
    # Imported where they are opened: a process that only reads the history (a rebuild's
    # worker) starts without them and their channel libraries (measured: 2.4 s -> 1.4 s).
    from projections.reachability_store import ReachabilityView
    from services.campaigns.store import CampaignStore

T = TypeVar("T")


def _racing_create(build: Callable[[], T]) -> T:
    """PostgreSQL's CREATE TABLE IF NOT EXISTS is not safe against a concurrent one: two
    processes starting together can both try, and one fails (a unique violation in the
    catalog, or "tuple concurrently updated").  Trying again then finds the table."""
    for attempt in range(5):
        try:
            return build()
        except PersistenceError as e:
            racing = isinstance(e, IntegrityError) or "concurrently updated" in str(e)
            if not racing or attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def open_history(settings: Settings, *, cached: bool = True) -> CustomerHistory:
    """The customer history.  ``cached=False`` for readers that are not the customers'
    writer (the outbound dispatcher): the cache only sees this instance's own writes, so a
    reader must load fresh (snapshots keep that fast) or it would miss an opt-out."""
    if not settings.is_postgres:
        settings.sqlite_path("history").parent.mkdir(parents=True, exist_ok=True)
    env = settings.event_store_env()
    if not cached:
        env["AGGREGATE_CACHE_MAXSIZE"] = ""
    history = _racing_create(lambda: CustomerHistory(env=env))
    history.migrate_identities()
    return history


def _store_env(settings: Settings, purpose: str) -> dict[str, str]:
    """The store settings for one part; on SQLite it gets a file of its own (SQLite has one
    writer per file, so the parts never wait for each other's locks)."""
    env = settings.event_store_env()
    if not settings.is_postgres:
        path = settings.sqlite_path(purpose)
        path.parent.mkdir(parents=True, exist_ok=True)
        env["SQLITE_DBNAME"] = str(path)
    return env


def open_outbound_ledger(settings: Settings) -> OutboundLedger:
    env = _store_env(settings, "outbound")
    return _racing_create(lambda: OutboundLedger(env=env))


def open_campaign_store(settings: Settings) -> CampaignStore:
    """The campaigns beside the history (a file of their own on SQLite, as users have)."""
    from services.campaigns.store import CampaignStore

    env = _store_env(settings, "campaigns")
    return _racing_create(lambda: CampaignStore(env=env))


def open_user_directory(settings: Settings) -> UserDirectory:
    """Users, roles and token hashes: beside the history (a file of its own on SQLite)."""
    env = _store_env(settings, "users")
    return _racing_create(lambda: UserDirectory(env=env))


def open_timeline_view(settings: Settings) -> TimelineView:
    env = _store_env(settings, "views")
    view_class: type[TimelineView] = (
        PostgresTimelineView if settings.is_postgres else SQLiteTimelineView
    )
    factory = InfrastructureFactory.construct(Environment("timeline", env))
    return _racing_create(lambda: factory.tracking_recorder(view_class))  # type: ignore[arg-type]


def open_reachability_view(settings: Settings) -> ReachabilityView:
    """The reachability view: its own tables and tracking (on SQLite its own file beside the
    views file, which a timeline rebuild may swap)."""
    from projections.reachability_postgres import PostgresReachabilityView
    from projections.reachability_sqlite import SQLiteReachabilityView

    env = _store_env(settings, "reachability")
    view_class: type[ReachabilityView] = (
        PostgresReachabilityView if settings.is_postgres else SQLiteReachabilityView
    )
    factory = InfrastructureFactory.construct(Environment("reachability", env))
    return _racing_create(lambda: factory.tracking_recorder(view_class))  # type: ignore[arg-type]
