"""A local stand-in of Meta's Graph API (WhatsApp Cloud API and Messenger Send API) for tests;
not Meta.

It serves, on 127.0.0.1 and a free port, the two send endpoints as Meta documents them:

- ``POST /{version}/{phone-number-id}/messages`` (WhatsApp) -> ``{"messaging_product",
  "contacts": [{"input", "wa_id"}], "messages": [{"id": "wamid…"}]}``
- ``POST /{version}/me/messages`` (Messenger) -> ``{"recipient_id", "message_id"}``

It checks the access token (``Authorization: Bearer`` or ``?access_token=``), answers failures
in Graph's error shape ``{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}``
(unknown recipients, rate limits on demand), and records every request it got.

Also here: builders of webhook deliveries signed as Meta documents them (``X-Hub-Signature-256:
sha256=`` + HMAC-SHA256 of the raw body under the app secret), computed independently of the
code under test. And ``JsonStandIn``, the small threaded HTTP server both stand-ins use.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "GraphStandIn",
    "JsonStandIn",
    "RecordedRequest",
    "messenger_delivery",
    "messenger_message",
    "messenger_receipt",
    "signed_meta_request",
    "whatsapp_delivery",
    "whatsapp_message",
    "whatsapp_status",
]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    json: Any


@dataclass
class _Failure:
    status: int
    answer: dict[str, Any]


class JsonStandIn:
    """A JSON-over-HTTP server in a thread on 127.0.0.1; subclasses implement ``answer``."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def answer(self, request: RecordedRequest) -> tuple[int, dict[str, Any]]:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the stand-in first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Self:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                url = urlsplit(self.path)
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                request = RecordedRequest(
                    method="POST",
                    path=url.path,
                    query={k: v[-1] for k, v in parse_qs(url.query).items()},
                    headers={k.lower(): v for k, v in self.headers.items()},
                    json=body,
                )
                with stand_in._lock:
                    stand_in.requests.append(request)
                    status, answer = stand_in.answer(request)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output quiet

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            # A short poll interval keeps stop() (and so each test's teardown) fast.
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def graph_error(
    message: str, code: int, *, subcode: int | None = None, kind: str = "OAuthException"
) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": kind, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    error["fbtrace_id"] = secrets.token_urlsafe(8)
    return {"error": error}


class GraphStandIn(JsonStandIn):
    """Graph API send endpoints for one WhatsApp business number and one Facebook page."""

    def __init__(
        self,
        *,
        access_token: str,
        phone_number_id: str,
        page_access_token: str,
        api_version: str = "v21.0",
    ) -> None:
        super().__init__()
        self.access_token = access_token
        self.phone_number_id = phone_number_id
        self.page_access_token = page_access_token
        self.api_version = api_version
        self.unknown_recipients: set[str] = set()  # wa_ids / PSIDs that reach no one
        self._failures: list[_Failure] = []
        self._ids = itertools.count(1)

    def rate_limit_next(self, *, code: int = 130429, status: int = 429) -> None:
        """Fail the next send with a documented throttling error (4, 80007, 130429, …)."""
        messages = {
            4: "(#4) Application request limit reached",
            80007: "(#80007) Rate limit issues",
            130429: "(#130429) Rate limit hit",
        }
        message = messages.get(code, f"(#{code}) Rate limit")
        self._failures.append(_Failure(status, graph_error(message, code)))

    @property
    def whatsapp_sends(self) -> list[RecordedRequest]:
        path = f"/{self.api_version}/{self.phone_number_id}/messages"
        return [r for r in self.requests if r.path == path]

    @property
    def messenger_sends(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == f"/{self.api_version}/me/messages"]

    def answer(self, request: RecordedRequest) -> tuple[int, dict[str, Any]]:
        token = request.query.get("access_token") or request.headers.get(
            "authorization", ""
        ).removeprefix("Bearer ")
        if request.path == f"/{self.api_version}/{self.phone_number_id}/messages":
            return self._checked(token, self.access_token) or self._whatsapp(request.json)
        if request.path == f"/{self.api_version}/me/messages":
            return self._checked(token, self.page_access_token) or self._messenger(request.json)
        object_id = request.path.rsplit("/", 2)[-2] if request.path.count("/") >= 2 else ""
        return 400, graph_error(
            f"Unsupported post request. Object with ID '{object_id}' does not exist, cannot be "
            "loaded due to missing permissions, or does not support this operation.",
            100,
            subcode=33,
            kind="GraphMethodException",
        )

    def _checked(self, given: str, expected: str) -> tuple[int, dict[str, Any]] | None:
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return 401, graph_error("Invalid OAuth access token - Cannot parse access token", 190)
        if self._failures:
            failure = self._failures.pop(0)
            return failure.status, failure.answer
        return None

    def _whatsapp(self, body: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
            return 400, graph_error("(#100) The parameter messaging_product is required.", 100)
        to = str(body.get("to") or "")
        kind = body.get("type")
        if not to.isdigit():
            return 400, graph_error("(#100) Invalid parameter", 100)
        if kind == "text" and not (body.get("text") or {}).get("body"):
            return 400, graph_error("(#100) The parameter text['body'] is required.", 100)
        if kind == "template" and not (body.get("template") or {}).get("name"):
            return 400, graph_error("(#100) The parameter template['name'] is required.", 100)
        if kind not in ("text", "template"):
            return 400, graph_error(f"(#100) Param type must be one of ... got {kind!r}", 100)
        if to in self.unknown_recipients:
            return 400, graph_error("(#131030) Recipient phone number not in allowed list", 131030)
        wamid = f"wamid.STANDIN{next(self._ids):08d}"
        answer: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": to}],
            "messages": [{"id": wamid}],
        }
        if kind == "template":
            answer["messages"][0]["message_status"] = "accepted"
        return 200, answer

    def _messenger(self, body: Any) -> tuple[int, dict[str, Any]]:
        recipient = (body.get("recipient") or {}).get("id") if isinstance(body, dict) else None
        if not recipient:
            return 400, graph_error("(#100) The parameter recipient is required", 100)
        if body.get("messaging_type") not in ("RESPONSE", "UPDATE", "MESSAGE_TAG"):
            return 400, graph_error("(#100) Param messaging_type must be one of ...", 100)
        if body["messaging_type"] == "MESSAGE_TAG" and not body.get("tag"):
            return 400, graph_error("(#100) Tag is required for MESSAGE_TAG", 100)
        if recipient in self.unknown_recipients:
            return 400, graph_error("(#100) No matching user found", 100, subcode=2018001)
        return 200, {"recipient_id": recipient, "message_id": f"m_STANDIN{next(self._ids):08d}"}


# --- webhook deliveries, as Meta sends them --------------------------------------------------


def signed_meta_request(payload: Any, app_secret: str) -> tuple[bytes, dict[str, str]]:
    """The raw body and headers of a delivery as Meta sends it.

    Meta escapes non-ASCII characters (``\\u00e9``) and slashes (``\\/``) in the JSON it signs,
    so the bytes differ from a plain re-serialization: a receiver that signs anything but the
    raw body fails here as it would in production.
    """
    raw = payload if isinstance(payload, bytes) else _meta_json(payload)
    signature = hmac.new(app_secret.encode(), raw, hashlib.sha256).hexdigest()
    return raw, {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={signature}"}


def _meta_json(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=True).replace("/", "\\/").encode()


def whatsapp_delivery(
    *,
    messages: Iterable[dict[str, Any]] = (),
    statuses: Iterable[dict[str, Any]] = (),
    phone_number_id: str = "106540352242922",
    display_phone_number: str = "15550783881",
    profile_name: str = "Ann Example",
) -> dict[str, Any]:
    """A ``whatsapp_business_account`` delivery with one ``messages`` change."""
    messages, statuses = list(messages), list(statuses)
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": display_phone_number,
            "phone_number_id": phone_number_id,
        },
    }
    if messages:
        value["contacts"] = [
            {"profile": {"name": profile_name}, "wa_id": m["from"]} for m in messages[:1]
        ]
        value["messages"] = messages
    if statuses:
        value["statuses"] = statuses
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}],
    }


def whatsapp_message(
    *, wa_id: str, wamid: str, timestamp: int, kind: str = "text", **content: Any
) -> dict[str, Any]:
    """One entry of ``messages[]``; ``content`` is the type's object (``text={"body": …}``)."""
    message: dict[str, Any] = {
        "from": wa_id,
        "id": wamid,
        "timestamp": str(timestamp),
        "type": kind,
    }
    message.update(content)
    return message


def whatsapp_status(
    *,
    wamid: str,
    status: str,
    recipient_id: str,
    timestamp: int,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One entry of ``statuses[]``."""
    entry: dict[str, Any] = {
        "id": wamid,
        "status": status,
        "timestamp": str(timestamp),
        "recipient_id": recipient_id,
    }
    if status != "failed":
        entry["conversation"] = {"id": "CONVERSATION_ID", "origin": {"type": "service"}}
        entry["pricing"] = {"billable": True, "pricing_model": "CBP", "category": "service"}
    if errors:
        entry["errors"] = errors
    return entry


def messenger_delivery(*items: dict[str, Any], page_id: str = "1234567890") -> dict[str, Any]:
    """A ``page`` delivery with the given ``messaging[]`` items."""
    return {"object": "page", "entry": [{"id": page_id, "time": 1, "messaging": list(items)}]}


def messenger_message(
    *, psid: str, mid: str, timestamp_ms: int, text: str | None = None, **message: Any
) -> dict[str, Any]:
    """A ``messaging[]`` item with a ``message``."""
    body: dict[str, Any] = {"mid": mid, **message}
    if text is not None:
        body["text"] = text
    return {
        "sender": {"id": psid},
        "recipient": {"id": "1234567890"},
        "timestamp": timestamp_ms,
        "message": body,
    }


def messenger_receipt(
    kind: str, *, psid: str, watermark: int, mids: list[str] | None = None
) -> dict[str, Any]:
    """A ``messaging[]`` item with a ``delivery`` or ``read`` receipt."""
    receipt: dict[str, Any] = {"watermark": watermark}
    if mids is not None:
        receipt["mids"] = mids
    item: dict[str, Any] = {
        "sender": {"id": psid},
        "recipient": {"id": "1234567890"},
        kind: receipt,
    }
    if kind == "read":
        item["timestamp"] = watermark + 50
    return item
