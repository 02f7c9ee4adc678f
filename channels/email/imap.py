"""The IMAP reader, ``ImapIngester``: one mailbox -> events on Kafka, nothing lost or doubled.

Runs in its own thread (imapclient is blocking). A session is: connect, log in, EXAMINE the
folder (read-only: mail is neither flagged nor moved), read everything after the checkpoint,
then IDLE until the server reports news or ``idle_refresh_s`` passes, and read again. Every
wake-up, reconnect and start reads by UID from the checkpoint, so nothing depends on IDLE
notifications arriving; they only make new mail show up sooner.

Each batch of mails is parsed, attachments stored, events and dead letters handed to the sink,
which returns only when Kafka confirmed them all; only then does the checkpoint move past the
batch. A crash in between publishes the batch again on restart, and the recorder drops the
repeats by provider_ref (the Message-ID), so a mail is recorded once. A different mail reusing a
Message-ID that another mail holds is recorded under a variant ref (``refs``), with a warning.

Network failures of every kind (refused, reset, TLS, timeouts, a connection that went quiet
while IDLE) end the session; the ingester reconnects with exponential backoff.
"""

from __future__ import annotations

import logging
import random
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from imapclient import IMAPClient, SocketTimeout
from imapclient.exceptions import IMAPClientError

from channels.email.blobs import BlobStore
from channels.email.checkpoints import Checkpoint, CheckpointStore
from channels.email.config import ImapMailbox, ImapTiming, MailLimits
from channels.email.errors import MailRejected, MailTooLarge
from channels.email.parsing import MailSource, ParsedMail, parse_mail, raw_dedupe_key
from contracts import DeadLetter, InteractionEvent
from contracts.errors import Unavailable

__all__ = ["ConnectionLost", "ImapIngester", "IngestStats", "MailSink", "PublishFailed"]

log = logging.getLogger(__name__)

# Untagged responses during IDLE that mean the mailbox changed (or the server is leaving).
_NEWS = frozenset({b"EXISTS", b"EXPUNGE", b"FETCH", b"BYE", b"RECENT"})
# UIDs per size FETCH: imapclient sends them comma-separated (it cannot take ranges and
# still match the answers), and servers cap a command line (Dovecot: 64 KB).
_SIZE_FETCH_CHUNK = 2000


class PublishFailed(Unavailable):
    """Kafka did not confirm a batch; it is read and published again after a backoff."""


class ConnectionLost(Unavailable, OSError):
    """The IMAP connection is gone (closed, reset, or silent past the timeouts)."""


class MailSink(Protocol):
    def deliver(
        self, events: Sequence[InteractionEvent], dead_letters: Sequence[DeadLetter]
    ) -> None:
        """Publish; return only once every record is confirmed, else raise PublishFailed."""
        ...


@dataclass
class IngestStats:
    sessions: int = 0
    failures: int = 0
    published: int = 0
    dead_lettered: int = 0
    already_seen: int = 0
    skipped: int = 0
    reused_message_ids: int = 0  # different mails recorded under a variant ref
    last_uid: int = 0
    last_error: str | None = None
    idle_wakeups: int = 0


@dataclass
class _Outcome:
    uid: int
    key: str
    event: InteractionEvent | None = None
    dead_letter: DeadLetter | None = None
    parsed: ParsedMail | None = None


class ImapIngester:
    def __init__(
        self,
        mailbox: ImapMailbox,
        *,
        sink: MailSink,
        checkpoints: CheckpointStore,
        blobs: BlobStore,
        limits: MailLimits | None = None,
        timing: ImapTiming | None = None,
    ) -> None:
        self.mailbox = mailbox
        self.sink = sink
        self.checkpoints = checkpoints
        self.blobs = blobs
        self.limits = limits or MailLimits()
        self.timing = timing or ImapTiming()
        self.stats = IngestStats()
        self.synced = threading.Event()  # set once the mailbox has been read up to date
        self._synced_this_session = False
        # Written to by wake(): lets a stop interrupt IDLE at once instead of at the next poll.
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)

    def close(self) -> None:
        """Release the wake-up socket pair (after ``run`` returned)."""
        self._wake_reader.close()
        self._wake_writer.close()

    def wake(self) -> None:
        """Interrupt an IDLE wait (call after setting the stop event)."""
        try:
            self._wake_writer.send(b"!")
        except OSError:
            pass  # already woken and the buffer is full, or closed

    # -- the loop ---------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Ingest until ``stop`` is set; never raises for network or broker trouble."""
        attempt = 0
        while not stop.is_set():
            try:
                client = self._connect()
            except (OSError, IMAPClientError) as exc:
                attempt = self._back_off(stop, attempt, exc)
                continue
            self.stats.sessions += 1
            self._synced_this_session = False
            failure: BaseException | None = None
            try:
                self._session(client, stop)
            except (OSError, IMAPClientError, PublishFailed) as exc:
                failure = exc
            finally:
                _close(client, graceful=failure is None)
            if failure is not None:
                # A session that got as far as reading the mailbox starts the backoff over.
                attempt = self._back_off(stop, 0 if self._synced_this_session else attempt, failure)

    def _back_off(self, stop: threading.Event, attempt: int, exc: BaseException) -> int:
        self.stats.failures += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        delay = min(self.timing.backoff_max_s, self.timing.backoff_initial_s * 2**attempt)
        delay *= random.uniform(0.5, 1.0)  # many mailboxes must not reconnect in lockstep
        log.warning(
            "mailbox %s: %s; reconnecting in %.1fs", self.mailbox.name, self.stats.last_error, delay
        )
        stop.wait(delay)
        return attempt + 1

    def _connect(self) -> IMAPClient:
        box = self.mailbox
        context = None
        if box.tls != "none":
            context = ssl.create_default_context(cafile=str(box.ca_file) if box.ca_file else None)
        client = IMAPClient(
            box.host,
            port=box.port,
            ssl=box.tls == "tls",
            ssl_context=context,
            timeout=SocketTimeout(
                connect=self.timing.connect_timeout_s, read=self.timing.read_timeout_s
            ),
        )
        try:
            if box.tls == "starttls":
                client.starttls(context)
            _keep_alive(client.socket())
            client.login(box.user, box.secret())
        except BaseException:
            _close(client, graceful=False)
            raise
        client.normalise_times = False  # INTERNALDATE as aware datetimes
        return client

    def _session(self, client: IMAPClient, stop: threading.Event) -> None:
        can_idle = client.has_capability("IDLE")
        while not stop.is_set():
            self.sync(client)
            self._synced_this_session = True
            self.synced.set()
            if stop.is_set():
                return
            if can_idle:
                self._idle(client, stop)
            else:
                stop.wait(min(self.timing.idle_refresh_s, 30.0))

    def _idle(self, client: IMAPClient, stop: threading.Event) -> None:
        client.idle()
        deadline = time.monotonic() + self.timing.idle_refresh_s
        lost = False
        try:
            while not stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                if not self._readable(client.socket(), min(remaining, 1.0)):
                    continue
                responses = client.idle_check(timeout=0)
                if not responses:
                    # Readable with nothing to read is how a closed or reset socket looks;
                    # imapclient swallows the EOF, so without this the loop would spin.
                    lost = True
                    raise ConnectionLost("the server or the network closed the connection")
                if any(_is_news(r) for r in responses):
                    self.stats.idle_wakeups += 1
                    return
        finally:
            if not lost:
                # Bounded by the read timeout: a connection that died silently fails here.
                client.idle_done()

    def _readable(self, sock: socket.socket, timeout: float) -> bool:
        """Whether the IMAP socket has data; False early when woken."""
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True  # decrypted bytes already buffered: poll() on the fd would not see them
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN | select.POLLPRI)
        poller.register(self._wake_reader.fileno(), select.POLLIN)
        ready = {fd for fd, _ in poller.poll(timeout * 1000)}
        if self._wake_reader.fileno() in ready:
            try:
                self._wake_reader.recv(4096)
            except OSError:
                pass
        return sock.fileno() in ready

    # -- reading the mailbox ----------------------------------------------------------------

    def sync(self, client: IMAPClient) -> None:
        """Publish everything after the checkpoint (all of it after a UIDVALIDITY change)."""
        info = client.select_folder(self.mailbox.folder, readonly=True)
        uidvalidity = int(info[b"UIDVALIDITY"])
        stored = self.checkpoints.load(self.mailbox.name)
        last_uid = 0
        if stored is not None and stored.uidvalidity == uidvalidity:
            last_uid = stored.last_uid
        elif stored is not None:
            log.warning(
                "mailbox %s: UIDVALIDITY changed from %s to %s; reading it all again, "
                "deduplicated by Message-ID and content",
                self.mailbox.name,
                stored.uidvalidity,
                uidvalidity,
            )
        self.stats.last_uid = last_uid
        uidnext = info.get(b"UIDNEXT")
        if uidnext is not None and int(uidnext) <= last_uid + 1:
            return
        # "n:*" always matches the highest UID even when it is below n (RFC 3501 6.4.8).
        uids = sorted(u for u in client.search(["UID", f"{last_uid + 1}:*"]) if u > last_uid)
        for batch, sizes in self._batches(client, uids):
            self._ingest(client, uidvalidity, batch, sizes)

    def _batches(
        self, client: IMAPClient, uids: list[int]
    ) -> Iterator[tuple[list[int], dict[int, int]]]:
        """UIDs in order, in batches bounded by count and by bytes held in memory."""
        for start in range(0, len(uids), _SIZE_FETCH_CHUNK):
            chunk = uids[start : start + _SIZE_FETCH_CHUNK]
            sizes = {
                uid: int(data.get(b"RFC822.SIZE", 0))
                for uid, data in client.fetch(chunk, ["RFC822.SIZE"]).items()
            }
            batch: list[int] = []
            held = 0
            for uid in chunk:
                if uid not in sizes:
                    continue  # expunged since the search
                size = min(sizes[uid], self.limits.max_message_bytes)
                if batch and (
                    len(batch) >= self.timing.fetch_batch
                    or held + size > self.timing.fetch_batch_bytes
                ):
                    yield batch, sizes
                    batch, held = [], 0
                batch.append(uid)
                held += size
            if batch:
                yield batch, sizes

    def _ingest(
        self, client: IMAPClient, uidvalidity: int, batch: list[int], sizes: dict[int, int]
    ) -> None:
        too_large = [u for u in batch if sizes[u] > self.limits.max_message_bytes]
        wanted = [u for u in batch if sizes[u] <= self.limits.max_message_bytes]
        fetched = client.fetch(wanted, ["BODY.PEEK[]", "INTERNALDATE"]) if wanted else {}
        headers = client.fetch(too_large, ["BODY.PEEK[HEADER]"]) if too_large else {}
        outcomes: list[_Outcome] = []
        for uid in batch:
            if uid in fetched:
                data = fetched[uid]
                raw = bytes(data.get(b"BODY[]") or b"")
                outcomes.append(self._read(uid, uidvalidity, raw, data.get(b"INTERNALDATE")))
            elif uid in headers:
                outcomes.append(self._too_large(uid, sizes[uid], headers[uid]))
        seen = self.checkpoints.seen_among(self.mailbox.name, (o.key for o in outcomes))
        fresh: list[_Outcome] = []
        for outcome in outcomes:
            if outcome.key in seen:
                self.stats.already_seen += 1
                continue
            seen.add(outcome.key)  # the same mail twice within one batch
            fresh.append(outcome)
        self._hold_message_ids(fresh)
        events = [o.event for o in fresh if o.event is not None]
        letters = [o.dead_letter for o in fresh if o.dead_letter is not None]
        self.sink.deliver(events, letters)
        self.checkpoints.advance(
            self.mailbox.name, Checkpoint(uidvalidity, batch[-1]), [o.key for o in fresh]
        )
        self.stats.published += len(events)
        self.stats.dead_lettered += len(letters)
        self.stats.last_uid = batch[-1]

    def _read(self, uid: int, uidvalidity: int, raw: bytes, internaldate: object) -> _Outcome:
        received = internaldate if isinstance(internaldate, datetime) else None
        if received is not None and received.tzinfo is None:
            received = None  # a naive time's zone is a guess: let the Date header decide
        source = MailSource(
            self.mailbox.name,
            self.mailbox.endpoint,
            uidvalidity,
            uid,
            received_at=received,
            message_id_domains=self.mailbox.our_message_id_domains,
        )
        try:
            parsed = parse_mail(raw, source, self.limits)
        except MailRejected as exc:
            return _Outcome(uid, raw_dedupe_key(raw), dead_letter=self._dead_letter(uid, raw, exc))
        except Exception as exc:  # a bug must not stop the mailbox: dead-letter the one mail
            log.exception("mailbox %s: unexpected error reading UID %s", self.mailbox.name, uid)
            return _Outcome(uid, raw_dedupe_key(raw), dead_letter=self._dead_letter(uid, raw, exc))
        for attachment in parsed.attachments:
            self.blobs.put(attachment.content)
        if parsed.event is None:
            self.stats.skipped += 1
            log.info(
                "mailbox %s: UID %s skipped, no event: %s",
                self.mailbox.name,
                uid,
                parsed.skipped_because,
            )
        return _Outcome(uid, parsed.dedupe_key, event=parsed.event, parsed=parsed)

    def _hold_message_ids(self, fresh: list[_Outcome]) -> None:
        """The first mail seen with a Message-ID holds it; a different one gets a variant ref."""
        claiming = [
            (outcome, outcome.parsed)
            for outcome in fresh
            if outcome.event is not None
            and outcome.parsed is not None
            and outcome.parsed.message_id
            and outcome.parsed.content_digest
        ]
        if not claiming:
            return
        holders = self.checkpoints.claim_message_ids(
            [(p.message_id or "", p.content_digest or "") for _, p in claiming]
        )
        for outcome, parsed in claiming:
            if holders.get(parsed.message_id or "") in (None, parsed.content_digest):
                continue
            outcome.event = parsed.under_variant_ref().event
            self.stats.reused_message_ids += 1
            log.warning(
                "mailbox %s: UID %s reuses Message-ID %s, held by a different mail; recorded as %s",
                self.mailbox.name,
                outcome.uid,
                parsed.message_id,
                outcome.event.provider_ref if outcome.event else None,
            )

    def _too_large(self, uid: int, size: int, data: dict) -> _Outcome:
        head = bytes(data.get(b"BODY[HEADER]") or b"")
        error = MailTooLarge(
            f"message is {size} bytes, over the limit of {self.limits.max_message_bytes}; this "
            f"dead letter holds only its header, the mail stays in {self.mailbox.folder} at UID "
            f"{uid}"
        )
        key = f"{raw_dedupe_key(head)}:{size}"
        return _Outcome(uid, key, dead_letter=self._dead_letter(uid, head, error))

    def _dead_letter(self, uid: int, raw: bytes, error: BaseException) -> DeadLetter:
        limit = self.limits.deadletter_payload_bytes
        letter = DeadLetter.for_record(
            topic=f"imap:{self.mailbox.name}",
            partition=0,
            offset=uid,
            payload=raw[:limit],
            error=error,
        )
        if len(raw) > limit:
            digest = self.blobs.put(raw)
            note = (
                f" [payload truncated to {limit} of {len(raw)} bytes; the whole mail is stored "
                f"as blob sha256:{digest}]"
            )
            letter = letter.model_copy(
                update={"reason": (letter.reason[: 4000 - len(note)] + note)}
            )
        log.info("mailbox %s: UID %s dead-lettered: %s", self.mailbox.name, uid, letter.reason)
        return letter


def _is_news(response: object) -> bool:
    return isinstance(response, tuple) and any(
        isinstance(item, bytes) and item.upper() in _NEWS for item in response[:2]
    )


def _keep_alive(sock: socket.socket) -> None:
    """TCP keepalive: the kernel notices a vanished peer even while we only listen."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 15), ("TCP_KEEPCNT", 4)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def _close(client: IMAPClient, *, graceful: bool) -> None:
    try:
        if graceful:
            client.logout()
        else:
            client.shutdown()
    except (OSError, IMAPClientError):
        pass  # the connection is being dropped anyway
