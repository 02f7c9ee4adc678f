"""The IMAP ingester SIGKILLed mid-batch and restarted: every mail recorded exactly once.

The ingester runs as its own process (``switchboard serve email``). Its checkpoint
store is slowed down by the runner below — a slow disk — so that the window in which a batch
is confirmed by Kafka but not yet checkpointed is wide enough for the test to kill the process
inside it, on purpose rather than by luck. The restarted ingester publishes that batch again;
the recorder drops the repeats by Message-ID.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from channels.email import ImapMailbox, SQLiteCheckpointStore
from channels.email.checkpoints import CHECKPOINTS_FILE
from services.bootstrap.kafka_topics import ensure_topics
from services.bootstrap.settings import Settings
from services.recorder import Recorder
from tests.e2e.processes import ChildProcess
from tests.helpers import eventually, recorded_refs, records_in, settings_env
from tests.mail_fixtures import DovecotServer, make_mail

pytestmark = pytest.mark.slow

RUNNER = """
import sys, time
from channels.email import checkpoints
original = checkpoints.SQLiteCheckpointStore.advance
delay = float(sys.argv[1])
def slow_advance(self, *args, **kwargs):
    time.sleep(delay)
    return original(self, *args, **kwargs)
checkpoints.SQLiteCheckpointStore.advance = slow_advance
from services.bootstrap.cli import main
sys.argv = ["switchboard", "serve", "email"]
main()
"""


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'history.db'}"


class IngesterProcess(ChildProcess):
    """`switchboard serve email` with the test's settings, checkpointing
    ``checkpoint_delay_s`` late."""

    def __init__(self, settings: Settings, log: Path, checkpoint_delay_s: float) -> None:
        args = [sys.executable, "-c", RUNNER, str(checkpoint_delay_s)]
        super().__init__(args, log, env={**os.environ, **settings_env(settings)})


@pytest.fixture
def ingester_processes() -> Iterator[list[IngesterProcess]]:
    processes: list[IngesterProcess] = []
    yield processes
    for process in processes:
        process.kill()


def checkpointed_uid(data_dir: Path, mailbox: str) -> int:
    return SQLiteCheckpointStore.last_uid(data_dir / CHECKPOINTS_FILE, mailbox)


async def test_ingester_killed_mid_batch_and_restarted_records_each_mail_once(
    hub_settings: Settings,
    running_recorder: Recorder,
    dovecot: DovecotServer,
    imap_mailbox: ImapMailbox,
    ingester_processes: list[IngesterProcess],
    tmp_path: Path,
) -> None:
    n = 600
    await ensure_topics(hub_settings, hub_settings.kafka_bootstrap)
    dovecot.append(imap_mailbox, *[make_mail(body=f"mail {i}") for i in range(n)])
    settings = hub_settings.model_copy(
        update={
            "email_mailboxes": [
                {
                    "name": imap_mailbox.name,
                    "host": imap_mailbox.host,
                    "port": imap_mailbox.port,
                    "tls": "none",
                    "user": imap_mailbox.user,
                    "password": imap_mailbox.password,
                    "address": imap_mailbox.address,
                }
            ],
            "email_timing": {"fetch_batch": 50, "read_timeout_s": 5, "backoff_max_s": 1},
        }
    )
    first = IngesterProcess(settings, tmp_path / "ingester-1.log", checkpoint_delay_s=0.4).start()
    ingester_processes.append(first)

    async def batch_published_not_checkpointed() -> bool:
        done = checkpointed_uid(hub_settings.data_dir, imap_mailbox.name)
        # UIDs are 1..n in order, one event each: more events than the checkpoint covers means
        # a batch is on Kafka and its checkpoint is not yet written.
        return done >= 100 and await records_in(hub_settings) > done

    await eventually(batch_published_not_checkpointed, timeout=60, what="a batch in flight")
    first.kill()
    checkpoint_at_kill = checkpointed_uid(hub_settings.data_dir, imap_mailbox.name)
    published_at_kill = await records_in(hub_settings)
    assert checkpoint_at_kill < published_at_kill < n, "the kill must land inside a batch"

    second = IngesterProcess(settings, tmp_path / "ingester-2.log", checkpoint_delay_s=0).start()
    ingester_processes.append(second)
    await eventually(
        lambda: checkpointed_uid(hub_settings.data_dir, imap_mailbox.name) == n,
        timeout=60,
        what="the restarted ingester to read the rest",
    )
    second.stop()
    # The in-flight batch was published twice; the history holds each mail once.
    assert await records_in(hub_settings) > n
    await eventually(
        lambda: sum(recorded_refs(hub_settings).values()) >= n, timeout=60, what="all recorded"
    )
    counts = recorded_refs(hub_settings)
    assert len(counts) == n and set(counts.values()) == {1}
