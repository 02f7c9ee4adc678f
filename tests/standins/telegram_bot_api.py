"""A local stand-in of the Telegram Bot API for tests; not Telegram.

Serves ``POST /bot<token>/sendMessage`` on 127.0.0.1 and a free port, answering as the Bot API
documents: ``{"ok": true, "result": {<Message>}}`` with message ids counted per chat, and
``{"ok": false, "error_code", "description"}`` for a wrong token (401), unknown chats (400
"chat not found"), chats that blocked the bot (403) and, on demand, flood control (429 with
``parameters.retry_after``). It records every request it got.

Also here: the webhook side — Updates as Telegram sends them, with the secret-token header.
"""

from __future__ import annotations

import hmac
import json
import time
from collections import defaultdict
from typing import Any

from tests.standins.meta_graph import JsonStandIn, RecordedRequest

__all__ = ["TelegramStandIn", "telegram_message_update", "telegram_request"]

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def _error(code: int, description: str, **parameters: Any) -> tuple[int, dict[str, Any]]:
    answer: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        answer["parameters"] = parameters
    return code, answer


class TelegramStandIn(JsonStandIn):
    def __init__(self, *, bot_token: str, bot_id: int = 7000000001) -> None:
        super().__init__()
        self.bot_token = bot_token
        self.bot_id = bot_id
        self.unknown_chats: set[int] = set()
        self.blocked_chats: set[int] = set()
        self._flood_waits: list[int] = []
        self._next_id: defaultdict[int, int] = defaultdict(lambda: 1)

    def flood_next(self, *, retry_after: int = 3) -> None:
        """Answer the next sendMessage with 429 Too Many Requests."""
        self._flood_waits.append(retry_after)

    @property
    def sends(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/sendMessage")]

    def answer(self, request: RecordedRequest) -> tuple[int, dict[str, Any]]:
        token, _, method = request.path.removeprefix("/bot").partition("/")
        if not request.path.startswith("/bot") or not hmac.compare_digest(
            token.encode(), self.bot_token.encode()
        ):
            return _error(401, "Unauthorized")
        if method != "sendMessage":
            return _error(404, "Not Found")
        body = request.json if isinstance(request.json, dict) else {}
        chat_id, text = body.get("chat_id"), body.get("text")
        if chat_id is None:
            return _error(400, "Bad Request: chat_id is empty")
        if not text:
            return _error(400, "Bad Request: message text is empty")
        if self._flood_waits:
            wait = self._flood_waits.pop(0)
            return _error(429, f"Too Many Requests: retry after {wait}", retry_after=wait)
        chat = int(chat_id)
        if chat in self.unknown_chats:
            return _error(400, "Bad Request: chat not found")
        if chat in self.blocked_chats:
            return _error(403, "Forbidden: bot was blocked by the user")
        message_id = self._next_id[chat]
        self._next_id[chat] += 1
        return 200, {
            "ok": True,
            "result": {
                "message_id": message_id,
                "from": {"id": self.bot_id, "is_bot": True, "first_name": "Switchboard"},
                "chat": {"id": chat, "type": "private" if chat > 0 else "supergroup"},
                "date": int(time.time()),
                "text": text,
            },
        }


def telegram_message_update(
    *,
    update_id: int,
    chat_id: int,
    message_id: int,
    date: int,
    text: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An Update with a ``message`` from a private chat (``extra`` adds photo=…, caption=…)."""
    message: dict[str, Any] = {
        "message_id": message_id,
        "from": {"id": chat_id, "is_bot": False, "first_name": "Ann", "language_code": "de"},
        "chat": {"id": chat_id, "first_name": "Ann", "type": "private"},
        "date": date,
        **extra,
    }
    if text is not None:
        message["text"] = text
    return {"update_id": update_id, "message": message}


def telegram_request(update: Any, secret_token: str | None) -> tuple[bytes, dict[str, str]]:
    """The raw body and headers of a webhook POST as Telegram sends it."""
    headers = {"Content-Type": "application/json"}
    if secret_token is not None:
        headers[SECRET_HEADER] = secret_token
    return json.dumps(update).encode(), headers
