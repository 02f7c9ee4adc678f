"""API tokens: ``sbt_<id>_<secret>``, shown once, stored only as the hash of the secret.

The id (16 hex digits) is not secret: it names the token in listings, in the revoke
command and in logs, and it is how a request's token is found without a scan.  The secret
is ``secrets.token_urlsafe(32)``: 256 random bits.

Why SHA-256 and not argon2 for tokens: a slow, salted hash protects *low-entropy* secrets
(passwords) from guessing after the store leaks.  Nothing can guess 256 random bits, so
one fast, unsalted SHA-256 is as safe here, and it keeps the check on every request to
about a microsecond (argon2 would cost ~50 ms of CPU per request).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

TOKEN_PREFIX = "sbt"
_TOKEN = re.compile(r"^sbt_(?P<id>[0-9a-f]{16})_(?P<secret>[A-Za-z0-9_-]{43})$")


class MalformedToken(ValueError):
    """A string that is not ``sbt_<16 hex digits>_<43 url-safe characters>``."""


@dataclass(frozen=True)
class NewToken:
    """A freshly minted token: ``token`` is shown once, ``secret_hash`` is what is stored."""

    token_id: str
    token: str
    secret_hash: str


def mint_token() -> NewToken:
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return NewToken(
        token_id=token_id,
        token=f"{TOKEN_PREFIX}_{token_id}_{secret}",
        secret_hash=hash_secret(secret),
    )


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str]:
    """``(token id, secret)`` of a token; ``MalformedToken`` naming the expected shape."""
    match = _TOKEN.match(token)
    if match is None:
        raise MalformedToken(
            "not a Switchboard API token: expected sbt_<16 hex digits>_<43 characters>"
        )
    return match["id"], match["secret"]


def secret_matches(secret: str, secret_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret).encode(), secret_hash.encode())


def is_token_id(text: str) -> bool:
    return re.fullmatch(r"[0-9a-f]{16}", text) is not None
