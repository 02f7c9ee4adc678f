"""Generated mail, well-formed or not: every one is recorded, dead-lettered or a bounce, quickly.

What the ingester does with raw bytes from IMAP is ``parse_mail``; whatever it is handed, it
must return an event that survives the wire (the recorder parses what we dump), a delay notice
skipped with its reason, or raise ``MailRejected`` with a reason (a dead letter). Never another
exception, never nothing-at-all, never slowly.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note_outcome
from hypothesis import strategies as st

from channels.email.errors import MailRejected
from channels.email.parsing import MailSource, parse_mail
from contracts import DeliveryStatusChanged, MessageReceived, dump_interaction, parse_interaction
from tests.mail_fixtures import make_bounce, make_mail
from tests.mail_samples import SAMPLES_DIR, Sample, hostile_samples

SOURCE = MailSource("support", "support@support.example.org", 7, 42)
PER_MAIL_S = 2.0
GENERATED = settings(
    max_examples=200,
    deadline=None,  # the per-mail bound is asserted below, on parse_mail alone
    database=None,  # no .hypothesis/ directory in the work tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- header values ---------------------------------------------------------------------------

CHARSETS = [
    "utf-8", "us-ascii", "iso-8859-1", "windows-1252", "shift_jis", "utf-16", "utf-7",
    "x-unknown", "punycode", "idna", "unicode_escape", "", '"utf-8"', "utf-8'en'", "a" * 60,
]  # fmt: skip
TRANSFER_ENCODINGS = [
    "7bit", "8bit", "binary", "base64", "quoted-printable", "x-uuencode", "BASE64 ", "bogus",
]  # fmt: skip

_text = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]) | st.sampled_from("\x00\r\n\t\x1b\x85"),
    max_size=60,
)
_good_addresses = st.sampled_from(
    [
        "ann@example.com",
        "Ann Example <ann@example.com>",
        "=?utf-8?q?J=C3=B6rg?= <joerg@example.com>",
        "=?x-unknown?b?SsO2cmc=?= <joerg@example.com>",
        "MAILER-DAEMON@mx.example.net",
        "postmaster@mx.example.net (Mail Delivery System)",
        "ann@xn--bcher-kva.example",
        "jörg@bücher.example",
        '"a\\"b" <a@b.c>',
    ]
)
_odd_addresses = st.sampled_from(
    ["undisclosed-recipients:;", "<>", "ann@", "@example.com", "(" * 50 + "ann@example.com"]
)
_addresses = st.one_of(_good_addresses, _odd_addresses)
_message_ids = st.sampled_from(
    [
        "<a@x.org>",
        "<cmd-1@support.example.org>",
        "<reused@mail.example.com>",
        "no-brackets@x.org",
        "<>",
        "<a b@x>",
        "<" + "x" * 300 + "@x>",
        "<a@x> <b@x>",
    ]
)


@st.composite
def encoded_words(draw: st.DrawFn) -> str:
    charset = draw(st.sampled_from(CHARSETS))
    kind = draw(st.sampled_from("qQbBx"))
    payload = draw(st.text(st.characters(codec="ascii"), max_size=30))
    return f"=?{charset}?{kind}?{payload}?="


_header_values = st.one_of(
    _text,
    _addresses,
    _message_ids,
    encoded_words(),
    st.lists(encoded_words() | _text, max_size=4).map(" ".join),
    st.integers(1_000, 40_000).map(lambda n: "x" * n),  # long lines, some over the limits
    st.just("Tue, 24 Nov 2026 10:00:00 +0100"),
    st.sampled_from(["Mon, 99 Foo 99999 99:99:99 +9999", "yesterday", "Tue, 1 Jan 1 00:00:00"]),
)
_header_names = st.sampled_from(
    [
        "From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
        "Reply-To", "Sender", "Auto-Submitted", "Received", "X-Autoreply", "Precedence",
        "Content-Disposition", "Content-Type", "From ", "X-\u00e9", "",
    ]
)  # fmt: skip


def as_header_bytes(name: str, value: str, encoding: str = "utf-8") -> bytes:
    return f"{name}: {value}".encode(encoding, "replace")  # raw 8-bit, as careless clients send


# -- bodies and MIME trees ---------------------------------------------------------------------


@st.composite
def leaf_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["text", "bytes", "base64", "broken-base64", "qp", "status"]))
    if kind == "text":
        return draw(_text).encode("utf-8", "replace")
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "base64":
        return base64.encodebytes(draw(st.binary(max_size=200)))
    if kind == "broken-base64":
        return draw(st.text("ABCxyz019+/=!\n", max_size=80)).encode()
    if kind == "qp":
        return draw(st.text("abc=3D=\n=ZZ=0=\r\t ", max_size=80)).encode()
    action = draw(st.sampled_from(["failed", "delayed", "delivered", "", "weird"]))
    recipient = draw(_addresses)
    return (
        f"Reporting-MTA: dns; mx.example.net\r\n\r\nFinal-Recipient: rfc822; {recipient}\r\n"
        f"Action: {action}\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 {draw(_text)}\r\n"
    ).encode("utf-8", "replace")


@dataclass(frozen=True)
class Part:
    headers: tuple[bytes, ...]
    body: bytes

    def serialise(self, eol: bytes) -> bytes:
        head = eol.join(self.headers)
        return head + eol + eol + self.body.replace(b"\r\n", eol)


_LEAF_TYPES = [
    "text/plain", "text/html", "application/octet-stream", "image/png", "message/delivery-status",
    "text/rfc822-headers", "message/global", "x/\u00ff", "text", "",
]  # fmt: skip


@st.composite
def leaves(draw: st.DrawFn) -> Part:
    kind = draw(st.sampled_from(_LEAF_TYPES))
    charset = draw(st.sampled_from(CHARSETS))
    headers = [f"Content-Type: {kind}; charset={charset}".encode()]
    if draw(st.booleans()):
        headers.append(f"Content-Transfer-Encoding: {draw(st.sampled_from(TRANSFER_ENCODINGS))}")
    if draw(st.booleans()):
        name = draw(st.sampled_from(["a.pdf", "../../etc/passwd", "=?utf-8?b?w7w=?=", "\x00"]))
        headers.append(f'Content-Disposition: attachment; filename="{name}"')
    return Part(
        tuple(h if isinstance(h, bytes) else h.encode() for h in headers), draw(leaf_bodies())
    )


def containers(children: st.SearchStrategy[Part]) -> st.SearchStrategy[Part]:
    return st.one_of(multiparts(children), attached_messages(children))


@st.composite
def multiparts(draw: st.DrawFn, children: st.SearchStrategy[Part]) -> Part:
    subtype = draw(st.sampled_from(["mixed", "alternative", "report", "related", "signed"]))
    boundary = draw(st.sampled_from(["B", "b1", "=_x", "with space", "\u00e9"]))
    params = f'; boundary="{boundary}"' if draw(st.integers(0, 5)) else ""
    if subtype == "report" and draw(st.booleans()):
        params += "; report-type=" + draw(st.sampled_from(["delivery-status", "disposition"]))
    parts = draw(st.lists(children, max_size=4))
    eol = b"\r\n"
    body = b"".join(b"--" + boundary.encode() + eol + p.serialise(eol) + eol for p in parts)
    if draw(st.integers(0, 4)):  # sometimes the closing boundary never comes
        body += b"--" + boundary.encode() + b"--" + eol
    header = f"Content-Type: multipart/{subtype}{params}".encode()
    return Part((header,), b"preamble" + eol + body)


@st.composite
def attached_messages(draw: st.DrawFn, children: st.SearchStrategy[Part]) -> Part:
    inner = draw(children)
    extra = draw(st.lists(st.tuples(_header_names, _header_values), max_size=3))
    head = tuple(as_header_bytes(n, v) for n, v in extra)
    return Part(
        (b"Content-Type: message/rfc822",),
        Part(head + inner.headers, inner.body).serialise(b"\r\n"),
    )


_trees = st.recursive(leaves(), containers, max_leaves=8)


@st.composite
def generated_mails(draw: st.DrawFn) -> bytes:
    fields: list[tuple[str, str]] = []
    for name in ("From", "Message-ID", "Date", "Subject", "To"):
        for _ in range(draw(st.sampled_from([0, 1, 1, 1, 1, 2]))):  # missing, once, twice
            if name == "From":  # mostly usable, or the mail is dead-lettered before the body
                value = draw(st.one_of(_good_addresses, _good_addresses, _odd_addresses))
            elif name == "Message-ID":
                value = draw(_message_ids | _header_values)
            else:
                value = draw(_header_values)
            fields.append((name, value))
    fields += draw(st.lists(st.tuples(_header_names, _header_values), max_size=6))
    if draw(st.booleans()):  # a broken line before From ends the header block early: sometimes
        fields = draw(st.permutations(fields))
    tree = draw(_trees)
    encoding = draw(st.sampled_from(["utf-8", "latin-1", "cp1252"]))
    head = tuple(as_header_bytes(n, v, encoding) for n, v in fields)
    top = Part(head + tree.headers, tree.body)
    eol = draw(st.sampled_from([b"\r\n", b"\n", b"\r"]))
    return top.serialise(eol)


# -- mutations of known mails --------------------------------------------------------------------

_SEEDS = [
    *(path.read_bytes() for path in sorted(SAMPLES_DIR.glob("*.eml"))),
    make_mail(message_id="<seed@mail.example.com>", attachments=[("a.txt", "text/plain", b"a")]),
    make_mail(html="<p>hi</p>", in_reply_to="<p@x.org>", references=["<r@x.org>", "<p@x.org>"]),
    make_bounce("<cmd-3@support.example.org>", "bob@example.com"),
    make_bounce("<someone-else@mail.example.com>", "bob@example.com"),
]


@st.composite
def mutated_mails(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(st.sampled_from(_SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(raw)))
        operation = draw(st.sampled_from(["cut", "insert", "flip", "truncate", "repeat-line"]))
        if operation == "cut":
            del raw[at : at + draw(st.integers(1, 40))]
        elif operation == "insert":
            raw[at:at] = draw(st.binary(min_size=1, max_size=40))
        elif operation == "flip" and at < len(raw):
            raw[at] = draw(st.integers(0, 255))
        elif operation == "truncate":
            del raw[at:]
        else:
            end = raw.find(b"\n", at)
            line = raw[at : end + 1] if end >= 0 else raw[at:]
            raw[at:at] = line * draw(st.integers(1, 3))
    return bytes(raw)


# -- the property --------------------------------------------------------------------------------


def assert_recorded_or_rejected(raw: bytes) -> str:
    started = time.perf_counter()
    try:
        parsed = parse_mail(raw, SOURCE)
    except MailRejected as exc:
        outcome = "dead-lettered"
        assert exc.reason, "a dead letter says why"
    else:
        if parsed.event is None:
            outcome = "skipped"
            assert parsed.skipped_because, "a mail without an event must say why"
        else:
            outcome = "recorded"
            event = parsed.event
            assert isinstance(event, MessageReceived | DeliveryStatusChanged)
            assert parse_interaction(dump_interaction(event)) == event
            variant = parsed.under_variant_ref().event
            assert parse_interaction(dump_interaction(variant)) == variant
        assert parsed.dedupe_key
    elapsed = time.perf_counter() - started
    assert elapsed < PER_MAIL_S, f"parsing took {elapsed:.2f}s"
    return outcome


@GENERATED
@given(generated_mails())
def test_a_generated_mime_tree_is_recorded_or_dead_lettered_never_lost(raw: bytes) -> None:
    note_outcome(assert_recorded_or_rejected(raw))  # --hypothesis-show-statistics shows the mix


@GENERATED
@given(mutated_mails())
def test_a_damaged_copy_of_a_known_mail_is_recorded_or_dead_lettered_never_lost(
    raw: bytes,
) -> None:
    note_outcome(assert_recorded_or_rejected(raw))


@settings(GENERATED, max_examples=100)
@given(st.binary(max_size=2000))
def test_random_bytes_are_recorded_or_dead_lettered_never_lost(raw: bytes) -> None:
    assert_recorded_or_rejected(raw)


@pytest.mark.parametrize("sample", hostile_samples(), ids=lambda s: s.name)
def test_every_mail_sample_is_recorded_or_dead_lettered_never_lost(sample: Sample) -> None:
    assert_recorded_or_rejected(sample.raw)
