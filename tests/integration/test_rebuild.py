"""A view rebuilt in bulk beside the serving one answers exactly what following the log event
by event answers: every customer's card, timeline, summary and duplicates, every lookup and
search, the desk's conversations and agents' loads, the delivery statuses.  The old view
answers while the new one loads; a follower of the old view goes on into the new one after
the swap.  On SQLite and PostgreSQL."""

from __future__ import annotations

import time
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

import projections.rebuild as rebuild_module
from contracts import (
    CallAnswered,
    Channel,
    DeliveryStatusChanged,
    Direction,
    MessageReceived,
    MessageSent,
)
from projections.follower import TimelineFollower
from projections.rebuild import rebuild_timeline
from projections.timeline import TOPICS, TimelineView
from services.bootstrap.bootstrap import Hub, bootstrap
from services.bootstrap.settings import Settings
from services.bootstrap.stores import open_history
from services.domain import Customer, customer_id_for
from tests.integration.test_store_backup import MAILS, PHONES, T0, record_history, sms


@pytest.fixture
def settings(store_url: str, tmp_path: Path) -> Settings:
    return Settings(store=store_url, data_dir=tmp_path / "var")


def more_history(hub: Hub) -> None:
    """After the merges: contacts on survivors and on the unmerged, on a shared number, late
    and out-of-order delivery reports, an agent answering, a profile edit on a survivor."""
    history = hub.history()
    later = T0 + timedelta(days=5)
    history.record_interactions(
        [
            sms(PHONES[0], "SM-after-merge", later),
            MessageReceived(
                channel=Channel.email,
                party=MAILS[1],
                provider_ref="<after@example.com>",
                occurred_at=later,
                body="about my order, again",
                subject="Order 4701",
            ),
            sms(PHONES[8], "SM-shared", later + timedelta(minutes=1)),
            MessageSent(
                channel=Channel.sms,
                party=PHONES[3],
                provider_ref="SM-out-1",
                occurred_at=later,
                body="your order shipped",
            ),
            DeliveryStatusChanged(
                channel=Channel.sms,
                direction=Direction.outbound,
                party=PHONES[3],
                provider_ref="SM-out-1-delivered",
                occurred_at=later + timedelta(seconds=9),
                message_ref="SM-out-1",
                status="delivered",
            ),
            DeliveryStatusChanged(  # arrives late, says less: must not win
                channel=Channel.sms,
                direction=Direction.outbound,
                party=PHONES[3],
                provider_ref="SM-out-1-sent",
                occurred_at=later + timedelta(seconds=3),
                message_ref="SM-out-1",
                status="sent",
            ),
            CallAnswered(
                direction=Direction.inbound,
                party=PHONES[6],
                provider_ref="CA-answered",
                call_id="CA-answered",
                occurred_at=later,
                agent="lea",
            ),
        ]
    )
    for start in range(0, 40, 8):  # a few more customers, in batches as the recorder does
        history.record_interactions(
            [sms(f"+49309999{i:04d}", f"SM-new-{i}", later) for i in range(start, start + 8)]
        )
    anna = history.get_customer(customer_id_for(PHONES[0]))
    history.edit_profile(
        anna.id, {"language": "de"}, by="ops", expected_version=anna.profile_version
    )
    hub.desk_follower().catch_up()


def customers(hub: Hub) -> list[UUID]:
    history = hub.history()
    found, position = [], 0
    while batch := history.recorder.select_notifications(
        start=position, limit=500, topics=[Customer.FirstContacted.TOPIC], inclusive_of_start=False
    ):
        found += [n.originator_id for n in batch]
        position = batch[-1].id
    return found


def answers(view: TimelineView, ids: list[UUID], addresses: list[str]) -> dict[str, Any]:
    """Everything the view answers about these customers and addresses."""
    out: dict[str, Any] = {"skipped": [(s.notification_id, s.reason) for s in view.skipped()]}
    for cid in ids:
        out[f"card {cid}"] = view.card(cid)
        out[f"timeline {cid}"] = view.timeline(cid, limit=1000)
        out[f"summary {cid}"] = view.summary(cid)
        out[f"duplicates {cid}"] = view.duplicates(cid)
    for address in addresses:
        out[f"lookup {address}"] = view.lookup(address)
        out[f"for address {address}"] = view.customer_for_address(address)
    for text in ("anna", "Dora", "+4930", "+49309999", "customer", "whatsapp:", "bert"):
        out[f"search {text}"] = view.search(text, limit=50)
    out["load"] = view.assigned_load()
    out["lea"] = view.assigned_to("lea")
    for ref in ("SM0b", "SM5b", "SM-out-1", "SM-none"):
        out[f"delivery {ref}"] = view.delivery_status(ref)
    return out


def addresses() -> list[str]:
    return [
        *PHONES,
        *MAILS,
        *(f"whatsapp:{p}" for p in PHONES),
        "bert@example.org",
        "+493099990003",
        "+15555550000",
    ]


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many load batches, read by worker processes, even for a small history."""
    monkeypatch.setattr(rebuild_module, "LOAD_BATCH", 7)
    monkeypatch.setattr(rebuild_module, "PARALLEL_FROM", 0)


def test_a_bulk_rebuild_answers_exactly_what_following_event_by_event_answers(
    settings: Settings, small_batches: None
) -> None:
    hub = bootstrap(settings)
    record_history(hub)
    more_history(hub)
    history = hub.history()
    view = hub.timeline_view()
    view.reset()
    following = TimelineFollower(history, view, batch_size=3)
    following.catch_up()
    ids, where = customers(hub), addresses()
    followed = answers(view, ids, where)
    assert len(ids) > 70 and followed["skipped"] == []
    anna = view.card(customer_id_for(PHONES[0]))
    assert anna is not None and anna.merged and anna.profile["language"] == "de"
    assert view.lookup(PHONES[8]).candidates and view.duplicates(customer_id_for(PHONES[6]))
    assert view.delivery_status("SM-out-1").status == "delivered"
    for cid in ids:  # the contact figures are what the timeline shows
        card, contacts = (
            followed[f"card {cid}"],
            [e for e in followed[f"timeline {cid}"] if e.direction != "internal"],
        )
        if card is not None and card.merged_into is None:
            assert card.contact_count == len(contacts)
            assert card.last_contact_at == max((e.occurred_at for e in contacts), default=None)

    # A running hub's follower, with its own view (another process, as far as it knows).
    hubs = TimelineFollower(history, bootstrap(settings).timeline_view(), batch_size=3)
    serving: list[bool] = []

    def progress(position: int, total: int) -> None:
        # The old view answers while the new one loads.
        if not serving:
            serving.append(view.card(anna.customer_id) == anna)

    position = rebuild_timeline(
        history,
        view,
        open_source=partial(open_history, settings, cached=False),
        progress=progress,
    )
    assert serving == [True]
    assert position == following.position
    assert answers(view, ids, where) == followed
    assert answers(bootstrap(settings).timeline_view(), ids, where) == followed

    # The followers of the old view go on into the new one: nothing lost, nothing twice.
    history.record_interactions([sms(PHONES[0], "SM-after-rebuild", T0 + timedelta(days=6))])
    hubs.catch_up()
    following.catch_up()
    assert hubs.position == following.position == history.recorder.max_notification_id()
    shown = [e.provider_ref for e in view.timeline(anna.customer_id, limit=1000)]
    assert shown.count("SM-after-rebuild") == 1
    assert len(shown) == len(followed[f"timeline {anna.customer_id}"]) + 1
    assert view.skipped() == []


def test_each_rebuild_is_a_new_file_and_the_old_ones_are_removed(settings: Settings) -> None:
    if settings.is_postgres:
        pytest.skip("the files of the SQLite view")
    hub = bootstrap(settings)
    history = hub.history()
    history.record_interactions([sms(p, f"SM-{p}", T0) for p in PHONES])
    view = hub.timeline_view()
    TimelineFollower(history, view).catch_up()
    before = answers(view, customers(hub), addresses())
    for _ in range(2):
        rebuild_timeline(history, view)
        assert answers(view, customers(hub), addresses()) == before
    link = settings.sqlite_path("views")  # views.db, or history-views.db beside history.db
    first, second = (link.with_name(f"{link.stem}.{n}.db") for n in (1, 2))
    assert link.is_symlink() and link.resolve() == second
    deadline = time.monotonic() + 10
    while first.exists() and time.monotonic() < deadline:  # removed after a grace period
        time.sleep(0.1)
    left = {p.name for p in link.parent.glob(f"{link.stem}*")}
    assert left <= {link.name, *(f"{second.name}{s}" for s in ("", "-wal", "-shm"))}


def test_an_event_the_load_cannot_map_is_skipped_with_its_reason_and_the_rest_shows(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = bootstrap(settings)
    history = hub.history()
    history.record_interactions(
        [sms(PHONES[0], "SM-1", T0), sms(PHONES[0], "SM-poison", T0), sms(PHONES[0], "SM-3", T0)]
    )
    poison = next(
        n.id
        for n in history.recorder.select_notifications(start=1, limit=100, topics=TOPICS)
        if getattr(history.mapper.to_domain_event(n), "provider_ref", None) == "SM-poison"
    )
    changes_for = rebuild_module.changes_for

    def refusing(events: list) -> Any:
        if any(position == poison for position, _ in events):
            raise ValueError("cannot be shown")
        return changes_for(events)

    monkeypatch.setattr(rebuild_module, "changes_for", refusing)
    view = hub.timeline_view()
    rebuild_timeline(history, view)
    assert [(s.notification_id, s.reason) for s in view.skipped()] == [
        (poison, "ValueError: cannot be shown")
    ]
    shown = [e.provider_ref for e in view.timeline(customer_id_for(PHONES[0]))]
    assert shown == ["SM-3", "SM-1"]
