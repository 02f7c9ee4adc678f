"""Send SMS through Twilio's Messages API: the SMS channel's ``Sender``.

The dispatcher checks consent before it calls us; we check the opt-out again, because a
message to a customer who texted STOP is the one mistake that must never happen. Twilio's
answer is mapped to the outbound error vocabulary: 4xx (21211 invalid number, 21610
unsubscribed recipient, ...) is permanent, 429, 5xx, timeouts and connection errors are
transient. The status callback of every message points at our status webhook.
"""

from __future__ import annotations

import asyncio

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http import AsyncHttpClient
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from channels.outbound import (
    PermanentSendError,
    Recipient,
    SendReceipt,
    SendRefused,
    TransientSendError,
)
from channels.sms.config import TwilioSmsConfig
from channels.sms.paths import TWILIO_SMS_STATUS_PATH
from channels.sms.segments import count_segments
from channels.sms.status import delivery_status
from contracts import Channel, DeliveryStatus, SendMessage

# The twilio client falls back to os.environ (TWILIO_REGION, TWILIO_EDGE, ...) when it is
# handed an empty environment; a non-empty one keeps configuration passed, not looked up.
_NO_ENVIRONMENT = {"SWITCHBOARD": "configuration is passed explicitly"}


class TwilioSmsSender:
    channel = Channel.sms

    def __init__(self, config: TwilioSmsConfig, *, http_client: AsyncHttpClient | None = None):
        self._config = config
        self._http = http_client
        self._client: Client | None = None
        self._status_callback = config.public_base_url.rstrip("/") + TWILIO_SMS_STATUS_PATH

    def _twilio(self) -> Client:
        # Built on first use, inside the event loop: the aiohttp session belongs to it.
        if self._client is None:
            if self._http is None:
                self._http = AsyncTwilioHttpClient()
            client = Client(
                username=self._config.account_sid,
                password=self._config.auth_token,
                account_sid=self._config.account_sid,
                http_client=self._http,
                environment=_NO_ENVIRONMENT,
            )
            if self._config.api_base_url is not None:
                client.api.base_url = self._config.api_base_url.rstrip("/")
            self._client = client
        return self._client

    async def send(self, command: SendMessage, recipient: Recipient) -> SendReceipt:
        check_sendable(command, recipient)
        shape = count_segments(command.body)
        request: dict[str, object] = {
            "to": command.to,
            "body": command.body,
            "status_callback": self._status_callback,
        }
        if self._config.messaging_service_sid is not None:
            request["messaging_service_sid"] = self._config.messaging_service_sid
        else:
            request["from_"] = self._config.from_number
        try:
            async with asyncio.timeout(self._config.send_timeout_s):
                message = await self._twilio().messages.create_async(**request)
        except TwilioRestException as exc:
            raise classify(exc) from None
        except TimeoutError:
            raise TransientSendError(
                f"Twilio did not answer within {self._config.send_timeout_s:g}s"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TransientSendError(f"Twilio is unreachable: {exc!r}") from None
        except TwilioException as exc:
            raise TransientSendError(f"Twilio's answer was not understood: {exc}") from None
        if not message.sid:
            raise TransientSendError("Twilio accepted the message but returned no sid")
        try:
            status = delivery_status(message.status or "queued") or DeliveryStatus.queued
        except KeyError:
            status = DeliveryStatus.queued
        return SendReceipt(
            provider_ref=message.sid,
            status=status,
            details={"segments": str(shape.segments), "encoding": shape.encoding},
        )

    async def close(self) -> None:
        if self._http is not None and hasattr(self._http, "close"):
            await self._http.close()
        self._http = None
        self._client = None


def check_sendable(command: SendMessage, recipient: Recipient) -> None:
    """Refuse what must not leave: other channels, templates, and no consent."""
    if command.channel is not Channel.sms:
        raise PermanentSendError(f"the SMS sender cannot send on channel {command.channel}")
    if not command.body:
        raise PermanentSendError("SMS has no provider templates: the command needs a body")
    if recipient.consent.get("sms:service") is False:
        raise SendRefused(f"{command.to} opted out of SMS (STOP): nothing may be sent")
    if command.purpose == "marketing" and recipient.consent.get("sms:marketing") is not True:
        raise SendRefused(f"{command.to} has not opted in to marketing by SMS")


def classify(exc: TwilioRestException) -> PermanentSendError | TransientSendError:
    code = str(exc.code) if exc.code is not None else None
    message = f"Twilio refused the message ({exc.status}, code {code}): {exc.msg}"
    if exc.status == 429 or exc.status >= 500:
        return TransientSendError(message, code=code)
    return PermanentSendError(message, code=code)
