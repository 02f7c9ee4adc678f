"""A page of the log read for a view is the page ``select_notifications`` gives: the same
notifications, fields and values, on every range, limit and topic filter; and they open to the
same events.  On SQLite (read by the view itself) and on PostgreSQL (read by the library)."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import pytest

from projections.follower import prefetch_keys
from projections.log_pages import read_page
from projections.timeline import TOPICS
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.settings import Settings
from services.domain import Customer
from tests.integration.test_store_backup import record_history


@pytest.fixture
def settings(store_url: str, tmp_path: Path) -> Settings:
    return Settings(store=store_url, data_dir=tmp_path / "var")


def test_a_page_read_for_a_view_is_the_page_the_library_selects(settings: Settings) -> None:
    hub = bootstrap(settings)
    record_history(hub)
    history = hub.history(cached=False)
    recorder = history.recorder
    head = recorder.max_notification_id()
    assert head > 50
    for topics in (TOPICS, (Customer.InteractionRecorded.TOPIC,)):
        for start, limit, stop in [
            (0, 10**6, None),
            (0, 7, None),
            (5, 13, head - 3),
            (head - 2, 100, None),
            (head, 10, None),
            (3, 50, 3),
        ]:
            page = read_page(recorder, start=start, limit=limit, topics=topics, stop=stop)
            wanted = recorder.select_notifications(
                start=start, limit=limit, stop=stop, topics=topics, inclusive_of_start=False
            )
            assert len(page) == len(wanted)
            for got, want in zip(page, wanted, strict=True):
                assert (got.id, got.originator_version, got.topic, bytes(got.state)) == (
                    want.id,
                    want.originator_version,
                    want.topic,
                    bytes(want.state),
                )
                assert type(got.originator_id) is UUID and got.originator_id == want.originator_id
                assert hash(got.originator_id) == hash(want.originator_id)
            prefetch_keys(history, page)
            to_domain = history.mapper.to_domain_event
            for got, want in zip(page, wanted, strict=True):
                a, b = to_domain(got), to_domain(want)
                assert type(a) is type(b) and vars(a) == vars(b)
    history.close()
