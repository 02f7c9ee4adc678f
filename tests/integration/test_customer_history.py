"""The customer history application on every store: recording, dedupe, snapshots, as-of."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from eventsourcing.persistence import IntegrityError, Tracking

from contracts import Channel, ConsentChanged, Direction, MessageReceived
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.settings import Settings
from services.domain import Customer, customer_id_for
from services.history.customers import SNAPSHOT_INTERVAL, CustomerHistory

T0 = datetime(2026, 1, 5, 8, 30, tzinfo=UTC)


def sms(ref: str, party: str = "+493012345678", at: datetime = T0) -> MessageReceived:
    return MessageReceived(
        channel=Channel.sms, party=party, provider_ref=ref, occurred_at=at, body=f"message {ref}"
    )


@pytest.fixture
def history(store_url: str, tmp_path: Path) -> CustomerHistory:
    return bootstrap(Settings(store=store_url, data_dir=tmp_path)).history()


def test_first_contact_creates_the_customer_with_an_id_derived_from_the_address(
    history: CustomerHistory,
) -> None:
    outcome = history.record_interactions([sms("SM1")])
    assert outcome.recorded == 1 and outcome.customers_created == 1
    customer = history.get_customer(customer_id_for("+493012345678"))
    assert customer.addresses == ["+493012345678"]
    assert customer.contact_count == 1
    assert customer.last_channel == "sms"


def test_same_provider_ref_in_one_batch_and_across_batches_is_recorded_once(
    history: CustomerHistory,
) -> None:
    first = history.record_interactions([sms("SM1"), sms("SM1"), sms("SM2")])
    again = history.record_interactions([sms("SM1"), sms("SM3")])
    assert (first.recorded, first.duplicates) == (2, 1)
    assert (again.recorded, again.duplicates) == (1, 1)
    assert history.get_customer(customer_id_for("+493012345678")).contact_count == 3


def test_replayed_kafka_offset_is_rejected_and_leaves_the_history_alone(
    history: CustomerHistory,
) -> None:
    history.record_interactions([sms("SM1")], trackings=[Tracking("kafka:t:0", 10)])
    with pytest.raises(IntegrityError):
        history.record_interactions([sms("SM2")], trackings=[Tracking("kafka:t:0", 10)])
    assert history.tracked_offset("t", 0) == 10
    history.forget_cached_customers()
    customer = history.get_customer(customer_id_for("+493012345678"))
    assert customer.contact_count == 1  # SM2 was rolled back with the offset
    # ... and SM2 is not remembered as seen, so a later delivery records it
    assert (
        history.record_interactions([sms("SM2")], trackings=[Tracking("kafka:t:0", 11)]).recorded
        == 1
    )


def test_opt_out_changes_consent(history: CustomerHistory) -> None:
    history.record_interactions(
        [
            ConsentChanged(
                channel=Channel.sms,
                direction=Direction.inbound,
                party="+493012345678",
                provider_ref="SM9",
                occurred_at=T0,
                purpose="marketing",
                granted=False,
                source="sms-keyword",
                keyword="STOP",
            ),
        ]
    )
    customer = history.get_customer(customer_id_for("+493012345678"))
    assert customer.has_consent("sms", "marketing") is False
    assert customer.has_consent("email", "marketing") is None


def test_long_history_loads_from_a_snapshot(history: CustomerHistory) -> None:
    n = SNAPSHOT_INTERVAL * 2 + 5
    for start in range(0, n, 50):
        history.record_interactions(
            [sms(f"SM{i}", at=T0 + timedelta(minutes=i)) for i in range(start, min(n, start + 50))]
        )
    cid = customer_id_for("+493012345678")
    snapshots = list(history.snapshots.get(cid, desc=True, limit=1))
    # taken when a batch crosses a multiple of the interval, at the batch's end
    assert snapshots and SNAPSHOT_INTERVAL * 2 <= snapshots[0].originator_version < n + 1
    history.forget_cached_customers()
    customer = history.get_customer(cid)
    assert customer.version == n + 1 and customer.contact_count == n


def test_auditor_sees_the_customer_as_of_a_past_moment(history: CustomerHistory) -> None:
    history.record_interactions([sms("SM1")])
    between = datetime.now(UTC)
    history.record_interactions([sms("SM2")])
    past = history.as_of(customer_id_for("+493012345678"), between)
    assert past.contact_count == 1


def test_customer_aggregate_is_pure_and_tracks_the_latest_contact() -> None:
    c = Customer(address="+493012345678", channel="sms")
    c.record_interaction(
        interaction_type="message.received.v1",
        channel="sms",
        direction="inbound",
        party="+493012345678",
        provider_ref="a",
        occurred_at=T0 + timedelta(hours=1),
        payload={},
    )
    c.record_interaction(
        interaction_type="call.ringing.v1",
        channel="voice",
        direction="inbound",
        party="+493012345678",
        provider_ref="b",
        occurred_at=T0,
        payload={},
    )  # arrived late, happened earlier
    assert c.last_channel == "sms" and c.contact_count == 2


def test_batches_commit_with_their_offsets_and_refs(history: CustomerHistory) -> None:
    # Many batches, so psycopg prepares the statements (after five executions) and the
    # pipelined inserts of tracking, refs and events run in their prepared form.
    for n in range(8):
        batch = [sms(f"SM{n}-{i}", party=f"+4930{60000000 + i:08d}") for i in range(200)]
        outcome = history.record_interactions(batch, trackings=[Tracking("kafka:t:3", n + 1)])
        assert outcome.recorded == 200
        assert history.tracked_offset("t", 3) == n + 1
    again = history.record_interactions(batch[:10], trackings=[Tracking("kafka:t:3", 100)])
    assert again.duplicates == 10


def test_an_unknown_customer_is_a_customer_not_found_error_naming_the_id(
    history: CustomerHistory,
) -> None:
    from uuid import uuid4

    from contracts.errors import NotFound
    from services.history.customers import CustomerNotFound

    missing = uuid4()
    with pytest.raises(CustomerNotFound, match=str(missing)) as caught:
        history.get_customer(missing)
    assert isinstance(caught.value, NotFound)
    with pytest.raises(CustomerNotFound):
        history.as_of(missing, T0)
