"""E-mail ingest benchmark: IMAP mailbox -> ingester -> Kafka -> recorder -> timeline visible.

Appends N mails to a throwaway Dovecot mailbox (IMAP MULTIAPPEND), then measures in the same
run: the raw IMAP fetch rate of that mailbox (imapclient, batches of 200 — the floor: the
ingester cannot read faster than the server serves), and the whole pipeline — the ingester in
its own process (``switchboard serve email``, as in production), the recorder in this
one, the timeline service in its own — until the timeline shows every mail.

    python bench/email_ingest.py --n 10000

Needs Dovecot (Debian: dovecot-imapd) and root (the throwaway server runs as root, see
SERVERS.md). Kafka: SWITCHBOARD_KAFKA_BOOTSTRAP, or it starts the local broker.
"""

from __future__ import annotations

import sys
from pathlib import Path

# (Not named bench/email.py: a script's folder comes first on sys.path, and that name would
# shadow the standard library's email package for every script in bench/.)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import os
import random
import shutil
import subprocess
import tempfile
import time
import uuid

from imapclient import IMAPClient
from rich.console import Console
from rich.table import Table

from channels.email import SQLiteCheckpointStore
from channels.email.checkpoints import CHECKPOINTS_FILE
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.kafka_topics import ensure_topics
from services.bootstrap.settings import Settings
from tests.mail_fixtures import PASSWORD, DovecotServer, make_mail

console = Console(stderr=True)

_QUOTE = "\n\nOn Mon, 23 Nov 2026 at 09:00, Support <support@support.example.org> wrote:\n"


def make_mails(n: int, customers: int, seed: int = 1) -> list[bytes]:
    """Realistic small mails: replies with quotes and signatures, some HTML, a few PDFs."""
    rng = random.Random(seed)
    mails = []
    for i in range(n):
        who = rng.randrange(customers)
        quoted = "".join(f"> line {k} of what we wrote before\n" for k in range(rng.randint(0, 12)))
        body = f"Hello, about order {4000 + i}: it has not arrived yet.\n\n-- \nCustomer {who}"
        mails.append(
            make_mail(
                sender=f"Customer {who} <customer{who}@example.com>",
                subject=f"Order {4000 + i}",
                body=body + (_QUOTE + quoted if quoted else ""),
                html=f"<p>Hello, about order {4000 + i}</p>" if i % 5 == 0 else None,
                attachments=[("scan.pdf", "application/pdf", os.urandom(20_000))]
                if i % 50 == 0
                else (),
            )
        )
    return mails


def raw_fetch(dovecot: DovecotServer, user: str, batch: int = 200) -> tuple[float, int]:
    """The floor: SELECT, SEARCH and FETCH BODY.PEEK[] of every mail, nothing else."""
    start = time.perf_counter()
    fetched = 0
    with IMAPClient("127.0.0.1", port=dovecot.port, ssl=False, timeout=60) as client:
        client.login(user, PASSWORD)
        client.select_folder("INBOX", readonly=True)
        uids = client.search(["UID", "1:*"])
        for at in range(0, len(uids), batch):
            for data in client.fetch(uids[at : at + batch], ["BODY.PEEK[]"]).values():
                fetched += len(data[b"BODY[]"]) > 0
    return time.perf_counter() - start, fetched


def checkpointed(data_dir: Path, mailbox: str) -> int:
    return SQLiteCheckpointStore.last_uid(data_dir / CHECKPOINTS_FILE, mailbox)


def start_ingester(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services", "serve", "email"],
            env={**os.environ, **settings.to_env()},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def make_work_dir() -> Path:
    work = Path(tempfile.mkdtemp(prefix="sb-bench-email-"))
    work.chmod(0o711)  # Dovecot's mail processes (dovenull) reach the mail folders through it
    return work


async def pipeline(settings: Settings, mailbox: str, n: int) -> dict[str, float]:
    recorder = bootstrap(settings).recorder()
    view = bootstrap(settings).timeline_view()
    env = {**os.environ, **settings.to_env()}
    stop = asyncio.Event()
    recorder_task = asyncio.create_task(recorder.run(stop))
    await recorder.wait_started()
    timeline = subprocess.Popen(
        [sys.executable, "-m", "services", "serve", "timeline", "--log-level", "WARNING"], env=env
    )
    marks: dict[str, float] = {}
    start = time.perf_counter()
    ingester = start_ingester(settings, settings.data_dir / "ingester.log")
    try:
        while True:
            await asyncio.sleep(0.05)
            now = time.perf_counter() - start
            if "published" not in marks and checkpointed(settings.data_dir, mailbox) >= n:
                marks["published"] = now
            if "recorded" not in marks and recorder.stats.recorded + recorder.stats.duplicates >= n:
                marks["recorded"] = now
            if "recorded" in marks:
                shown = await asyncio.to_thread(view.max_tracking_id, "switchboard")
                if (shown or 0) >= recorder.stats.last_notification_id:
                    marks["visible"] = now
                    break
            for name, proc in (("ingester", ingester), ("timeline", timeline)):
                if proc.poll() is not None:
                    raise RuntimeError(f"the {name} exited")
            if recorder_task.done():
                recorder_task.result()
            if now > 600:
                raise TimeoutError(f"not done after 600 s: {recorder.stats}")
    finally:
        stop.set()
        for proc in (ingester, timeline):
            proc.terminate()
            proc.wait(30)
    await recorder_task
    console.print(f"recorder: {recorder.stats}")
    return marks


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--customers", type=int, default=2_000)
    args = parser.parse_args()
    n = args.n

    work = make_work_dir()
    cleanups = [lambda: shutil.rmtree(work, ignore_errors=True)]
    try:
        kafka_address = os.environ.get("SWITCHBOARD_KAFKA_BOOTSTRAP")
        if not kafka_address:
            from deploy.kafka_local import LocalKafka

            kafka = LocalKafka(work_dir=work / "kafka").start()
            cleanups.append(kafka.stop)
            kafka_address = kafka.bootstrap
        dovecot = DovecotServer(work)
        dovecot.start()
        cleanups.append(dovecot.stop)
        mailbox = dovecot.add_mailbox("bench")

        suffix = uuid.uuid4().hex[:6]
        settings = Settings(
            data_dir=work / "var",
            store=f"sqlite:///{work / 'history.db'}",
            kafka_bootstrap=kafka_address,
            interactions_topic=f"bench.interactions.{suffix}",
            deadletter_topic=f"bench.deadletter.{suffix}",
            # The recorder reads the routing decisions too: the bench's own, not the hub's.
            routing_topic=f"bench.routing.{suffix}",
            presence_topic=f"bench.presence.{suffix}",
            recorder_group=f"bench-{suffix}",
            topic_partitions=1,
        )
        settings.data_dir.mkdir(parents=True)
        await ensure_topics(settings, kafka_address)
        settings = settings.model_copy(
            update={
                "email_mailboxes": [
                    {
                        "name": mailbox.name,
                        "host": mailbox.host,
                        "port": mailbox.port,
                        "tls": "none",
                        "user": mailbox.user,
                        "password": PASSWORD,
                        "address": mailbox.address,
                    }
                ]
            }
        )
        console.print(f"generating {n} mails…")
        mails = make_mails(n, args.customers)
        size = sum(map(len, mails))
        started = time.perf_counter()
        dovecot.append(mailbox, *mails)
        append_s = time.perf_counter() - started
        fetch_s, fetched = raw_fetch(dovecot, mailbox.user)
        assert fetched == n, f"the mailbox holds {fetched} mails, not {n}"
        marks = await pipeline(settings, mailbox.name, n)
    finally:
        for cleanup in reversed(cleanups):
            cleanup()

    table = Table(title=f"e-mail ingest, {n} mails ({size / n / 1024:.1f} KiB average), 2 cores")
    for column in ("measure", "seconds", "mails/s"):
        table.add_column(column)
    table.add_row(
        "IMAP MULTIAPPEND (setup, for reference)", f"{append_s:.2f}", f"{n / append_s:,.0f}"
    )
    table.add_row("floor: raw IMAP fetch of the mailbox", f"{fetch_s:.2f}", f"{n / fetch_s:,.0f}")
    for mark, label in (
        ("published", "ingester: on Kafka (confirmed, checkpointed)"),
        ("recorded", "pipeline: recorded in the event store"),
        ("visible", "pipeline: visible on the timeline"),
    ):
        table.add_row(label, f"{marks[mark]:.2f}", f"{n / marks[mark]:,.0f}")
    Console().print(table)
    print(
        f"timeline-visible rate / raw fetch rate = {fetch_s / marks['visible']:.1%}; "
        f"ingester alone / raw fetch = {fetch_s / marks['published']:.1%}"
    )


if __name__ == "__main__":
    asyncio.run(main())
