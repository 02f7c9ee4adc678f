"""The one publishing helper every channel adapter uses: contract event -> Kafka.

Keyed by the normalized party address, so one customer's contacts stay in order on
one partition.  ``publish`` returns only once the broker confirmed the write
(acks=all, idempotent producer): a webhook may answer 2xx only after that.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from faststream.kafka import KafkaBroker

from contracts import (
    INTERACTIONS_TOPIC,
    DeadLetter,
    InteractionEvent,
    SendMessage,
    dump_command,
    dump_interaction,
    identity_of,
)

# A dead letter carries its record's payload (up to 1 MiB) in base64, plus the reason.
MAX_REQUEST_BYTES = 4 * 1024 * 1024


class InteractionPublisher:
    def __init__(self, bootstrap: str, *, topic: str = INTERACTIONS_TOPIC, **producer: Any) -> None:
        self.topic = topic
        self.broker = KafkaBroker(
            bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=producer.pop("linger_ms", 0),
            client_id=producer.pop("client_id", "switchboard-channels"),
            max_request_size=producer.pop("max_request_size", MAX_REQUEST_BYTES),
            **producer,
        )
        self.connected = False  # started and not stopped since: it can publish

    async def start(self) -> None:
        try:
            await self.broker.start()
            self.connected = True
        except BaseException:
            # A failed start leaves a half-made producer behind: close it, or it leaks.
            with contextlib.suppress(Exception):
                await self.broker.stop()
            raise

    async def stop(self) -> None:
        self.connected = False
        await self.broker.stop()

    async def __aenter__(self) -> InteractionPublisher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def publish(self, event: InteractionEvent, *, topic: str | None = None) -> Any:
        """Publish and wait for the broker's confirmation.  Keyed by the person the address
        reaches (``identity_of``): a number's calls, SMS and WhatsApp share a partition.
        ``topic``: another topic than this publisher's (a routing decision)."""
        return await self.publish_raw(
            dump_interaction(event), key=identity_of(event.party), topic=topic
        )

    async def publish_command(self, command: SendMessage, *, topic: str) -> Any:
        """Publish an outbound command and wait for the broker's confirmation.  Keyed like
        the recipient's contacts (``identity_of(command.to)``), so one person's commands
        keep their order on one partition whichever channel reaches them."""
        return await self.publish_raw(
            dump_command(command), key=identity_of(command.to), topic=topic
        )

    async def publish_raw(self, value: bytes, *, key: str, topic: str | None = None) -> Any:
        return await self.broker.publish(
            value,
            topic=topic or self.topic,
            key=key.encode(),
            headers={"content-type": "application/json"},
        )

    async def publish_dead_letter(
        self, letter: DeadLetter, *, topic: str, key: bytes | None, confirm: bool = True
    ) -> Any:
        """The one way a dead letter is published, by every consumer and the e-mail ingester:
        keyed like its record, its reason also in a header for tools that only read those.
        ``confirm=False`` returns the delivery future instead of waiting for it."""
        return await self.broker.publish(
            letter.model_dump_json().encode(),
            topic=topic,
            key=key,
            headers={"content-type": "application/json", "reason": letter.reason[:200]},
            no_confirm=not confirm,
        )

    async def dead_letter_record(
        self, record: Any, error: BaseException, *, topic: str, reason: str | None = None
    ) -> DeadLetter:
        """Dead-letter one consumed Kafka record (anything with topic, partition, offset,
        key and value): the letter keeps its place and bytes, keyed like the record."""
        letter = DeadLetter.for_record(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            payload=record.value or b"",
            error=error,
            reason=reason,
        )
        await self.publish_dead_letter(letter, topic=topic, key=record.key)
        return letter

    async def publish_unconfirmed(self, value: bytes, *, key: str) -> asyncio.Future:
        """Hand the record to the producer and return its delivery future (bulk senders)."""
        return await self.broker.publish(
            value,
            topic=self.topic,
            key=key.encode(),
            headers={"content-type": "application/json"},
            no_confirm=True,
        )
