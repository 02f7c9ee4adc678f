"""The one publishing helper: what a record is keyed by decides its partition, so its order."""

from __future__ import annotations

from unittest.mock import AsyncMock

from channels.publishing import InteractionPublisher
from contracts import OUTBOUND_TOPIC, SendMessage, identity_of, parse_command


async def test_a_command_is_keyed_by_the_person_it_reaches_like_their_contacts() -> None:
    publisher = InteractionPublisher("127.0.0.1:1")  # never started: the broker is a fake
    publisher.broker.publish = AsyncMock(return_value="confirmed")  # type: ignore[method-assign]
    command = SendMessage(channel="whatsapp", to="whatsapp:+14155552671", body="hi")

    assert await publisher.publish_command(command, topic=OUTBOUND_TOPIC) == "confirmed"

    [call] = publisher.broker.publish.await_args_list
    assert call.kwargs["topic"] == OUTBOUND_TOPIC
    # The number's calls, SMS and WhatsApp share one key, whichever channel the command uses.
    assert call.kwargs["key"] == identity_of("+14155552671").encode() == b"+14155552671"
    assert parse_command(call.args[0]) == command
