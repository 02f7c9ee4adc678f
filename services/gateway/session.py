"""The console's sign-in: a user name and password for a signed session cookie.

The browser cannot put a bearer token on a WebSocket or an EventSource, and a token kept in
page script is a token any injected script can read.  So the console signs in once
(``POST /console/session``) and gets an ``HttpOnly``, ``SameSite=Strict`` cookie: a user name
and an expiry, signed with HMAC-SHA256 under the hub's session secret (``session_secret``, or a
random key made once under ``data_dir``; several gateway instances share one through the
setting).  ``V1Guard`` takes the cookie where no bearer token is given, checks the user's roles
as for a token (a disabled user's sessions stop at the next refresh of the access table), and:

- demands ``X-CSRF-Token`` on every request that changes something: a value derived from the
  cookie that the page reads from ``GET /console/session`` (a double defence with SameSite);
- refuses a WebSocket whose ``Origin`` is not the host it connects to (cross-site WebSocket
  hijacking).

Signing out drops the cookie; a copy taken before stays valid until it expires
(``session_hours``), as with any signed session: revoke by disabling the user.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

COOKIE = "sb_session"
CSRF_HEADER = "x-csrf-token"
_VERSION = "v1"


@dataclass(frozen=True)
class Session:
    username: str
    expires: int  # unix seconds


class SessionCodec:
    def __init__(self, secret: bytes, *, hours: float = 8.0) -> None:
        if len(secret) < 32:
            raise ValueError("the session secret must be at least 32 bytes")
        self._key = secret
        self.max_age = int(hours * 3600)

    def issue(self, username: str, *, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + self.max_age)
        name = base64.urlsafe_b64encode(username.encode()).decode().rstrip("=")
        body = f"{_VERSION}.{name}.{expires}"
        return f"{body}.{self._sign(body)}"

    def read(self, cookie: str, *, now: float | None = None) -> Session | None:
        """The session a cookie holds, or None: forged, altered, expired or malformed."""
        try:
            version, name, expires, signature = cookie.split(".")
        except ValueError:
            return None
        body = f"{version}.{name}.{expires}"
        if version != _VERSION or not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            session = Session(
                base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode(), int(expires)
            )
        except (ValueError, UnicodeDecodeError):
            return None
        if session.expires <= (time.time() if now is None else now):
            return None
        return session

    def csrf_token(self, cookie: str) -> str:
        return self._sign(f"csrf.{cookie}")

    def csrf_matches(self, cookie: str, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token, self.csrf_token(cookie))

    def _sign(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()


def session_secret(configured: str | None, data_dir: Path) -> bytes:
    """The configured secret, else a random one made once and kept in ``data_dir``."""
    if configured:
        return configured.encode()
    path = data_dir / "session.key"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    # Written whole under another name, then linked: another process starting at the same
    # moment either links first (and we read its key) or reads ours complete.
    tmp = data_dir / f".session.key.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return path.read_bytes()
    finally:
        tmp.unlink()
    return key


def cookie_value(headers: list[tuple[bytes, bytes]]) -> str | None:
    """``sb_session`` from the request's Cookie header(s), else None."""
    for name, value in headers:
        if name != b"cookie":
            continue
        for part in value.decode("latin-1").split(";"):
            key, _, val = part.strip().partition("=")
            if key == COOKIE and val:
                return val
    return None


def header(headers: list[tuple[bytes, bytes]], wanted: bytes) -> str | None:
    for name, value in headers:
        if name == wanted:
            return value.decode("latin-1")
    return None
