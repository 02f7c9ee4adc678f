"""Reachability benchmark: ``ReachabilityView.rankings`` of N customers at once, as the campaign
planner asks for them, with its floor measured in the same run.

The customers are built through the store: ``CustomerHistory.record_interactions`` in batches of
1 000 contacts; each customer has a WhatsApp exchange (sent, delivered, answered), an SMS that went
undelivered and, every third one, an e-mail that bounced (so 2-3 channels each).  The follower
applies them to the reachability view (its rate is printed too), then:

- floor: the rows ``rankings`` reads, selected in the same chunks (IN queries of 900 ids) on
  the view's own connection, no ranking;
- rankings: ``view.rankings(all ids)`` — the figure the planner sees (target: well under 5 s
  for 100 000 customers).

    python bench/reachability.py                      # 100 000 customers, SQLite
    python bench/reachability.py --customers 20000 --store postgres   # throwaway cluster
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contracts import Channel, DeliveryStatusChanged, MessageReceived, MessageSent
from projections.reachability_store import CHUNK, FACT_COLUMNS
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.settings import Settings
from services.domain import customer_id_for

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def contacts_of(i: int) -> list:
    phone, at = f"+4930{i:08d}", T0 + timedelta(seconds=i)
    wa = f"whatsapp:{phone}"
    out = [
        MessageReceived(
            channel=Channel.sms, party=phone, provider_ref=f"in-{i}", occurred_at=at, body="hi"
        ),
        MessageSent(
            channel=Channel.whatsapp,
            party=wa,
            provider_ref=f"wa-{i}",
            occurred_at=at + timedelta(minutes=1),
            body="hello",
        ),
        DeliveryStatusChanged(
            channel=Channel.whatsapp,
            party=wa,
            provider_ref=f"wa-{i}:d",
            occurred_at=at + timedelta(minutes=2),
            message_ref=f"wa-{i}",
            status="delivered",
        ),
        MessageReceived(
            channel=Channel.whatsapp,
            party=wa,
            provider_ref=f"wa-in-{i}",
            occurred_at=at + timedelta(minutes=9),
            body="thanks",
        ),
        MessageSent(
            channel=Channel.sms,
            party=phone,
            provider_ref=f"sm-{i}",
            occurred_at=at + timedelta(minutes=10),
            body="hello",
        ),
        DeliveryStatusChanged(
            channel=Channel.sms,
            party=phone,
            provider_ref=f"sm-{i}:u",
            occurred_at=at + timedelta(minutes=11),
            message_ref=f"sm-{i}",
            status="undelivered",
            error_code="30003",
        ),
    ]
    if i % 3 == 0:
        mail = f"c{i}@example.com"
        out += [
            MessageSent(
                channel=Channel.email,
                party=mail,
                provider_ref=f"<m{i}@hub>",
                occurred_at=at,
                body="hello",
            ),
            DeliveryStatusChanged(
                channel=Channel.email,
                party=mail,
                provider_ref=f"<b{i}@mta>",
                occurred_at=at + timedelta(minutes=5),
                message_ref=f"<m{i}@hub>",
                status="failed",
                error_code="5.1.1",
            ),
        ]
    return out


def build_view(settings: Settings, customers: int) -> None:
    """The view's rows from the same contacts, folded as the follower folds them, without the
    event store in between (minutes less for 100 000 customers; --via-history for the real
    path): each contact through a Customer aggregate, its events applied in batches."""
    from eventsourcing.persistence import Tracking

    from contracts import identity_of
    from services.domain import Customer
    from services.history.customers import interaction_fields

    view = bootstrap(settings).reachability_view()
    started, position, batch = time.perf_counter(), 0, []
    for i in range(customers):
        for contact in contacts_of(i):
            person = identity_of(contact.party)
            customer = Customer.first_contact(person, contact.party, str(contact.channel))
            customer.record_interaction(**interaction_fields(contact))
            for event in customer.collect_events()[1:]:
                position += 1
                batch.append((position, event))
        if len(batch) >= 2000 or i == customers - 1:
            view.apply(batch, Tracking("switchboard", position))
            batch = []
    took = time.perf_counter() - started
    say(f"folded {position:,} contacts into the view in {took:.1f} s ({position / took:,.0f}/s)")


def build(settings: Settings, customers: int) -> None:
    hub = bootstrap(settings)
    history = hub.history()
    started, batch = time.perf_counter(), []
    for i in range(customers):
        batch += contacts_of(i)
        if len(batch) >= 1000:
            history.record_interactions(batch)
            batch = []
    if batch:
        history.record_interactions(batch)
    events = history.recorder.max_notification_id()
    say(f"recorded {events:,} events in {time.perf_counter() - started:.1f} s")
    follower = hub.reachability_follower()
    started = time.perf_counter()
    follower.catch_up()
    took = time.perf_counter() - started
    say(f"followed into the view in {took:.1f} s ({events / took:,.0f} events/s)")


def floor(view, ids: list[UUID], postgres: bool) -> float:
    """The rows rankings reads (customers and addresses), in the same chunks; nothing ranked."""
    columns = ", ".join(("customer_id", "channel", "address", *FACT_COLUMNS))
    started = time.perf_counter()
    with view._reading() as c:
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            if postgres:
                t = view._t
                c.execute(f"SELECT * FROM {t['customers']} WHERE customer_id = ANY(%s)", (chunk,))
                c.fetchall()
                c.execute(
                    f"SELECT {columns} FROM {t['addresses']} WHERE customer_id = ANY(%s)",
                    (chunk,),
                )
            else:
                marks = ", ".join("?" * len(chunk))
                texts = [i.bytes for i in chunk]
                c.execute(f"SELECT * FROM customers WHERE customer_id IN ({marks})", texts)
                c.fetchall()
                c.execute(f"SELECT {columns} FROM addresses WHERE customer_id IN ({marks})", texts)
            c.fetchall()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="build the SQLite store here, or reuse it")
    parser.add_argument(
        "--via-history", action="store_true", help="record through the customer history"
    )
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="sb-bench-reach-"))
    cluster = None
    try:
        if args.store == "postgres":
            from deploy.pg_local import start_throwaway_cluster

            cluster = start_throwaway_cluster()
            settings = Settings(data_dir=work, store=cluster.create_database())
        else:
            settings = Settings(data_dir=work, store="sqlite")
        if args.via_history and not (args.keep and (work / "history.db").exists()):
            build(settings, args.customers)
        elif not args.via_history and not (args.keep and (work / "reachability.db").exists()):
            build_view(settings, args.customers)
        ids = [customer_id_for(f"+4930{i:08d}") for i in range(args.customers)]
        view = bootstrap(settings).reachability_view()
        phones = ids  # the ids the planner would ask for: one per person
        started = time.perf_counter()
        sum(range(10_000_000))
        print(
            f"reference: sum(range(10**7)) in {time.perf_counter() - started:.2f} s "
            "(how busy the machine is)"
        )
        for run in range(1, args.runs + 1):
            raw = floor(view, phones, args.store == "postgres")
            started, cpu = time.perf_counter(), time.process_time()
            answers = view.rankings(phones)
            took, cpu = time.perf_counter() - started, time.process_time() - cpu
            channels = sum(len(r) for r in answers.values())
            print(
                f"run {run}: rankings of {len(phones):,} customers ({channels:,} channels) "
                f"in {took:.2f} s ({cpu:.2f} s CPU); floor (the same rows selected, nothing "
                f"ranked) {raw:.2f} s; ratio {took / raw:.1f}x"
            )
        sample = view.ranking(phones[0])
        print("customer 0:", [f"{r.channel}: {', '.join(r.reasons)}" for r in sample])
        return 0
    finally:
        if cluster is not None:
            cluster.discard()
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
