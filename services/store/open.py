"""Build the store objects from the settings (used by the composition root and tests)."""

from __future__ import annotations

from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.utils import Environment

from projections.timeline import TimelineView
from projections.timeline_postgres import PostgresTimelineView
from projections.timeline_sqlite import SQLiteTimelineView
from services.settings import Settings
from services.store.history import CustomerHistory


def open_history(settings: Settings) -> CustomerHistory:
    if not settings.is_postgres:
        settings.sqlite_path("history").parent.mkdir(parents=True, exist_ok=True)
    return CustomerHistory(env=settings.event_store_env())


def open_timeline_view(settings: Settings) -> TimelineView:
    env = settings.event_store_env()
    if settings.is_postgres:
        view_class: type[TimelineView] = PostgresTimelineView
    else:
        path = settings.sqlite_path("views")
        path.parent.mkdir(parents=True, exist_ok=True)
        env["SQLITE_DBNAME"] = str(path)
        view_class = SQLiteTimelineView
    factory = InfrastructureFactory.construct(Environment("timeline", env))
    return factory.tracking_recorder(view_class)  # type: ignore[arg-type]
