"""The e-mail channel's inbound side: every mailbox -> contract events -> Kafka, as a service.

One thread per mailbox (``channels.email.imap.ImapIngester``: the IMAP threads block on the
network), one Kafka producer on the asyncio loop. ``KafkaMailSink`` is the bridge: a thread hands
over a batch and waits until Kafka confirmed every record of it (or gives up after
``publish_timeout_s``), which is what lets the thread advance its checkpoint.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from channels.email.blobs import BlobStore, LocalBlobStore
from channels.email.checkpoints import CHECKPOINTS_FILE, CheckpointStore, SQLiteCheckpointStore
from channels.email.config import ImapMailbox, ImapTiming, MailLimits
from channels.email.imap import ImapIngester, PublishFailed
from channels.publishing import InteractionPublisher
from contracts import DeadLetter, InteractionEvent, dump_interaction

__all__ = ["EmailIngestion", "KafkaMailSink"]

log = logging.getLogger(__name__)


class KafkaMailSink:
    """Publishes a batch from an IMAP thread through the loop's producer, confirmed."""

    def __init__(
        self,
        publisher: InteractionPublisher,
        *,
        deadletter_topic: str,
        loop: asyncio.AbstractEventLoop,
        timeout_s: float = 60.0,
    ) -> None:
        self.publisher = publisher
        self.deadletter_topic = deadletter_topic
        self.loop = loop
        self.timeout_s = timeout_s

    def deliver(
        self, events: Sequence[InteractionEvent], dead_letters: Sequence[DeadLetter]
    ) -> None:
        if not events and not dead_letters:
            return
        try:
            future = asyncio.run_coroutine_threadsafe(
                self._publish(events, dead_letters), self.loop
            )
        except RuntimeError as exc:  # the loop is closed: the service is stopping
            raise PublishFailed(f"event loop unavailable: {exc}") from None
        try:
            future.result(self.timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise PublishFailed(f"Kafka did not confirm within {self.timeout_s}s") from None
        except Exception as exc:
            raise PublishFailed(f"{type(exc).__name__}: {exc}") from exc

    async def _publish(
        self, events: Sequence[InteractionEvent], dead_letters: Sequence[DeadLetter]
    ) -> None:
        # All records handed to the producer first, then one wait: a batch costs one round trip
        # to the broker, not one per mail. Per-key order holds (idempotent producer).
        pending = [
            await self.publisher.publish_unconfirmed(dump_interaction(e), key=e.party)
            for e in events
        ]
        for letter in dead_letters:
            pending.append(
                await self.publisher.publish_dead_letter(
                    letter,
                    topic=self.deadletter_topic,
                    key=letter.source_topic.encode(),
                    confirm=False,
                )
            )
        await asyncio.gather(*pending)


class EmailIngestion:
    """Reads every configured mailbox into the publisher's topic until stopped.

    ``publisher`` makes the Kafka producer of one ``run`` (which starts and stops it): a
    supervisor may run the ingestion again after Kafka was away, with a new producer.
    ``data_dir`` holds the checkpoints (``email-checkpoints.db``) and, unless another store is
    given, the attachment blobs (``blobs/``).
    """

    def __init__(
        self,
        mailboxes: Sequence[ImapMailbox],
        *,
        publisher: Callable[[], InteractionPublisher],
        deadletter_topic: str,
        data_dir: Path,
        limits: MailLimits | None = None,
        timing: ImapTiming | None = None,
        blobs: BlobStore | None = None,
        checkpoints: CheckpointStore | None = None,
    ) -> None:
        names = [m.name for m in mailboxes]
        if len(set(names)) != len(names):
            raise ValueError(f"mailbox names must be unique, got {names}")
        self.mailboxes = list(mailboxes)
        self.publisher = publisher
        self.deadletter_topic = deadletter_topic
        self.limits = limits or MailLimits()
        self.timing = timing or ImapTiming()
        self.blobs = blobs or LocalBlobStore(Path(data_dir) / "blobs")
        self.checkpoints = checkpoints or SQLiteCheckpointStore(Path(data_dir) / CHECKPOINTS_FILE)
        self.ingesters: list[ImapIngester] = []
        self._started = asyncio.Event()

    async def wait_started(self) -> None:
        await self._started.wait()

    async def run(self, stop: asyncio.Event) -> None:
        thread_stop = threading.Event()
        async with self.publisher() as publisher:
            sink = KafkaMailSink(
                publisher,
                deadletter_topic=self.deadletter_topic,
                loop=asyncio.get_running_loop(),
                timeout_s=self.timing.publish_timeout_s,
            )
            self.ingesters = [
                ImapIngester(
                    mailbox,
                    sink=sink,
                    checkpoints=self.checkpoints,
                    blobs=self.blobs,
                    limits=self.limits,
                    timing=self.timing,
                )
                for mailbox in self.mailboxes
            ]
            loop = asyncio.get_running_loop()
            crashed: list[BaseException] = []
            crash = asyncio.Event()

            def read_mailbox(ingester: ImapIngester) -> None:
                try:
                    ingester.run(thread_stop)
                except BaseException as exc:  # a bug, not the network: stop the service loudly
                    log.exception("mailbox %s: ingester crashed", ingester.mailbox.name)
                    crashed.append(exc)
                    loop.call_soon_threadsafe(crash.set)

            threads = [
                threading.Thread(
                    target=read_mailbox,
                    args=(ingester,),
                    name=f"imap-{ingester.mailbox.name}",
                    daemon=True,
                )
                for ingester in self.ingesters
            ]
            for thread in threads:
                thread.start()
            log.info("reading mailboxes %s", [m.name for m in self.mailboxes])
            self._started.set()
            waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(crash.wait())]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
                thread_stop.set()
                for ingester in self.ingesters:
                    ingester.wake()  # out of IDLE now, not at the next poll
                # The loop keeps running while the threads finish: one may be waiting on a
                # publish confirmation.
                for thread in threads:
                    await asyncio.to_thread(thread.join, self.timing.read_timeout_s + 5)
                if not any(thread.is_alive() for thread in threads):
                    for ingester in self.ingesters:
                        ingester.close()
                    self.checkpoints.close()
        if crashed:
            raise crashed[0]
