"""Bounces: a delivery report about one of our mails is a status of that mail, not a customer.

A standard bounce is a DSN (RFC 3464): ``multipart/report; report-type=delivery-status`` with a
``message/delivery-status`` part (Final-Recipient, Action, Status, Diagnostic-Code per recipient)
and the original message or its headers. It is recognised by that part as well as by the
``report-type`` parameter, which some mailers leave out. Older mailers send a plain text notice
from MAILER-DAEMON with the original attached; that is recognised too when it names the original.

A report is attributed to the original's Message-ID, which must be one of ours
(``<command_id@our domain>``, see ``refs.sent_by_us``): a report about mail the hub never sent
(backscatter from spam forged with our address, a colleague's own mail) is rejected as
``UnattributableBounce`` like every report we cannot attribute, so it is dead-lettered with the
reason and never turns its recipient into a customer.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import Message
from email.parser import BytesParser
from email.utils import collapse_rfc2231_value

from channels.email.errors import UnattributableBounce
from channels.email.mime import (
    decode_header_text,
    first_address,
    header,
    leaf_parts,
    msg_ids,
    sub_parts,
)
from channels.email.refs import sent_by_us
from contracts import AddressError, Channel, DeliveryStatus, DeliveryStatusChanged, normalize_party

__all__ = ["BounceSource", "delivery_report", "is_bounce"]

_ACTION_STATUS = {
    "failed": DeliveryStatus.failed,
    "delivered": DeliveryStatus.delivered,
    "relayed": DeliveryStatus.delivered,
    "expanded": DeliveryStatus.delivered,
}
_DAEMON_HINT = re.compile(r"daemon|postmaster", re.IGNORECASE)
_DAEMON_SENDERS = re.compile(r"^(mailer-daemon|postmaster|mail-daemon)@", re.IGNORECASE)
_FAILURE_SUBJECT = re.compile(
    r"undeliver|delivery (status notification \(failure\)|fail)|returned mail|failure notice|"
    r"unzustellbar|nicht zugestellt|non remis|no entregado",
    re.IGNORECASE,
)
_ORIGINAL_TYPES = ("message/rfc822", "message/global", "text/rfc822-headers")
_STATUS_TYPE = "message/delivery-status"
_MAX_DIAGNOSTIC_CHARS = 2000


@dataclass(frozen=True)
class BounceSource:
    provider_ref: str  # the bounce's own Message-ID (else its mailbox:uidvalidity:uid)
    endpoint: str
    occurred_at: datetime
    our_domains: Collection[str] = ()  # of our outbound Message-IDs; empty: unknown, take any


def is_bounce(message: Message) -> bool:
    if message.get_content_type() == "multipart/report" and _reports_delivery(message):
        return True
    raw_from = header(message, "From") or ""
    if not _DAEMON_HINT.search(raw_from):  # cheap test first: almost no mail is from a daemon
        return False
    sender = first_address(raw_from) or ""
    subject = decode_header_text(header(message, "Subject") or "")
    return bool(_DAEMON_SENDERS.match(sender)) and bool(_FAILURE_SUBJECT.search(subject))


def delivery_report(message: Message, source: BounceSource) -> DeliveryStatusChanged | None:
    """The status the bounce reports, or None for a mere delay (a final report follows)."""
    recipient_fields = _recipient_fields(message)
    action = (recipient_fields.get("action") or "failed").lower().strip()
    if action == "delayed":
        return None
    status = _ACTION_STATUS.get(action, DeliveryStatus.failed)
    original = _original_headers(message)
    original_id = _our_original_id(message, original, source.our_domains)
    recipient = _address_after_type(recipient_fields.get("final-recipient")) or _address_after_type(
        recipient_fields.get("original-recipient")
    )
    if recipient is None and original is not None:
        recipient = first_address(header(original, "To"))
    if recipient is None:
        raise UnattributableBounce("delivery report names no recipient (no Final-Recipient)")
    try:
        party = normalize_party(Channel.email, recipient)
    except AddressError as exc:
        raise UnattributableBounce(f"delivery report recipient: {exc}") from None
    diagnostic = recipient_fields.get("diagnostic-code") or ""
    return DeliveryStatusChanged(
        channel=Channel.email,
        party=party,
        provider_ref=source.provider_ref,
        occurred_at=source.occurred_at,
        endpoint=source.endpoint,
        status=status,
        message_ref=original_id,
        error_code=(recipient_fields.get("status") or "").strip()[:40] or None,
        error_message=decode_header_text(diagnostic)[:_MAX_DIAGNOSTIC_CHARS] or None,
    )


def _reports_delivery(report: Message) -> bool:
    # An RFC 2231 encoded parameter comes back as a (charset, language, value) tuple.
    report_type = collapse_rfc2231_value(report.get_param("report-type") or "")
    if str(report_type).strip().lower() == "delivery-status":
        return True
    return any(part.get_content_type() == _STATUS_TYPE for part in leaf_parts(report))


def _our_original_id(message: Message, original: Message | None, ours: Collection[str]) -> str:
    """The Message-ID of our mail the report is about, or UnattributableBounce."""
    candidates = msg_ids(header(original, "Message-ID"))[:1] if original is not None else []
    if not candidates:
        # No copy of the original: the report's own thread headers, the parent first.
        candidates = msg_ids(header(message, "In-Reply-To"))[:1] + list(
            reversed(msg_ids(header(message, "References")))
        )
    if not candidates:
        raise UnattributableBounce(
            "delivery report names no original Message-ID (no message/rfc822 or "
            "text/rfc822-headers part, no In-Reply-To or References)"
        )
    found = next((c for c in candidates if sent_by_us(c, ours)), None)
    if found is None:
        raise UnattributableBounce(
            f"delivery report is about {candidates[0][:260]}, which the hub did not send (our "
            f"Message-IDs end in @{', @'.join(sorted(ours))}; set the mailbox's "
            "message_id_domains if replies use another domain)"
        )
    return found


def _recipient_fields(message: Message) -> dict[str, str]:
    """The first per-recipient block of the DSN, preferring a failed one; names lower-cased."""
    for part in leaf_parts(message):
        if part.get_content_type() != _STATUS_TYPE:
            continue
        recipients = [
            {name.lower(): header(block, name) or "" for name, _ in block.raw_items()}
            for block in sub_parts(part)[1:]  # the first block is about the whole message
        ]
        failed = [r for r in recipients if r.get("action", "").lower().strip() == "failed"]
        if failed or recipients:
            return (failed or recipients)[0]
    return {}


def _original_headers(message: Message) -> Message | None:
    for part in leaf_parts(message):
        kind = part.get_content_type()
        if kind not in _ORIGINAL_TYPES:
            continue
        attached = sub_parts(part)
        if attached:
            return attached[0]
        data = part.get_payload(decode=True)
        if isinstance(data, bytes):
            # Bounded by the mail's own limits already; headers only, nothing else is needed.
            return BytesParser(policy=policy.compat32).parsebytes(data[:65536], headersonly=True)
    return None


def _address_after_type(value: str | None) -> str | None:
    """``rfc822; ann@example.com`` -> ``ann@example.com``."""
    if not value:
        return None
    _, _, address = value.partition(";")
    return first_address(address.strip() or value)
