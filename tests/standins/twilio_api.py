"""A local stand-in of Twilio's REST API for tests; not Twilio.

Serves ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` on 127.0.0.1 and a free port,
as Twilio documents it: form-encoded ``To``, ``From`` or ``MessagingServiceSid``, ``Body``,
``StatusCallback``; HTTP basic auth ``AccountSid:AuthToken``; 201 with the Message resource
(``sid`` "SM…", ``status`` "queued", ``num_segments``, ...). Errors come in Twilio's JSON error
shape (``code``, ``message``, ``more_info``, ``status``): 20003 for bad credentials, 21211 for
an invalid ``To``, 21610 for a recipient who texted STOP, and on request 20429 (HTTP 429).

It then plays Twilio's part in status reporting: ``fire_status_callbacks`` posts signed
(``RequestValidator``) status callbacks for a sent message to its ``StatusCallback`` URL, in
any order the test asks for — out of order included.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiohttp import web
from twilio.request_validator import RequestValidator

from channels.sms.segments import count_segments

__all__ = ["SentMessage", "TwilioApiStandIn", "signed_twilio_request"]

_API = "/2010-04-01/Accounts/{account_sid}/Messages.json"


def signed_twilio_request(auth_token: str, url: str, params: dict[str, str]) -> dict[str, str]:
    """The headers Twilio sends with a webhook to ``url``: the signature and a form type."""
    return {
        "X-Twilio-Signature": RequestValidator(auth_token).compute_signature(url, params),
        "Content-Type": "application/x-www-form-urlencoded",
    }


@dataclass
class SentMessage:
    """A message the stand-in accepted."""

    sid: str
    to: str
    sender: str
    body: str
    status_callback: str | None
    form: dict[str, str] = field(default_factory=dict)


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status=status,
    )


class TwilioApiStandIn:
    def __init__(self, *, account_sid: str, auth_token: str) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.invalid_numbers: set[str] = set()
        self.unsubscribed: set[str] = set()
        self.requests: list[dict[str, str]] = []
        self.messages: dict[str, SentMessage] = {}
        self._rate_limited = 0
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def rate_limit_next(self, count: int = 1) -> None:
        """Answer the next ``count`` creates with 429 Too Many Requests."""
        self._rate_limited += count

    async def __aenter__(self) -> TwilioApiStandIn:
        app = web.Application()
        app.router.add_post(_API.format(account_sid="{account_sid}"), self._create_message)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return hmac.compare_digest(encoded.encode(), expected.encode())

    async def _create_message(self, request: web.Request) -> web.Response:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        self.requests.append(form)
        if request.match_info["account_sid"] != self.account_sid or not self._authorized(request):
            return _error(401, 20003, "Authenticate")
        if self._rate_limited:
            self._rate_limited -= 1
            return _error(429, 20429, "Too Many Requests")
        to = form.get("To", "")
        if not to:
            return _error(400, 21604, "A 'To' phone number is required.")
        if to in self.invalid_numbers:
            return _error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if to in self.unsubscribed:
            return _error(400, 21610, "Attempt to send to unsubscribed recipient")
        sender = form.get("From") or form.get("MessagingServiceSid")
        if not sender:
            return _error(400, 21603, "A 'From' phone number is required.")
        body = form.get("Body", "")
        sid = "SM" + uuid.uuid4().hex
        self.messages[sid] = SentMessage(
            sid=sid,
            to=to,
            sender=sender,
            body=body,
            status_callback=form.get("StatusCallback"),
            form=form,
        )
        shape = count_segments(body)
        return web.json_response(
            {
                "account_sid": self.account_sid,
                "api_version": "2010-04-01",
                "body": body,
                "date_created": "Thu, 24 Aug 2023 05:01:45 +0000",
                "date_sent": None,
                "date_updated": "Thu, 24 Aug 2023 05:01:45 +0000",
                "direction": "outbound-api",
                "error_code": None,
                "error_message": None,
                "from": form.get("From"),
                "messaging_service_sid": form.get("MessagingServiceSid"),
                "num_media": "0",
                "num_segments": str(shape.segments),
                "price": None,
                "price_unit": "USD",
                "sid": sid,
                "status": "queued",
                "subresource_uris": {"media": f"{request.path[:-5]}/{sid}/Media.json"},
                "to": to,
                "uri": f"{request.path[:-5]}/{sid}.json",
            },
            status=201,
        )

    async def fire_status_callbacks(
        self,
        sid: str,
        statuses: list[str],
        *,
        client: httpx.AsyncClient,
        proxy: Callable[[str], str] = lambda url: url,
        error_code: str | None = None,
    ) -> list[httpx.Response]:
        """Post one signed status callback per status, in the given order, as Twilio would.

        Each is signed over the ``StatusCallback`` URL, the public one; ``proxy`` maps it to
        where the request really goes (the reverse proxy's rewrite), and ``client`` carries it.
        """
        message = self.messages[sid]
        if message.status_callback is None:
            raise AssertionError(f"message {sid} was sent without a StatusCallback")
        answers = []
        for status in statuses:
            params = {
                "AccountSid": self.account_sid,
                "ApiVersion": "2010-04-01",
                "From": message.sender,
                "MessageSid": sid,
                "MessageStatus": status,
                "SmsSid": sid,
                "SmsStatus": status,
                "To": message.to,
            }
            if error_code is not None and status in ("failed", "undelivered"):
                params["ErrorCode"] = error_code
            headers = signed_twilio_request(self.auth_token, message.status_callback, params)
            headers["I-Twilio-Idempotency-Token"] = secrets.token_hex(16)
            answers.append(
                await client.post(proxy(message.status_callback), data=params, headers=headers)
            )
        return answers

    def message_to(self, to: str) -> Any:
        """The one message sent to ``to``."""
        found = [m for m in self.messages.values() if m.to == to]
        if len(found) != 1:
            raise AssertionError(f"expected one message to {to}, found {len(found)}")
        return found[0]
