"""Which ref records an inbound mail, and which Message-ID a reply or a bounce names.

- A mail's ``provider_ref`` is its Message-ID, so the same mail seen twice (re-fetched after a
  UIDVALIDITY change, a copy in a second mailbox) is recorded once: the recorder drops repeats
  by provider_ref.
- A *different* mail that reuses a Message-ID another mail already holds (broken clients, resent
  drafts, list software) is recorded as ``<Message-ID>#<16 hex of its content digest>``
  (``variant_ref``). The digest covers what the author wrote (``content_digest``), not transport
  headers (Received, Delivered-To, X-*) that differ between copies of one mail, so the variant ref
  is as stable across re-fetches as the Message-ID. Which mail holds the plain Message-ID is
  decided by the ingester: the first one seen (``CheckpointStore.claim_message_ids``).
- Mail without a Message-ID: ``<mailbox>:<uidvalidity>:<uid>``.

A reply's In-Reply-To/References and a bounce's original are Message-IDs as they were on the
wire: ``message_id_of`` turns a variant ref back into its Message-ID. Our own outbound mail
carries ``<command_id@domain>`` (``outbound_message_id``); ``sent_by_us`` recognises that shape.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection
from email.message import Message

from channels.email.mime import header_items

__all__ = [
    "content_digest",
    "message_id_of",
    "outbound_message_id",
    "sent_by_us",
    "variant_ref",
]

# The fields the author's client wrote; everything else (trace fields, filters' X-* stamps,
# Delivered-To, Return-Path, list software's List-*) may differ between copies of one mail.
_IDENTITY_FIELDS = frozenset(
    {
        "from",
        "sender",
        "reply-to",
        "to",
        "cc",
        "subject",
        "date",
        "message-id",
        "in-reply-to",
        "references",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
    }
)
_VARIANT_DIGITS = 16
_VARIANT = re.compile(rf"(<[^<>\s]{{1,250}}>)#[0-9a-f]{{{_VARIANT_DIGITS}}}")
_WHITESPACE = re.compile(rb"\s+")
_HEADER_END = re.compile(rb"\n\n")
_SAFE_LOCAL_PART = re.compile(r"[A-Za-z0-9._-]{1,128}")


def content_digest(message: Message, raw: bytes) -> str:
    """SHA-256 (hex) of the identity fields and the body: equal for copies of one mail."""
    digest = hashlib.sha256()
    fields = sorted(
        (name.lower().encode(), _WHITESPACE.sub(b" ", value.encode("utf-8", "replace")).strip())
        for name, value in header_items(message, _IDENTITY_FIELDS)
    )
    for name, value in fields:
        digest.update(name + b":" + value + b"\n")
    # Line ends are the transport's choice (IMAP servers store LF or CRLF); the body is not.
    lines = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    end = _HEADER_END.search(lines)
    body = lines[end.end() :].rstrip() if end else b""
    digest.update(b"\n" + body)
    return digest.hexdigest()


def variant_ref(message_id: str, digest: str) -> str:
    """The ref of a mail whose Message-ID is already held by a different mail."""
    return f"{message_id}#{digest[:_VARIANT_DIGITS]}"


def message_id_of(ref: str) -> str:
    """The Message-ID in a provider_ref (a variant ref loses its digest); others unchanged."""
    variant = _VARIANT.fullmatch(ref)
    return variant.group(1) if variant else ref


def outbound_message_id(command_id: str, domain: str) -> str:
    """``<command_id@domain>``; a command id unfit for a header is replaced by its digest."""
    local = command_id if _SAFE_LOCAL_PART.fullmatch(command_id) else _digest(command_id)
    return f"<{local}@{domain}>"


def sent_by_us(message_id: str, domains: Collection[str]) -> bool:
    """Whether ``message_id`` has the shape of our outbound mail's (any shape if no domains)."""
    if not domains:
        return True  # we do not know our Message-ID domain: cannot tell, do not refuse
    local, _, domain = message_id.strip("<>").rpartition("@")
    return domain.lower() in domains and bool(_SAFE_LOCAL_PART.fullmatch(local))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:40]
