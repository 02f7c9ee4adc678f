"""Pytest plugin: real mail servers on loopback for the e-mail channel's tests.

- ``dovecot``: Debian's Dovecot (``dovecot-imapd``) as a throwaway IMAP server, configured in a
  temp dir on a free 127.0.0.1 port, started once per session as root with its own base_dir and
  stopped by the PID in its master.pid (SERVERS.md). Each test gets fresh mailboxes
  (``dovecot.add_mailbox()``); passwd-file is re-read when it changes, so no restart is needed.
- ``smtp_server``: aiosmtpd on a free port, recording what it accepts; recipients whose local
  part starts with ``tempfail`` get 451, ``reject`` 550.
- ``TcpProxy``: a loopback TCP relay a test can cut (connections closed) or freeze (bytes
  silently dropped, as after a NAT forgets a connection).
- ``start_ingestion``: runs ``EmailIngestion`` for the test's settings (``hub_settings``) and
  stops it at teardown; ``make_mail`` / ``make_bounce`` build mails as clients and MTAs send them.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from channels.email import EmailIngestion, ImapMailbox, ImapTiming
from deploy.ports import free_port
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.kafka_topics import ensure_topics
from services.bootstrap.settings import Settings
from tests.helpers import timeline_follower

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
PASSWORD = "secret-for-tests"


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nothing listens on 127.0.0.1:{port} after {timeout}s"
                ) from None
            time.sleep(0.05)


def make_certificate(cert: Path, key: Path) -> None:
    """A throwaway self-signed certificate for 127.0.0.1 (it is its own CA)."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class DovecotServer:
    def __init__(self, work_dir: Path) -> None:
        self.dir = work_dir
        self.port = free_port()
        self.tls_port = free_port()  # IMAPS; the plain port offers STARTTLS
        self.certificate = work_dir / "cert.pem"  # self-signed for 127.0.0.1: the CA to trust
        self.users_file = work_dir / "users"
        self.mail_root = work_dir / "mail"
        self.config = work_dir / "dovecot.conf"
        user = pwd.getpwnam("dovenull")
        self.uid, self.gid = user.pw_uid, user.pw_gid
        self._spare_users: list[str] = []

    @property
    def pid_file(self) -> Path:
        return self.dir / "run" / "master.pid"

    def start(self, spare_users: int = 40) -> None:
        (self.dir / "run").mkdir(parents=True, exist_ok=True)
        self.mail_root.mkdir(exist_ok=True)
        self.users_file.touch()
        # Users known before the server starts are known for sure: tests take from these.
        spares = [f"box{uuid.uuid4().hex[:10]}" for _ in range(spare_users)]
        if spares:
            self._provision(*spares)
        self._spare_users = spares
        if not self.certificate.exists():
            make_certificate(self.certificate, self.dir / "key.pem")
        self.config.write_text(self._config_text())
        subprocess.run([DOVECOT, "-c", str(self.config)], check=True, timeout=30)
        wait_for_port(self.port)

    def _config_text(self) -> str:
        d = self.dir
        return f"""
base_dir = {d}/run
state_dir = {d}/run
protocols = imap
listen = 127.0.0.1
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.tls_port}
  }}
}}
ssl = yes
ssl_cert = <{self.certificate}
ssl_key = <{d}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {self.users_file}
}}
userdb {{
  driver = passwd-file
  args = {self.users_file}
}}
mail_location = maildir:~/Maildir
# A test server: durability is not what is under test, and fsync per APPEND dominates.
mail_fsync = never
mail_max_userip_connections = 200
log_path = {d}/dovecot.log
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
mail_uid = {self.uid}
mail_gid = {self.gid}
"""

    def stop(self) -> None:
        if not self.pid_file.exists():
            return
        pid = int(self.pid_file.read_text().split()[0])
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def add_mailbox(self, name: str | None = None) -> ImapMailbox:
        """A new, empty mailbox (a new user), ready to log in to."""
        if name is None and self._spare_users:
            user = self._spare_users.pop()
        else:
            user = self._provision(name or f"box{uuid.uuid4().hex[:10]}")
            self._wait_until_known(user)
        return ImapMailbox(
            name=user,
            host="127.0.0.1",
            port=self.port,
            tls="none",
            user=user,
            password=PASSWORD,
            address=f"{user}@support.example.org",
        )

    def _provision(self, *users: str) -> str:
        with self.users_file.open("a") as lines:
            for user in users:
                home = self.mail_root / user
                home.mkdir(parents=True)
                os.chown(home, self.uid, self.gid)
                lines.write(f"{user}:{{PLAIN}}{PASSWORD}:{self.uid}:{self.gid}::{home}\n")
        return users[-1]

    def _wait_until_known(self, user: str, timeout: float = 10.0) -> None:
        # Dovecot re-reads passwd-file when it changes, but not necessarily within the same
        # second: a user added a moment ago may not log in yet.
        deadline = time.monotonic() + timeout
        while True:
            try:
                with IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=5) as client:
                    client.login(user, PASSWORD)
                    return
            except LoginError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    @contextlib.contextmanager
    def client(self, mailbox: ImapMailbox) -> Iterator[IMAPClient]:
        client = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=30)
        client.login(mailbox.user, PASSWORD)
        try:
            yield client
        finally:
            client.logout()

    def append(self, mailbox: ImapMailbox, *raws: bytes, chunk: int = 500) -> None:
        """Deliver mails with IMAP (MULTIAPPEND: one command per chunk)."""
        with self.client(mailbox) as client:
            for start in range(0, len(raws), chunk):
                client.multiappend(mailbox.folder, list(raws[start : start + chunk]))

    def uidvalidity(self, mailbox: ImapMailbox) -> int:
        with self.client(mailbox) as client:
            return int(client.select_folder(mailbox.folder, readonly=True)[b"UIDVALIDITY"])

    def rebuild_mailbox(self, mailbox: ImapMailbox) -> None:
        """What a server migration does: same mails, new UIDVALIDITY, UIDs renumbered from 1."""
        maildir = self.mail_root / mailbox.user / "Maildir"
        for path in maildir.glob("dovecot*"):
            if path.name.startswith(("dovecot-uidlist", "dovecot.index")):
                path.unlink()


@pytest.fixture(scope="session")
def dovecot() -> Iterator[DovecotServer]:
    if not Path(DOVECOT).exists():
        pytest.skip("Dovecot is not installed (Debian: apt-get install dovecot-imapd)")
    if os.geteuid() != 0:
        pytest.skip("the throwaway Dovecot runs as root (it switches to dovenull for mail)")
    # Directly under /tmp, not in pytest's private (0700) temp tree: Dovecot's mail processes run
    # as dovenull and must reach the mail folders.
    work = Path(tempfile.mkdtemp(prefix="sb-dovecot-"))
    work.chmod(0o711)
    server = DovecotServer(work)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def imap_mailbox(dovecot: DovecotServer) -> ImapMailbox:
    return dovecot.add_mailbox()


# -- SMTP ------------------------------------------------------------------------------------


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes


@dataclass
class RecordingSmtpHandler:
    received: list[ReceivedMail] = field(default_factory=list)
    deferrals: dict[str, int] = field(default_factory=dict)  # address -> 451 this many times

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        local = address.split("@", 1)[0].lower()
        if local.startswith("tempfail"):
            return "451 4.3.0 Mailbox temporarily unavailable"
        if local.startswith("reject"):
            return "550 5.1.1 No such user here"
        if self.deferrals.get(address, 0) > 0:
            self.deferrals[address] -= 1
            return "451 4.7.1 Greylisted, try again"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        self.received.append(
            ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
        )
        return "250 2.0.0 Message accepted"


@dataclass
class SmtpServer:
    host: str
    port: int
    handler: RecordingSmtpHandler


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    handler = RecordingSmtpHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", port, handler)
    finally:
        controller.stop()


# -- a TCP relay to break connections with -----------------------------------------------------


class TcpProxy:
    """127.0.0.1:<port> -> 127.0.0.1:<target>; ``cut()`` and ``freeze()`` break live connections."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._pairs: list[_Pair] = []
        self._lock = threading.Lock()
        self.accepted = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            pair = _Pair(client, upstream)
            with self._lock:
                self._pairs.append(pair)
                self.accepted += 1
            pair.start()

    def cut(self) -> None:
        """Close every live connection: the client sees its socket closed or reset."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            pair.close()

    def freeze(self) -> None:
        """Live connections stay open but carry nothing any more; new ones work."""
        with self._lock:
            for pair in self._pairs:
                pair.frozen = True

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        self.cut()


class _Pair:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.frozen = False

    def start(self) -> None:
        for src, dst in ((self.client, self.upstream), (self.upstream, self.client)):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not self.frozen:
                    dst.sendall(data)
        except OSError:
            pass
        if not self.frozen:
            self.close()

    def close(self) -> None:
        for s in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()


# -- building mails ----------------------------------------------------------------------------


def make_mail(
    *,
    sender: str = "Ann Example <ann@example.com>",
    to: str = "support@support.example.org",
    subject: str = "Where is my order?",
    body: str = "Hello, where is my order 4711?",
    message_id: str | None = "auto",
    in_reply_to: str | None = None,
    references: list[str] | None = None,
    headers: dict[str, str] | None = None,
    attachments: Sequence[tuple[str, str, bytes]] = (),
    html: str | None = None,
) -> bytes:
    """A well-formed mail as a client would send it (CRLF line ends, as on the wire)."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = to
    mail["Subject"] = subject
    mail["Date"] = "Tue, 24 Nov 2026 10:00:00 +0100"
    if message_id == "auto":
        message_id = f"<{uuid.uuid4().hex}@mail.example.com>"
    if message_id:
        mail["Message-ID"] = message_id
    if in_reply_to:
        mail["In-Reply-To"] = in_reply_to
    if references:
        mail["References"] = " ".join(references)
    for name, value in (headers or {}).items():
        mail[name] = value
    mail.set_content(body)
    if html is not None:
        mail.add_alternative(html, subtype="html")
    for filename, content_type, content in attachments:
        maintype, subtype = content_type.split("/")
        mail.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return mail.as_bytes(policy=email.policy.SMTP)


def make_bounce(original_message_id: str, recipient: str, *, action: str = "failed") -> bytes:
    """A DSN (RFC 3464) as Postfix sends it when a recipient does not exist."""
    status = "5.1.1" if action == "failed" else "4.4.1"
    return f"""From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: support@support.example.org
Subject: Undelivered Mail Returned to Sender
Message-ID: <{uuid.uuid4().hex}@mx.example.net>
Date: Tue, 24 Nov 2026 10:05:00 +0100
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="DSN-BOUNDARY"

--DSN-BOUNDARY
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.net.
I'm sorry to have to inform you that your message could not be delivered.

--DSN-BOUNDARY
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
Arrival-Date: Tue, 24 Nov 2026 10:04:59 +0100

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Diagnostic-Code: smtp; 550 {status} <{recipient}>: Recipient address rejected: User unknown

--DSN-BOUNDARY
Content-Type: text/rfc822-headers

From: support@support.example.org
To: {recipient}
Subject: Your order
Message-ID: {original_message_id}

--DSN-BOUNDARY--
""".replace("\n", "\r\n").encode()


# -- running the ingestion in a test -----------------------------------------------------------

# Short timeouts so that failures are noticed within a test's patience.
FAST = ImapTiming(
    connect_timeout_s=3,
    read_timeout_s=3,
    idle_refresh_s=5,
    backoff_initial_s=0.1,
    backoff_max_s=1,
    publish_timeout_s=20,
)


@dataclass
class RunningIngestion:
    ingestion: EmailIngestion
    stop_event: asyncio.Event
    task: asyncio.Task

    @property
    def stats(self):
        [ingester] = self.ingestion.ingesters
        return ingester.stats

    async def stop(self) -> None:
        self.stop_event.set()
        await asyncio.wait_for(self.task, 30)


StartIngestion = Callable[..., Awaitable[RunningIngestion]]


@pytest.fixture
async def start_ingestion(hub_settings: Settings) -> AsyncIterator[StartIngestion]:
    running: list[RunningIngestion] = []

    async def start(*mailboxes: ImapMailbox, **options) -> RunningIngestion:
        await ensure_topics(hub_settings, hub_settings.kafka_bootstrap)
        options.setdefault("timing", FAST)
        hub = bootstrap(hub_settings)
        ingestion = EmailIngestion(
            list(mailboxes),
            # As the hub makes it, with this test's mailboxes and options.
            publisher=lambda: hub.publisher(client_id="switchboard-email"),
            deadletter_topic=hub_settings.deadletter_topic,
            data_dir=hub_settings.data_dir,
            **{"blobs": hub.blobs(), **options},
        )
        stop = asyncio.Event()
        handle = RunningIngestion(ingestion, stop, asyncio.create_task(ingestion.run(stop)))
        await ingestion.wait_started()
        running.append(handle)
        return handle

    yield start
    for handle in running:
        await handle.stop()


def timeline_of(settings: Settings, address: str):
    follower = timeline_follower(settings)
    view = bootstrap(settings).timeline_view()

    def entries():
        follower.catch_up()
        customer = view.customer_for_address(address)
        return [] if customer is None else view.timeline(customer)

    return entries, view
