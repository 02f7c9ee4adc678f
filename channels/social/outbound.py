"""Outbound senders for WhatsApp, Messenger and Telegram (the ``Sender`` of channels/outbound.py).

Each holds one httpx client for its provider (closed by ``close()``) and only talks to the
provider; consent, retries and recording the outcome are the dispatcher's.

Templates are a WhatsApp feature: a command with a template is sent as that template on
WhatsApp (its body text, if any, is not sent); on Messenger and Telegram its body is sent, and a
command with a template but no body is refused there.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from channels.outbound import PermanentSendError, Recipient, SendReceipt, SendRefused
from channels.social.config import MessengerConfig, TelegramConfig, WhatsAppConfig
from channels.social.provider_api import ProviderError, new_client, post_json
from channels.social.window import check_whatsapp_window, within_service_window
from contracts import Channel, SendMessage

__all__ = ["MessengerSender", "TelegramSender", "WhatsAppSender"]

Clock = Callable[[], datetime]

# Graph API codes that mean "slow down" or "try again", whatever the HTTP status they came with:
# 1/2 temporary outage, 4/17/32/613 call-rate throttling, 80007 and 130429 WhatsApp rate and
# throughput limits, 131056 too many messages to one customer, 131000/131016/133004 temporary
# service errors (developers.facebook.com/docs/graph-api/guides/error-handling and the Cloud API
# error codes).
_META_TRANSIENT = frozenset({1, 2, 4, 17, 32, 613, 80007, 130429, 131000, 131016, 131056, 133004})


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _address(command: SendMessage, channel: Channel) -> str:
    """The provider's id of the recipient: ``whatsapp:+49…`` -> ``49…``, etc."""
    if command.channel is not channel:
        raise PermanentSendError(f"a {command.channel} command reached the {channel} sender")
    return command.to.removeprefix(f"{channel}:").removeprefix("+")


def _body_only(command: SendMessage, provider: str) -> str:
    if not command.body:
        raise SendRefused(f"{provider} has no approved templates: the command needs a body")
    return command.body


def read_meta_error(status: int, answer: Any) -> ProviderError:
    """Graph's ``{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}``."""
    error = answer.get("error") if isinstance(answer, dict) else None
    if not isinstance(error, dict):
        return ProviderError(
            code=None, message=f"no Graph error object in the answer: {answer!r}"[:500]
        )
    code = error.get("code")
    subcode = error.get("error_subcode")
    data = error.get("error_data")
    details = data.get("details") if isinstance(data, dict) else None
    message = " - ".join(str(x) for x in (error.get("message"), details) if x) or "no message"
    if subcode is not None:
        message += f" (subcode {subcode})"
    transient = bool(error.get("is_transient")) or code in _META_TRANSIENT
    return ProviderError(
        code=None if code is None else str(code), message=message, transient=transient
    )


def read_telegram_error(status: int, answer: Any) -> ProviderError:
    """The Bot API's ``{"ok": false, "error_code", "description", "parameters"}``."""
    if not isinstance(answer, dict):
        return ProviderError(code=str(status), message=f"no Bot API error object: {answer!r}"[:500])
    message = str(answer.get("description") or "no description")
    parameters = answer.get("parameters")
    retry_after = parameters.get("retry_after") if isinstance(parameters, dict) else None
    if retry_after is not None:
        message += f" (retry after {retry_after} s)"
    code = answer.get("error_code", status)
    return ProviderError(code=str(code), message=message, transient=retry_after is not None)


class _GraphSender:
    """What the two Graph API senders share: one client, Bearer authentication, error reading."""

    provider: str

    def __init__(self, *, base_url: str, api_version: str, token: str, clock: Clock) -> None:
        self._client = new_client(base_url)
        self._version = api_version.strip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._clock = clock

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await post_json(
            self._client,
            f"/{self._version}/{path}",
            body,
            provider=self.provider,
            read_error=read_meta_error,
            headers=self._headers,
        )

    async def close(self) -> None:
        await self._client.aclose()


class WhatsAppSender(_GraphSender):
    """WhatsApp Cloud API: POST /{version}/{phone_number_id}/messages."""

    channel = Channel.whatsapp
    provider = "WhatsApp"

    def __init__(self, config: WhatsAppConfig, *, clock: Clock = _utc_now) -> None:
        super().__init__(
            base_url=config.graph_base_url,
            api_version=config.api_version,
            token=config.access_token,
            clock=clock,
        )
        self._phone_number_id = config.phone_number_id

    async def send(self, command: SendMessage, recipient: Recipient) -> SendReceipt:
        to = _address(command, Channel.whatsapp)
        check_whatsapp_window(command, recipient, self._clock())
        answer = await self._post(
            f"{self._phone_number_id}/messages", whatsapp_request(command, to)
        )
        wamid = _provider_id(_first(answer, "messages").get("id"), self.provider, answer)
        wa_id = _first(answer, "contacts").get("wa_id")
        # Meta warns that wa_id and the number we sent to may differ; keep what it resolved to.
        return SendReceipt(provider_ref=wamid, details={"wa_id": str(wa_id)} if wa_id else {})


def _provider_id(value: Any, provider: str, answer: dict[str, Any]) -> str:
    """The id the provider gave the accepted message, or PermanentSendError without one."""
    if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
        return str(value)
    # It was accepted, so it may be on its way: a retry could send it twice, hence not transient.
    raise PermanentSendError(f"{provider} accepted the message but gave no id: {answer!r}"[:500])


def _first(answer: dict[str, Any], key: str) -> dict[str, Any]:
    """The first object of the array ``answer[key]``, or {} when there is none."""
    items = answer.get(key)
    first = items[0] if isinstance(items, list) and items else None
    return first if isinstance(first, dict) else {}


def whatsapp_request(command: SendMessage, to: str) -> dict[str, Any]:
    """The Cloud API's JSON for a text or template message."""
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
    }
    if command.template is not None:
        template: dict[str, Any] = {
            "name": command.template.name,
            "language": {"code": command.template.language},
        }
        if command.template.parameters:
            template["components"] = [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": p} for p in command.template.parameters
                    ],
                }
            ]
        body |= {"type": "template", "template": template}
    else:
        body |= {"type": "text", "text": {"body": command.body, "preview_url": False}}
    if command.in_reply_to and command.in_reply_to.startswith("wamid."):
        body["context"] = {"message_id": command.in_reply_to}  # shows as a quoted reply
    return body


class MessengerSender(_GraphSender):
    """Messenger Send API: POST /{version}/me/messages with the page access token.

    Inside the 24-hour standard messaging window the message goes as a RESPONSE. Outside it,
    with ``config.message_tag`` set, it goes as MESSAGE_TAG with that tag (Meta checks the tag's
    rules and refuses misuse with an error, which becomes a PermanentSendError); without a tag
    it is refused before anything is sent.
    """

    channel = Channel.messenger
    provider = "Messenger"

    def __init__(self, config: MessengerConfig, *, clock: Clock = _utc_now) -> None:
        super().__init__(
            base_url=config.graph_base_url,
            api_version=config.api_version,
            token=config.page_access_token,
            clock=clock,
        )
        self._tag = config.message_tag

    async def send(self, command: SendMessage, recipient: Recipient) -> SendReceipt:
        psid = _address(command, Channel.messenger)
        text = _body_only(command, self.provider)
        body: dict[str, Any] = {"recipient": {"id": psid}, "message": {"text": text}}
        if within_service_window(recipient.last_inbound_at.get(Channel.messenger), self._clock()):
            body["messaging_type"] = "RESPONSE"
        elif self._tag:
            body |= {"messaging_type": "MESSAGE_TAG", "tag": self._tag}
        else:
            raise SendRefused(
                "outside Messenger's 24-hour standard messaging window and no message tag is "
                "configured: only tagged messages may be sent"
            )
        answer = await self._post("me/messages", body)
        mid = _provider_id(answer.get("message_id"), self.provider, answer)
        return SendReceipt(provider_ref=mid)


class TelegramSender:
    """Telegram Bot API: POST /bot<token>/sendMessage. Bots have no messaging window."""

    channel = Channel.telegram
    provider = "Telegram"

    def __init__(self, config: TelegramConfig) -> None:
        self._client = new_client(config.api_base_url)
        self._path = f"/bot{config.bot_token}/sendMessage"

    async def send(self, command: SendMessage, recipient: Recipient) -> SendReceipt:
        chat_id = int(_address(command, Channel.telegram))
        body: dict[str, Any] = {"chat_id": chat_id, "text": _body_only(command, self.provider)}
        quoted = (command.in_reply_to or "").partition(":")
        if quoted[0] == str(chat_id) and quoted[2].isdigit():
            # If the quoted message is gone, send anyway rather than fail the reply.
            body["reply_parameters"] = {
                "message_id": int(quoted[2]),
                "allow_sending_without_reply": True,
            }
        answer = await post_json(
            self._client, self._path, body, provider=self.provider, read_error=read_telegram_error
        )
        result = answer.get("result")
        message_id = _provider_id(
            result.get("message_id") if isinstance(result, dict) else None, self.provider, answer
        )
        # Message ids count per chat; the chat makes the ref unique, as inbound refs are.
        return SendReceipt(provider_ref=f"{chat_id}:{message_id}")

    async def close(self) -> None:
        await self._client.aclose()
