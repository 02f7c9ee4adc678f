"""The recorder: consumes ``sb.interactions.v1`` (and the routing decisions on ``sb.routing.v1``)
into the customer history, exactly once.

Why aiokafka directly and not a FastStream subscriber: the source of truth for
"how far have we read" is the event store, not Kafka's committed offsets.  Each
batch's next offset is committed in the same transaction as its events; when a
partition is assigned we seek to that stored position.  That needs the consumer's
``seek`` inside the rebalance callback, which FastStream's subscriber hides.  Kafka
offsets are still committed after each store commit, for lag monitoring only.

No batch is recorded for a partition before its position has been taken from the
store: aiokafka starts fetching from Kafka's committed offset as soon as a partition is
assigned, before the rebalance callback has sought.  A record from such a fetch, on an
empty or restored store, would commit a tracking position past a gap that is then never
read.  So each partition's position carries an epoch, set when it was sought from the
store; a batch fetched while the partition had no epoch, or under an older one, is dropped
unread (the seek has already moved the consumer back to where the store says).  A
partition the store has never seen is read from the start of Kafka's retention.

Per batch and partition:
  1. parse every record; the unparseable ones go to the dead-letter topic (confirmed
     by the broker) with the reason and the original bytes;
  2. record the valid ones and the partition's next offset in one transaction;
  3. a conflict (another consumer got there first, a stale cache) rolls it all back:
     forget cached customers and seek back to the stored offset;
  4. an unexpected error bisects the batch down to the record that causes it, which is
     dead-lettered, so one bad record never stops the consumer.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import IllegalStateError
from eventsourcing.persistence import IntegrityError, OperationalError, Tracking

from channels.publishing import InteractionPublisher
from contracts import InvalidInteraction, parse_interaction
from services import metrics
from services.consumers import kafka_consumer
from services.history.customers import CustomerHistory, tracking_name

log = logging.getLogger(__name__)


@dataclass
class RecorderStats:
    consumed: int = 0  # records handled (recorded, duplicate or dead-lettered) and committed
    recorded: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    conflicts: int = 0
    unpositioned: int = 0  # records dropped unread because their fetch preceded a seek
    last_notification_id: int = 0
    assigned: dict[str, list[int]] = field(default_factory=dict)  # topic -> partitions


class _SeekToStoredOffsets(ConsumerRebalanceListener):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.recorder.forget_positions(revoked)
        log.info("partitions revoked: %s", sorted(tp.partition for tp in revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        # Before any await: a batch fetched from Kafka's committed offset may be returned
        # while we read the store below, and must not be taken for a positioned one.
        self.recorder.forget_positions(assigned)
        # Another member may have written these partitions while we did not own them.
        self.recorder.history.forget_cached_customers()
        for tp in assigned:
            await self.recorder.reseek(tp)
        by_topic: dict[str, list[int]] = {}
        for tp in sorted(assigned):
            by_topic.setdefault(tp.topic, []).append(tp.partition)
        self.recorder.stats.assigned = by_topic
        log.info("partitions assigned: %s", by_topic)


class Recorder:
    def __init__(
        self,
        history: CustomerHistory,
        *,
        bootstrap: str,
        topics: Sequence[str],
        deadletter_topic: str,
        group_id: str,
        dead_letters: InteractionPublisher,
        batch_size: int = 1000,
        session_timeout_ms: int = 10000,
        client_id: str = "switchboard-recorder",
    ) -> None:
        """``dead_letters``: the producer of dead letters (not yet started: ``run`` starts and
        stops it, so a recorder and its producer are made for one run)."""
        self.history = history
        self.topics = list(topics)
        self.deadletter_topic = deadletter_topic
        self.batch_size = batch_size
        self.stats = RecorderStats()
        self.group_id = group_id
        self.consumer = kafka_consumer(
            bootstrap=bootstrap,
            group_id=group_id,
            client_id=client_id,
            fetch_max_wait_ms=50,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            session_timeout_ms=session_timeout_ms,
            max_poll_interval_ms=300000,
        )
        self.dead_letters = dead_letters
        self._started = asyncio.Event()
        # Per partition: the epoch of the seek that took its position from the store.
        self._epochs: dict[TopicPartition, int] = {}
        # Per partition: the next offset after what this process recorded (the store is at
        # least there).
        self._recorded_up_to: dict[TopicPartition, int] = {}
        self._next_epoch = itertools.count(1)

    async def lag(self) -> int | None:
        """Records on the partitions this recorder holds that are not recorded yet: each
        partition's end (as of the last fetch) minus the offset committed to Kafka after its
        last recorded batch.  None before it holds a partition whose end it knows."""
        total, known = 0, False
        for tp in self.consumer.assignment():
            end = self.consumer.highwater(tp)
            if end is None:
                continue
            known = True
            total += max(0, end - (await self.consumer.committed(tp) or 0))
        return total if known else None

    def forget_positions(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._epochs.pop(tp, None)

    async def seek_to_stored(self, tp: TopicPartition) -> None:
        """Move the consumer to where the store says this partition continues."""
        self._epochs.pop(tp, None)
        offset = await asyncio.to_thread(self.history.tracked_offset, tp.topic, tp.partition)
        if tp not in self.consumer.assignment():
            return  # revoked meanwhile: its new owner seeks it
        try:
            if offset is not None:
                self.consumer.seek(tp, offset)
            else:
                # The store never recorded this partition (a new or emptied store), whatever
                # Kafka's committed offset says: read it from the start of its retention.
                await self.consumer.seek_to_beginning(tp)
        except IllegalStateError:
            log.info("%s was revoked while seeking it; its new owner seeks it", tp)
            return
        self._epochs[tp] = next(self._next_epoch)

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self.dead_letters.start()
            await self.consumer.start()
            self.consumer.subscribe(self.topics, listener=_SeekToStoredOffsets(self))
            self._started.set()
            while not stop.is_set():
                batches = await self.consumer.getmany(timeout_ms=200, max_records=self.batch_size)
                # No await between getmany and this: the epochs the batches were fetched under.
                fetched_under = {tp: self._epochs.get(tp) for tp in batches}
                for tp, records in batches.items():
                    if await self._positioned(tp, fetched_under[tp], records):
                        await self._handle(tp, records)
        finally:
            await self.consumer.stop()
            await self.dead_letters.stop()

    async def _positioned(
        self, tp: TopicPartition, epoch: int | None, records: Sequence[ConsumerRecord]
    ) -> bool:
        """Whether this batch starts where the store says the partition continues."""
        if epoch is not None and epoch == self._epochs.get(tp):
            return True
        self.stats.unpositioned += len(records)
        log.debug("dropping %d records of %s fetched before its seek", len(records), tp)
        if epoch is None and tp not in self._epochs and tp in self.consumer.assignment():
            # No seek is known to have run (the rebalance callback failed, say): seek now,
            # or this partition would be read on from wherever Kafka left it.
            await self.reseek(tp)
        return False

    async def reseek(self, tp: TopicPartition) -> None:
        """Seek to the stored position; if the store does not answer, the partition stays
        unpositioned (its batches are dropped unread) and the next batch tries again."""
        try:
            await self.seek_to_stored(tp)
        except Exception as e:
            log.warning("could not read the stored position of %s (%r); retrying", tp, e)
            await asyncio.sleep(1.0)

    async def wait_started(self) -> None:
        await self._started.wait()

    async def _handle(self, tp: TopicPartition, records: Sequence[ConsumerRecord]) -> None:
        # Records this process has itself recorded the position past: a batch read again
        # after a rebalance that came while it was being recorded (the seek went back to the
        # store's position as it was then).  Not handled twice: no second dead letter.
        done = self._recorded_up_to.get(tp, 0)
        if records and records[0].offset < done:
            records = [r for r in records if r.offset >= done]
        if not records:
            return
        parsed, invalid = await asyncio.to_thread(_parse_all, records)
        for record, error in invalid:
            await self._dead_letter(record, error)
        tracking = Tracking(tracking_name(tp.topic, tp.partition), records[-1].offset + 1)
        try:
            started = time.perf_counter()
            outcome = await asyncio.to_thread(
                self.history.record_interactions, [p for _, p in parsed], trackings=[tracking]
            )
            metrics.STORE_APPEND.observe(time.perf_counter() - started)
            metrics.STORE_BATCH.observe(len(parsed))
        except IntegrityError as e:
            self.stats.conflicts += 1
            log.warning("batch on %s conflicts with stored state (%s); re-seeking", tp, e)
            self.history.forget_cached_customers()
            await self.reseek(tp)
            return
        except OperationalError:
            log.exception("store unavailable while recording %s; retrying", tp)
            await asyncio.sleep(1.0)
            await self.reseek(tp)
            return
        except Exception:
            log.exception("unexpected error recording %s; isolating the bad record", tp)
            await self._bisect(tp, parsed, len(records))
            return
        self._count(outcome)
        self._passed(tp, records[-1].offset + 1)
        self.stats.consumed += len(records)  # handled: recorded, skipped or dead-lettered
        await self._commit_kafka(tp, records[-1].offset + 1)

    def _passed(self, tp: TopicPartition, next_offset: int) -> None:
        """The store's position of ``tp`` is at least ``next_offset``: we recorded it so."""
        self._recorded_up_to[tp] = max(self._recorded_up_to.get(tp, 0), next_offset)

    async def _bisect(self, tp: TopicPartition, parsed: list, handled: int) -> None:
        """Record one at a time so only a record that fails by itself is dead-lettered."""
        for record, interaction in parsed:
            tracking = Tracking(tracking_name(tp.topic, tp.partition), record.offset + 1)
            try:
                outcome = await asyncio.to_thread(
                    self.history.record_interactions, [interaction], trackings=[tracking]
                )
            except IntegrityError:
                await self.reseek(tp)
                return
            except Exception as e:
                if not await self._store_answers():
                    log.exception("store failing; retrying %s from the stored offset", tp)
                    await asyncio.sleep(1.0)
                    await self.reseek(tp)
                    return
                # The store works and this record alone fails: dead-letter it (first, so a
                # crash in between repeats the dead letter rather than losing the record),
                # then move the stored position past it.
                await self._dead_letter(record, e, reason=f"recording failed: {e!r}")
                await asyncio.to_thread(self.history.record_interactions, [], trackings=[tracking])
                self._passed(tp, record.offset + 1)
                continue
            self._count(outcome)
            self._passed(tp, record.offset + 1)
        self.stats.consumed += handled
        if parsed:
            await self._commit_kafka(tp, parsed[-1][0].offset + 1)

    async def _store_answers(self) -> bool:
        try:
            await asyncio.to_thread(self.history.recorder.max_notification_id)
        except Exception:
            return False
        return True

    def _count(self, outcome) -> None:
        self.stats.recorded += outcome.recorded
        self.stats.duplicates += outcome.duplicates
        for (channel, kind), n in outcome.kinds.items():
            metrics.INTERACTIONS.labels(channel, kind).inc(n)
        if outcome.duplicates:
            metrics.DUPLICATES.inc(outcome.duplicates)
        if outcome.notification_ids:
            self.stats.last_notification_id = outcome.notification_ids[-1]

    async def _dead_letter(
        self, record: ConsumerRecord, error: BaseException, *, reason: str | None = None
    ) -> None:
        letter = await self.dead_letters.dead_letter_record(
            record, error, topic=self.deadletter_topic, reason=reason
        )
        self.stats.dead_lettered += 1
        metrics.DEAD_LETTERS.labels("recorder", type(error).__name__).inc()
        log.warning(
            "dead-lettered %s:%s@%s: %s",
            record.topic,
            record.partition,
            record.offset,
            letter.reason,
            extra={"topic": record.topic, "partition": record.partition, "offset": record.offset},
        )

    async def _commit_kafka(self, tp: TopicPartition, next_offset: int) -> None:
        try:
            await self.consumer.commit({tp: next_offset})
        except Exception as e:
            log.info("kafka offset commit for %s skipped: %s", tp, e)
        metrics.report_lag(self.consumer, self.group_id, tp, next_offset)


def _parse_all(records: Sequence[ConsumerRecord]):
    parsed = []
    invalid = []
    for record in records:
        try:
            parsed.append((record, parse_interaction(record.value or b"")))
        except InvalidInteraction as e:
            invalid.append((record, e))
    return parsed, invalid
