"""Send commands -> dispatcher -> sender -> outcome recorded, on the real broker.

The sender here is a recording fake that subclasses the channels' Sender protocol; the
real channel senders are tested against stand-ins of their providers elsewhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from channels.outbound import (
    PermanentSendError,
    Recipient,
    Sender,
    SendReceipt,
    TransientSendError,
)
from channels.publishing import InteractionPublisher
from contracts import Channel, ConsentChanged, Direction, SendMessage
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.settings import Settings
from tests.helpers import eventually, read_topic, recorded_refs

PHONE = "+493012345678"


@dataclass
class RecordingSender(Sender):
    """A fake SMS provider: records what it was asked to send; can fail on cue."""

    channel: Channel = Channel.sms
    sent: list[str] = field(default_factory=list)
    transient_failures: int = 0
    reject: bool = False

    async def send(self, command: SendMessage, recipient: Recipient) -> SendReceipt:
        if self.transient_failures:
            self.transient_failures -= 1
            raise TransientSendError("provider busy (429)", code="20429")
        if self.reject:
            raise PermanentSendError("invalid 'To' number", code="21211")
        self.sent.append(command.command_id)
        return SendReceipt(provider_ref=f"SM-{command.command_id}")

    async def close(self) -> None:
        pass


async def test_a_command_sent_twice_reaches_the_provider_once_and_is_recorded(
    hub_settings: Settings,
    running_recorder,
    start_dispatcher,
    send_command,
) -> None:
    sender = RecordingSender(transient_failures=1)  # and the provider is busy at first
    dispatcher = await start_dispatcher({sender.channel: sender})
    command = SendMessage(channel=Channel.sms, to=PHONE, body="Your parcel left the depot")
    await send_command(command)
    await send_command(command)  # the agent desk retried
    await eventually(lambda: dispatcher.stats.consumed == 2, what="both commands handled")
    assert sender.sent == [command.command_id]
    assert dispatcher.stats.skipped == 1
    await eventually(
        lambda: recorded_refs(hub_settings)[f"message.sent.v1|SM-{command.command_id}"] == 1,
        what="message.sent.v1 in the customer history",
    )


async def test_after_stop_an_sms_is_refused_and_recorded_as_failed(
    hub_settings: Settings,
    running_recorder,
    start_dispatcher,
    send_command,
) -> None:
    async with InteractionPublisher(
        hub_settings.kafka_bootstrap, topic=hub_settings.interactions_topic
    ) as pub:
        for purpose in ("service", "marketing"):
            await pub.publish(
                ConsentChanged(
                    channel=Channel.sms,
                    direction=Direction.inbound,
                    party=PHONE,
                    provider_ref=f"SMstop:{purpose}",
                    occurred_at=datetime.now(UTC),
                    purpose=purpose,
                    granted=False,
                    source="sms-keyword",
                    keyword="STOP",
                )
            )
    history = bootstrap(hub_settings).history()
    from services.domain import customer_id_for

    def opted_out() -> bool:
        history.forget_cached_customers()
        try:
            return (
                history.get_customer(customer_id_for(PHONE)).has_consent("sms", "service") is False
            )
        except Exception:
            return False

    await eventually(opted_out, what="the opt-out recorded")
    sender = RecordingSender()
    dispatcher = await start_dispatcher({sender.channel: sender})
    command = SendMessage(channel=Channel.sms, to=PHONE, body="We miss you! 20% off")
    await send_command(command)
    await eventually(lambda: dispatcher.stats.failed == 1, what="the refusal")
    assert sender.sent == []
    await eventually(
        lambda: recorded_refs(hub_settings)[f"delivery.status.v1|{command.command_id}:failed"] == 1,
        what="the failed delivery status recorded",
    )


async def test_rejected_by_provider_and_malformed_commands_do_not_stop_the_dispatcher(
    hub_settings: Settings,
    start_dispatcher,
    send_command,
) -> None:
    sender = RecordingSender(reject=True)
    dispatcher = await start_dispatcher({sender.channel: sender})
    producer = AIOKafkaProducer(bootstrap_servers=hub_settings.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(hub_settings.outbound_topic, b'{"channel": "sms"}', key=b"x")
    finally:
        await producer.stop()
    await send_command(SendMessage(channel=Channel.sms, to=PHONE, body="hello"))
    sender_ok = RecordingSender(channel=Channel.email)
    await send_command(SendMessage(channel=Channel.email, to="ann@example.com", body="hi"))
    await eventually(lambda: dispatcher.stats.consumed == 3, what="three records handled")
    assert dispatcher.stats.dead_lettered == 1
    assert dispatcher.stats.failed == 2  # rejected by the provider; no e-mail sender configured
    assert sender_ok.sent == []


@dataclass
class BrokenSender(RecordingSender):
    """A sender with a bug for one recipient: it raises something no sender should."""

    broken_for: str = ""

    async def send(self, command: SendMessage, recipient: Recipient) -> SendReceipt:
        if command.to == self.broken_for:
            raise KeyError("a bug in the sender")
        return await super().send(command, recipient)


async def test_a_command_that_keeps_breaking_the_dispatcher_is_dead_lettered_and_the_rest_sent(
    hub_settings: Settings,
    start_dispatcher,
    send_command,
) -> None:
    sender = BrokenSender(broken_for=PHONE)
    dispatcher = await start_dispatcher({sender.channel: sender})
    await send_command(SendMessage(channel=Channel.sms, to=PHONE, body="poison"))
    after = await send_command(SendMessage(channel=Channel.sms, to="+493087654321", body="ok"))
    await eventually(lambda: dispatcher.stats.consumed == 2, what="both commands handled")
    assert dispatcher.stats.dead_lettered == 1
    assert sender.sent == [after.command_id]
    (letter,) = [
        json.loads(r.value)
        for r in await read_topic(
            hub_settings.kafka_bootstrap, hub_settings.deadletter_topic, expect=1
        )
    ]
    assert "dispatching failed 3 times: KeyError" in letter["reason"]
