"""The outbound dispatcher: sb.outbound.v1 -> channel sender -> outcome on sb.interactions.v1.

Per command: parse (bad ones are dead-lettered), skip if the ledger says it was already
sent or failed, check consent, claim it in the ledger, call the channel's sender
(retrying transient failures with backoff), publish ``message.sent.v1`` or a failed
``delivery.status.v1`` — confirmed by Kafka — record the outcome in the ledger, and only
then commit the Kafka offset.  Commands of one partition are handled in order.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError

from channels.outbound import (
    OutboundError,
    PermanentSendError,
    Recipient,
    Sender,
    SendReceipt,
    SendRefused,
    TransientSendError,
)
from channels.publishing import InteractionPublisher
from contracts import (
    Channel,
    DeliveryStatus,
    DeliveryStatusChanged,
    InvalidCommand,
    MessageSent,
    SendMessage,
    parse_command,
)
from services import metrics
from services.consumers import kafka_consumer
from services.domain.outbound import FailureKind
from services.domain.outbound_policy import consent_refusal
from services.history.customers import CustomerHistory, CustomerNotFound
from services.history.ledger import OutboundLedger

log = logging.getLogger(__name__)

RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)
POISON_ATTEMPTS = 3  # a command failing this often while the store answers is dead-lettered


@dataclass
class DispatchStats:
    consumed: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    dead_lettered: int = 0


class OutboundDispatcher:
    def __init__(
        self,
        history: CustomerHistory,
        *,
        ledger: OutboundLedger,
        senders: Mapping[Channel, Sender],
        bootstrap: str,
        topic: str,
        interactions: InteractionPublisher,
        deadletter_topic: str,
        group_id: str,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
        session_timeout_ms: int = 10000,
    ) -> None:
        """``interactions``: the producer of the outcomes (on the interactions topic) and of
        dead letters, not yet started: ``run`` starts and stops it, as it closes the senders,
        so a dispatcher, its producer and its senders are made for one run."""
        self.history = history
        self.ledger = ledger
        self.senders = dict(senders)
        self.topic = topic
        self.deadletter_topic = deadletter_topic
        self.retry_delays = retry_delays
        self.stats = DispatchStats()
        self.group_id = group_id
        self.consumer = kafka_consumer(
            topic,
            bootstrap=bootstrap,
            group_id=group_id,
            client_id="switchboard-outbound",
            fetch_max_wait_ms=100,
            session_timeout_ms=session_timeout_ms,
            # A slow provider with retries can hold one command for ~15 s; leave room.
            max_poll_interval_ms=600000,
        )
        self.interactions = interactions
        self._started = asyncio.Event()

    async def wait_started(self) -> None:
        await self._started.wait()

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self.interactions.start()
            await self.consumer.start()
            self._started.set()
            while not stop.is_set():
                batches = await self.consumer.getmany(timeout_ms=200, max_records=100)
                for tp, records in batches.items():
                    for record in records:
                        await self._handle_or_dead_letter(record)
                        self.stats.consumed += 1  # handled, so a reader may count outcomes
                        await self.consumer.commit({tp: record.offset + 1})
                        metrics.report_lag(self.consumer, self.group_id, tp, record.offset + 1)
        finally:
            await self.consumer.stop()
            await self.interactions.stop()
            for sender in self.senders.values():
                await sender.close()

    async def _handle_or_dead_letter(self, record: ConsumerRecord) -> None:
        """Handle one command; one that keeps failing while everything around it works (a bug,
        a sender that breaks on it) is dead-lettered so the commands after it are not held up.
        When the store or Kafka is what fails, the error propagates: the supervisor restarts
        the dispatcher and the command is tried again from the committed offset."""
        for attempt in range(1, POISON_ATTEMPTS + 1):
            try:
                await self._handle(record)
                return
            except Exception as e:
                if isinstance(e, KafkaError) or not await self._store_answers():
                    raise
                log.exception(
                    "command at %s:%s@%s failed (attempt %d of %d)",
                    record.topic,
                    record.partition,
                    record.offset,
                    attempt,
                    POISON_ATTEMPTS,
                )
                if attempt == POISON_ATTEMPTS:
                    reason = f"dispatching failed {attempt} times: {type(e).__name__}: {e}"
                    await self._dead_letter(record, e, reason=reason)
                    return

    async def _store_answers(self) -> bool:
        try:
            await asyncio.to_thread(self.history.recorder.max_notification_id)
            await asyncio.to_thread(self.ledger.recorder.max_notification_id)
        except Exception:
            return False
        return True

    async def _handle(self, record: ConsumerRecord) -> None:
        try:
            command = parse_command(record.value or b"")
        except InvalidCommand as e:
            await self._dead_letter(record, e)
            return
        existing = await asyncio.to_thread(self.ledger.find, command.command_id)
        if existing is not None and existing.is_done:
            self.stats.skipped += 1
            metrics.OUTBOUND.labels(str(command.channel), "skipped").inc()
            log.info(
                "command %s already %s; not sending again",
                command.command_id,
                existing.state,
                extra={"command_id": str(command.command_id)},
            )
            return
        recipient = await asyncio.to_thread(self._recipient, command.to)
        refusal = consent_refusal(
            channel=str(command.channel), purpose=command.purpose, consent=recipient.consent
        )
        sender = self.senders.get(command.channel)
        kind: FailureKind = "refused"
        if refusal is None and sender is None:
            refusal = f"no sender is configured for channel {command.channel}"
            kind = "no_sender"
        claimed = existing or await asyncio.to_thread(
            self.ledger.claim, command.command_id, channel=str(command.channel), to=command.to
        )
        if refusal is not None:
            await self._report_failure(command, SendRefused(refusal))
            await asyncio.to_thread(
                functools.partial(self.ledger.record_failed, claimed, refusal, None, kind=kind)
            )
            return
        assert sender is not None
        try:
            receipt = await self._send_with_retries(sender, command, recipient)
        except OutboundError as e:
            await self._report_failure(command, e)
            await asyncio.to_thread(
                functools.partial(
                    self.ledger.record_failed, claimed, str(e), e.code, kind=failure_kind(e)
                )
            )
            return
        await self._report_sent(command, receipt)
        await asyncio.to_thread(self.ledger.record_sent, claimed, receipt.provider_ref)

    async def _send_with_retries(
        self, sender: Sender, command: SendMessage, recipient: Recipient
    ) -> SendReceipt:
        for attempt, delay in enumerate((*self.retry_delays, None), start=1):
            try:
                return await sender.send(command, recipient)
            except TransientSendError as e:
                if delay is None:
                    raise TransientSendError(
                        f"gave up after {attempt} attempts: {e}", code=e.code
                    ) from e
                log.warning(
                    "command %s: %s; retry %s in %.1fs", command.command_id, e, attempt, delay
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    def _recipient(self, address: str) -> Recipient:
        customer_id = self.history.customer_for_address(address)
        if customer_id is None:
            return Recipient(address=address)
        try:
            customer = self.history.get_customer(customer_id)
        except CustomerNotFound:
            return Recipient(address=address)
        return Recipient(
            address=address,
            customer_id=customer_id,
            consent=dict(customer.consent),
            last_inbound_at=dict(getattr(customer, "last_inbound_at", {})),
        )

    async def _report_sent(self, command: SendMessage, receipt: SendReceipt) -> None:
        now = datetime.now(UTC)
        await self.interactions.publish(
            MessageSent(
                channel=command.channel,
                party=command.to,
                provider_ref=receipt.provider_ref,
                occurred_at=now,
                body=command.body or _template_text(command),
                subject=command.subject,
                thread_ref=command.thread_ref,
                in_reply_to=command.in_reply_to,
                references=command.references,
            )
        )
        if receipt.status is not DeliveryStatus.sent:
            await self.interactions.publish(
                DeliveryStatusChanged(
                    channel=command.channel,
                    party=command.to,
                    provider_ref=f"{receipt.provider_ref}:{receipt.status}",
                    occurred_at=now,
                    status=receipt.status,
                    message_ref=receipt.provider_ref,
                )
            )
        self.stats.sent += 1
        metrics.OUTBOUND.labels(str(command.channel), "sent").inc()

    async def _report_failure(self, command: SendMessage, error: OutboundError) -> None:
        kind = {SendRefused: "refused", PermanentSendError: "rejected"}.get(type(error), "failed")
        await self.interactions.publish(
            DeliveryStatusChanged(
                channel=command.channel,
                party=command.to,
                provider_ref=f"{command.command_id}:failed",
                occurred_at=datetime.now(UTC),
                status=DeliveryStatus.failed,
                message_ref=command.command_id,
                error_code=error.code or kind,
                error_message=str(error)[:300] or kind,
            )
        )
        self.stats.failed += 1
        metrics.OUTBOUND.labels(str(command.channel), kind).inc()
        log.warning(
            "command %s not sent (%s): %s",
            command.command_id,
            kind,
            error,
            extra={"command_id": str(command.command_id)},
        )

    async def _dead_letter(
        self, record: ConsumerRecord, error: BaseException, *, reason: str | None = None
    ) -> None:
        await self.interactions.dead_letter_record(
            record, error, topic=self.deadletter_topic, reason=reason
        )
        self.stats.dead_lettered += 1
        metrics.DEAD_LETTERS.labels("outbound", type(error).__name__).inc()


def failure_kind(error: OutboundError) -> FailureKind:
    """How a send that raised ``error`` failed, for the ledger: after a *hard* failure
    (rejected, retries used up) a campaign may try the recipient's next channel; after a
    refusal of our own policy (consent, a messaging window) it must not."""
    if isinstance(error, SendRefused):
        return "refused"
    if isinstance(error, TransientSendError):
        return "gave_up"  # raised here only once the retries are used up
    return "rejected"  # PermanentSendError, or an adapter's own OutboundError


def _template_text(command: SendMessage) -> str:
    template = command.template
    if template is None:
        return ""
    params = ", ".join(template.parameters)
    return f"[template {template.name} ({template.language})] {params}".strip()


__all__ = ["DispatchStats", "OutboundDispatcher", "failure_kind"]
