"""Malformed and hostile mails of our own making, each with the outcome the channel must reach.

The small ones are ``*.eml`` files beside this module (bytes exactly as written, CRLF unless
the sample is about line ends); the large ones are generated here. ``expected`` is
``"recorded"`` (an event is published), ``"skipped"`` (deliberately no event: a delay notice),
or the name of the ``MailRejected`` subclass that dead-letters the mail with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["Sample", "hostile_samples"]

SAMPLES_DIR = Path(__file__).parent
_HEAD = (
    b"From: Ann <ann@example.com>\r\nTo: support@support.example.org\r\n"
    b"Date: Tue, 24 Nov 2026 10:00:00 +0100\r\n"
)

EXPECTED_FROM_FILES = {
    "bad_message_id": "recorded",
    "broken_boundary": "recorded",
    "classic_bounce_for_mail_we_never_sent": "UnattributableBounce",
    "dsn_delayed": "skipped",
    "dsn_for_mail_we_never_sent": "UnattributableBounce",
    "dsn_rfc2231_report_type": "recorded",
    "dsn_without_original": "UnattributableBounce",
    "dsn_without_report_type": "recorded",
    "garbage_encoded_words": "recorded",
    "header_injection": "recorded",
    "html_with_script": "recorded",
    "invalid_base64": "recorded",
    "lone_cr_line_ends": "recorded",
    "multipart_without_boundary": "recorded",
    "no_sender": "NoSender",
    "nul_and_controls": "recorded",
    "punycode_charset": "recorded",
    "raw_8bit_headers": "recorded",
    "sender_not_an_address": "NoSender",
    "traversal_filename": "recorded",
    "unknown_charset": "recorded",
    "unterminated_multipart": "recorded",
    "wrong_declared_charset": "recorded",
}


@dataclass(frozen=True)
class Sample:
    name: str
    raw: bytes
    expected: str


def _nested_multiparts(depth: int) -> bytes:
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(depth)
    )
    closing = b"".join(b"\r\n--b%d--" % i for i in reversed(range(depth)))
    return (
        _HEAD
        + b"Subject: nested %d deep\r\nMessage-ID: <nested-%d@example.com>\r\n" % (depth, depth)
        + opening
        + b"Content-Type: text/plain\r\n\r\nthe innermost text"
        + closing
        + b"\r\n"
    )


def _nested_messages(depth: int) -> bytes:
    inner = b"From: x@example.com\r\nSubject: innermost\r\n\r\ntext\r\n"
    for _ in range(depth):
        inner = b"From: x@example.com\r\nContent-Type: message/rfc822\r\n\r\n" + inner
    return (
        _HEAD
        + b"Subject: forwarded %d times\r\nMessage-ID: <fwd-%d@example.com>\r\n" % (depth, depth)
        + b'Content-Type: multipart/mixed; boundary="F"\r\n\r\n--F\r\n'
        + b"Content-Type: message/rfc822\r\n\r\n"
        + inner
        + b"\r\n--F--\r\n"
    )


def _many_parts(count: int, *, attachments: bool) -> bytes:
    if attachments:
        part = b"--P\r\nContent-Type: application/octet-stream\r\n" + (
            b'Content-Disposition: attachment; filename="f.bin"\r\n\r\nxx\r\n'
        )
    else:
        part = b"--P\r\nContent-Type: text/plain\r\n\r\npart\r\n"
    return (
        _HEAD
        + b"Subject: %d parts\r\nMessage-ID: <parts-%d@example.com>\r\n" % (count, count)
        + b'Content-Type: multipart/mixed; boundary="P"\r\n\r\n'
        + b"--P\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
        + part * count
        + b"--P--\r\n"
    )


def _with_header(name: str, header: bytes, body: bytes = b"body\r\n") -> bytes:
    return (
        b"To: support@support.example.org\r\nMessage-ID: <%s@example.com>\r\n" % name.encode()
        + header
        + b"\r\n\r\n"
        + body
    )


def _generated() -> list[Sample]:
    return [
        Sample("nested_multiparts_5000", _nested_multiparts(5000), "MimeTooComplex"),
        Sample("nested_multiparts_20", _nested_multiparts(20), "MimeTooComplex"),
        Sample("nested_multiparts_5", _nested_multiparts(5), "recorded"),
        Sample("nested_messages_40", _nested_messages(40), "MimeTooComplex"),
        Sample("parts_1000", _many_parts(1000, attachments=False), "MimeTooComplex"),
        Sample("attachments_150", _many_parts(150, attachments=True), "MimeTooComplex"),
        Sample(
            "subject_1mb",
            _with_header("subject-1mb", b"From: a@example.com\r\nSubject: " + b"x " * 500_000),
            "HeaderTooLarge",
        ),
        Sample(
            "from_100kb_of_quotes",
            _with_header("quotes", b"From: " + b'"' * 100_000),
            "HeaderTooLarge",
        ),
        Sample(
            "from_nested_comments",
            _with_header("comments", b"From: " + b"(" * 4000 + b"a@example.com"),
            "NoSender",
        ),
        Sample(
            "content_type_8kb_of_semicolons",
            _with_header(
                "semicolons",
                b"From: a@example.com\r\nContent-Type: text/plain" + b";" * 8000,
            ),
            "HeaderTooLarge",
        ),
        Sample(
            "headers_100k",
            _with_header(
                "many-headers",
                b"From: a@example.com\r\n"
                + b"".join(b"X-H%d: v\r\n" % i for i in range(100_000)).rstrip(b"\r\n"),
            ),
            "HeaderTooLarge",
        ),
        Sample(
            "subject_10000_encoded_words",
            _with_header(
                "encoded-words", b"From: a@example.com\r\nSubject: " + b"=?utf-8?q?a?= " * 2000
            ),
            "recorded",
        ),
        Sample(
            "references_600_ids",
            _with_header(
                "long-thread",
                b"From: a@example.com\r\nReferences:"
                + b"".join(b"\r\n <id%d@example.org>" % i for i in range(600)),
            ),
            "recorded",
        ),
        Sample(
            "body_of_60000_newlines",
            _with_header("newlines", b"From: a@example.com", body=b"\r\n" * 60_000 + b"hi\r\n"),
            "recorded",
        ),
        Sample(
            "html_of_50000_unclosed_comments",
            _with_header(
                "html-comments",
                b"From: a@example.com\r\nContent-Type: text/html",
                body=b"<p>hi</p>" + b"<!--" * 50_000,
            ),
            "recorded",
        ),
        Sample(
            "html_of_100000_unclosed_end_tags",
            _with_header(
                "html-end-tags",
                b"From: a@example.com\r\nContent-Type: text/html",
                body=b"</" * 100_000,
            ),
            "recorded",
        ),
        Sample(
            "body_of_60000_quote_markers",
            _with_header("quote-markers", b"From: a@example.com", body=b">\r\n" * 60_000),
            "recorded",
        ),
    ]


def hostile_samples() -> list[Sample]:
    from_files = [
        Sample(name, (SAMPLES_DIR / f"{name}.eml").read_bytes(), expected)
        for name, expected in sorted(EXPECTED_FROM_FILES.items())
    ]
    return from_files + _generated()
