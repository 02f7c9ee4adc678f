"""Run a single-node Apache Kafka 4.x broker (KRaft combined mode, loopback only) from Maven jars.

There is no Docker and no Kafka tarball: `deploy/kafka/pom.xml` copies the broker and its
runtime dependencies into a lib dir, and the broker runs as
`java -cp 'lib/*' kafka.Kafka server.properties` after a one-time `StorageTool format`.

Layout of a work dir:
    data/              log.dirs (KRaft metadata log + topic partitions)
    logs/stdout.log    JVM stdout/stderr (WARN and above, plus JVM crashes)
    logs/server.log    full broker log (log4j2.properties)
    logs/format.log    output of StorageTool format
    server.properties  rendered from deploy/kafka/server.properties
    kafka.pid          PID of the broker JVM
    ports.json         ports + cluster id, so a restart (keep_data=True) reuses the same address
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from contracts.errors import Unavailable
from deploy.ports import free_ports, port_in_use

log = logging.getLogger(__name__)

DEPLOY_DIR: Path = Path(__file__).resolve().parent / "kafka"  # package data: works installed too
POM_FILE = DEPLOY_DIR / "pom.xml"
CONFIG_TEMPLATE = DEPLOY_DIR / "server.properties"
# Always the .properties twin: jackson-dataformat-yaml arrives transitively in lib/, but a YAML
# config would make logging depend on jackson versions we do not control.
LOG4J_CONFIG = DEPLOY_DIR / "log4j2.properties"
DEFAULT_CACHE_ROOT = Path.home() / ".cache" / "switchboard" / "kafka-jars"

LOOPBACK = "127.0.0.1"
# Globs that must match in a usable lib dir (kafka-server-[0-9]: kafka-server-common doesn't count).
REQUIRED_JARS = ("kafka_2.13-*.jar", "kafka-server-[0-9]*.jar", "log4j-core-*.jar")
# From kafka-run-class.sh KAFKA_JVM_PERFORMANCE_OPTS.
JVM_PERF_OPTS = (
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:MaxInlineLevel=15",
    "-Djava.awt.headless=true",
)
MAVEN_TIMEOUT_S = 900.0  # a cold ~/.m2 downloads ~90 jars; a warm one takes ~10 s
LOG_TAIL_LINES = 40


class KafkaLaunchError(Unavailable, RuntimeError):
    """The broker could not be built, formatted, started or stopped.

    The first line of the message says what failed and where the log is; the log tail, if any,
    follows on the next lines (so a CLI can print just the first line).
    """

    def __init__(self, message: str, *, log_path: Path | None = None, log_tail: str = "") -> None:
        self.log_path = log_path
        self.log_tail = log_tail
        text = message if log_path is None else f"{message}; log: {log_path}"
        if log_tail:
            text = f"{text}\n{log_tail}"
        super().__init__(text)


# --------------------------------------------------------------------------- jars


def pom_hash(pom: Path = POM_FILE) -> str:
    """Cache key of a lib dir: the first 16 hex chars of sha256(pom.xml)."""
    return hashlib.sha256(pom.read_bytes()).hexdigest()[:16]


def missing_jars(lib_dir: Path) -> list[str]:
    """The REQUIRED_JARS globs with no match in lib_dir (all of them if it does not exist)."""
    if not lib_dir.is_dir():
        return list(REQUIRED_JARS)
    return [pattern for pattern in REQUIRED_JARS if not any(lib_dir.glob(pattern))]


def _run_maven(build_dir: Path, *, quiet: bool) -> None:
    """Run `mvn -B [-q] package` in build_dir (which holds a copy of pom.xml) -> build_dir/lib."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaLaunchError("mvn not found on PATH; it is needed once to fetch the Kafka jars")
    cmd = [mvn, "-B", *(["-q"] if quiet else []), "package"]
    log.info("fetching Kafka jars: %s (in %s)", " ".join(cmd), build_dir)
    try:
        proc = subprocess.run(
            cmd,
            cwd=build_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=MAVEN_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise KafkaLaunchError(f"mvn package timed out after {MAVEN_TIMEOUT_S:.0f} s") from exc
    if not quiet and proc.stdout:
        log.info("mvn output:\n%s", proc.stdout)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-LOG_TAIL_LINES:])
        raise KafkaLaunchError(
            f"mvn package failed with exit code {proc.returncode} in {build_dir}", log_tail=tail
        )


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive flock, so parallel test sessions do not run Maven twice for the same pom."""
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def jars_cached(*, cache_root: Path | None = None, pom: Path | None = None) -> bool:
    """Whether the broker jars for this pom are in the cache already (no download needed)."""
    root = cache_root or DEFAULT_CACHE_ROOT
    return not missing_jars(root / pom_hash(pom or POM_FILE) / "lib")


def ensure_jars(
    *, quiet: bool = True, cache_root: Path | None = None, pom: Path | None = None
) -> Path:
    """Return a lib dir with the broker jars, running `mvn -B -q package` only when needed.

    Jars live in <cache_root>/<hash16>/lib (default root ~/.cache/switchboard/kafka-jars), keyed
    by sha256 of pom.xml, so editing the pom (e.g. the Kafka version) builds a new cache entry.
    Maven writes into a temp dir next to the entry, which is renamed into place only after the
    key jars are verified: a crash never leaves a half-filled entry behind.
    """
    pom = pom or POM_FILE
    root = cache_root or DEFAULT_CACHE_ROOT
    key = pom_hash(pom)
    entry = root / key
    lib_dir = entry / "lib"
    if not missing_jars(lib_dir):
        return lib_dir

    root.mkdir(parents=True, exist_ok=True)
    with _file_lock(root / f".{key}.lock"):
        if not missing_jars(lib_dir):  # another process built it while we waited for the lock
            return lib_dir
        build_dir = Path(tempfile.mkdtemp(prefix=f".{key}-build-", dir=root))
        try:
            shutil.copy2(pom, build_dir / "pom.xml")
            started = time.monotonic()
            _run_maven(build_dir, quiet=quiet)
            missing = missing_jars(build_dir / "lib")
            if missing:
                raise KafkaLaunchError(
                    f"mvn package did not produce {', '.join(missing)} in {build_dir / 'lib'}"
                )
            if entry.exists():  # an incomplete entry (someone deleted jars): replace it whole
                shutil.rmtree(entry)
            build_dir.rename(entry)
            log.info(
                "Kafka jars cached in %s (%d jars, %.1f s)",
                lib_dir,
                len(list(lib_dir.glob("*.jar"))),
                time.monotonic() - started,
            )
        finally:
            shutil.rmtree(build_dir, ignore_errors=True)  # no-op after a successful rename
    return lib_dir


# --------------------------------------------------------------------------- config


def set_properties(text: str, values: dict[str, str]) -> str:
    """Set keys in a .properties text: replace each active `key=...` line, append missing keys.

    Commented-out lines are left alone, so the template's documentation survives.
    """
    remaining = dict(values)
    out: list[str] = []
    for line in text.splitlines():
        key = line.split("=", 1)[0].strip() if "=" in line else ""
        if key in values and not line.lstrip().startswith(("#", "!")):
            if key in remaining:
                out.append(f"{key}={remaining.pop(key)}")
            # a repeated key would override ours (last one wins in java.util.Properties): drop it
            continue
        out.append(line)
    if remaining:
        out.append("")
        out.append("# Added by deploy/kafka_local.py")
        out.extend(f"{key}={value}" for key, value in remaining.items())
    return "\n".join(out) + "\n"


def parse_properties(text: str) -> dict[str, str]:
    """The active key=value pairs of a .properties text (enough for our own files)."""
    props: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "!")) or "=" not in stripped:
            continue
        key, value = stripped.split("=", 1)
        props[key.strip()] = value.strip()
    return props


def render_config(template: str, *, port: int, controller_port: int, data_dir: Path) -> str:
    """Render server.properties for one broker: loopback listeners, the given ports, data dir."""
    broker = f"PLAINTEXT://{LOOPBACK}:{port}"
    controller = f"CONTROLLER://{LOOPBACK}:{controller_port}"
    values = {
        "listeners": f"{broker},{controller}",
        "advertised.listeners": f"{broker},{controller}",
        "log.dirs": str(data_dir),
    }
    if "controller.quorum.voters" in parse_properties(template):
        # static quorum (formatted without --standalone)
        values["controller.quorum.voters"] = f"1@{LOOPBACK}:{controller_port}"
    else:
        # dynamic quorum (KIP-853, formatted with --standalone)
        values["controller.quorum.bootstrap.servers"] = f"{LOOPBACK}:{controller_port}"
    return set_properties(template, values)


def new_cluster_id() -> str:
    """A cluster id as Kafka's Uuid.randomUuid() makes it: 16 random bytes, URL-safe base64.

    Like Kafka, never one that starts with "-": StorageTool's argument parser would take
    `--cluster-id -abc...` for an option (1 in 64 random ids).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


# --------------------------------------------------------------------------- readiness probe
# A TCP connect is not enough to call the broker ready, and a port could belong to another
# broker: ask it for its metadata (cluster id and broker list) with aiokafka's admin client.


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


def probe_broker(port: int, timeout: float = 2.0) -> tuple[str | None, list[tuple[int, str, int]]]:
    """Ask the broker on 127.0.0.1:port for (cluster id, [(node id, host, port)]).

    Raises OSError/ValueError when it is not (yet) answering.  Runs its own event loop in a
    worker thread, so it works from sync code whether or not the caller has a loop running.
    """

    async def describe() -> dict:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=f"{LOOPBACK}:{port}",
            client_id="switchboard-probe",
            request_timeout_ms=int(timeout * 1000),
        )
        try:
            await asyncio.wait_for(admin.start(), timeout)
            return await asyncio.wait_for(admin.describe_cluster(), timeout)
        finally:
            await admin.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        try:
            info = pool.submit(asyncio.run, describe()).result()
        except (KafkaError, TimeoutError) as exc:
            raise ValueError(f"broker not answering metadata requests: {exc!r}") from exc
    brokers = [(b["node_id"], b["host"], b["port"]) for b in info["brokers"]]
    return info.get("cluster_id"), brokers


# --------------------------------------------------------------------------- process helpers


def _pid_is_broker(pid: int, config_file: Path) -> bool:
    """True if pid is alive and is the Kafka JVM of config_file.

    Guards against PID reuse after a crash: a stale pid file must never make us signal some
    other process, not even another test's broker.
    """
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # A zombie (state Z) has exited but was not reaped yet: not running.
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state != "Z" and b"kafka.Kafka" in argv and os.fsencode(config_file) in argv


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --------------------------------------------------------------------------- the broker


@dataclass
class LocalKafka:
    """One broker JVM owned by this process (or attached to by work dir), stopped by PID."""

    work_dir: Path
    port: int | None = None  # None -> a free loopback port (or the one in ports.json on restart)
    controller_port: int | None = None
    heap: str = "-Xms256m -Xmx512m"
    keep_data: bool = False  # True: reuse a formatted data dir (restart keeps topics/offsets)
    java: str = "java"
    start_timeout: float = 90.0
    cache_root: Path | None = None  # jar cache root for ensure_jars (None -> ~/.cache/...)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _pid: int | None = field(default=None, init=False, repr=False)
    _cluster_id: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.work_dir = Path(self.work_dir).resolve()

    # -- paths
    @property
    def data_dir(self) -> Path:
        return self.work_dir / "data"

    @property
    def logs_dir(self) -> Path:
        return self.work_dir / "logs"

    @property
    def config_file(self) -> Path:
        return self.work_dir / "server.properties"

    @property
    def pid_file(self) -> Path:
        return self.work_dir / "kafka.pid"

    @property
    def ports_file(self) -> Path:
        return self.work_dir / "ports.json"

    @property
    def stdout_log(self) -> Path:
        return self.logs_dir / "stdout.log"

    @property
    def bootstrap(self) -> str:
        if self.port is None:
            raise KafkaLaunchError(f"broker in {self.work_dir} has no port yet (not started)")
        return f"{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def cluster_id(self) -> str | None:
        return self._cluster_id

    # -- lifecycle
    @classmethod
    def attach(cls, work_dir: Path) -> LocalKafka:
        """A handle on the broker of an existing work dir (ports.json + kafka.pid), for the CLI."""
        kafka = cls(work_dir=Path(work_dir), keep_data=True)
        try:
            state = json.loads(kafka.ports_file.read_text())
        except (OSError, ValueError) as exc:
            raise KafkaLaunchError(f"no broker state in {kafka.work_dir}: {exc}") from exc
        kafka.port = int(state["port"])
        kafka.controller_port = int(state["controller_port"])
        kafka._cluster_id = state.get("cluster_id")
        kafka._pid = kafka._read_pid()
        return kafka

    def is_running(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        pid = self._pid if self._pid is not None else self._read_pid()
        return pid is not None and _pid_is_broker(pid, self.config_file)

    def start(self) -> LocalKafka:
        """Find/build the jars, render the config, format if needed, spawn the JVM, wait for it."""
        if self.is_running():
            if self._proc is not None or self._pid is not None:  # our own or attached broker
                log.info("Kafka already running: pid %s on %s", self._pid, self.bootstrap)
                return self
            raise KafkaLaunchError(
                f"a broker from {self.work_dir} is already running (pid {self._read_pid()}); "
                "stop it first"
            )
        lib_dir = ensure_jars(cache_root=self.cache_root)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(exist_ok=True)
        reuse = self.keep_data and (self.data_dir / "meta.properties").is_file()
        self._choose_ports(reuse)
        assert self.port is not None and self.controller_port is not None
        for port in (self.port, self.controller_port):
            if port_in_use(port):
                raise KafkaLaunchError(f"port {LOOPBACK}:{port} is already in use")

        self.config_file.write_text(
            render_config(
                CONFIG_TEMPLATE.read_text(),
                port=self.port,
                controller_port=self.controller_port,
                data_dir=self.data_dir,
            )
        )
        started = time.monotonic()
        if reuse:
            log.info("reusing formatted data dir %s", self.data_dir)
        else:
            self._format(lib_dir)
        self._cluster_id = parse_properties((self.data_dir / "meta.properties").read_text()).get(
            "cluster.id"
        )
        self.ports_file.write_text(
            json.dumps(
                {
                    "port": self.port,
                    "controller_port": self.controller_port,
                    "bootstrap": self.bootstrap,
                    "cluster_id": self._cluster_id,
                },
                indent=2,
            )
            + "\n"
        )
        self._spawn(lib_dir)
        try:
            self._wait_ready(started)
        except BaseException:
            # includes KeyboardInterrupt: never leave a half-started JVM behind
            self.kill()
            raise
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (controlled shutdown), wait up to timeout, then SIGKILL. Idempotent."""
        self._signal_and_wait(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL the broker at once (crash tests): no controlled shutdown."""
        self._signal_and_wait(signal.SIGKILL, 10.0)

    # -- internals
    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _choose_ports(self, reuse: bool) -> None:
        saved: dict[str, int] = {}
        if reuse and self.ports_file.is_file():
            with contextlib.suppress(OSError, ValueError):
                saved = json.loads(self.ports_file.read_text())
        for name in ("port", "controller_port"):
            wanted, previous = getattr(self, name), saved.get(name)
            if wanted is None and previous is not None:
                setattr(self, name, int(previous))
            elif wanted is not None and previous is not None and wanted != previous:
                # Works (seen with the dynamic quorum); clients holding the old address are lost.
                log.warning("%s %s differs from %s in %s", name, wanted, previous, self.ports_file)
        if self.port is None or self.controller_port is None:
            picked = free_ports(2)
            self.port = self.port or picked[0]
            self.controller_port = self.controller_port or picked[1]

    def _jvm(self, lib_dir: Path, *args: str) -> list[str]:
        return [
            self.java,
            *self.heap.split(),
            *JVM_PERF_OPTS,
            f"-Dkafka.logs.dir={self.logs_dir}",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-cp",
            f"{lib_dir}/*",  # the JVM expands the wildcard itself
            *args,
        ]

    def _format(self, lib_dir: Path) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.data_dir.mkdir(parents=True)
        standalone = "controller.quorum.voters" not in parse_properties(
            self.config_file.read_text()
        )
        cmd = self._jvm(
            lib_dir,
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            new_cluster_id(),
            "--config",
            str(self.config_file),
            *(["--standalone"] if standalone else []),
        )
        format_log = self.logs_dir / "format.log"
        started = time.monotonic()
        with format_log.open("wb") as out:
            try:
                proc = subprocess.run(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=self.start_timeout,
                    check=False,
                )
            except FileNotFoundError as exc:
                raise KafkaLaunchError(f"java executable {self.java!r} not found") from exc
            except subprocess.TimeoutExpired as exc:
                raise KafkaLaunchError(
                    f"kafka storage format timed out after {self.start_timeout:.0f} s",
                    log_path=format_log,
                    log_tail=_tail(format_log),
                ) from exc
        if proc.returncode != 0:
            raise KafkaLaunchError(
                f"kafka storage format failed with exit code {proc.returncode}",
                log_path=format_log,
                log_tail=_tail(format_log),
            )
        log.info("formatted %s in %.1f s", self.data_dir, time.monotonic() - started)

    def _spawn(self, lib_dir: Path) -> None:
        cmd = self._jvm(lib_dir, "kafka.Kafka", str(self.config_file))
        with self.stdout_log.open("ab") as out:
            try:
                # Own session: Ctrl-C in a terminal (or pytest's SIGINT) does not hit the JVM;
                # we stop it ourselves, by PID.
                self._proc = subprocess.Popen(
                    cmd,
                    cwd=self.work_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except FileNotFoundError as exc:
                raise KafkaLaunchError(f"java executable {self.java!r} not found") from exc
        self._pid = self._proc.pid
        self.pid_file.write_text(f"{self._pid}\n")
        log.info(
            "spawned Kafka broker pid %s on %s (work dir %s)",
            self._pid,
            self.bootstrap,
            self.work_dir,
        )

    def _wait_ready(self, started: float) -> None:
        assert self._proc is not None and self.port is not None
        deadline = time.monotonic() + self.start_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                raise KafkaLaunchError(
                    f"Kafka broker exited during startup with code {code}",
                    log_path=self.stdout_log,
                    log_tail=_tail(self.stdout_log),
                )
            if not _accepts_connections(self.port):
                time.sleep(0.1)  # not listening yet: no point asking (and logging) aiokafka
                continue
            try:
                cluster_id, brokers = probe_broker(self.port, timeout=2.0)
            except (OSError, ValueError) as exc:
                last_error = exc
            else:
                if cluster_id != self._cluster_id:
                    # someone else's broker answers on our port
                    raise KafkaLaunchError(
                        f"{self.bootstrap} answers with cluster id {cluster_id}, "
                        f"expected {self._cluster_id}",
                        log_path=self.stdout_log,
                    )
                if any(port == self.port for _, _, port in brokers):
                    log.info(
                        "Kafka broker up on %s after %.1f s (pid %s)",
                        self.bootstrap,
                        time.monotonic() - started,
                        self._pid,
                    )
                    return
                last_error = ValueError(f"broker list {brokers} lacks port {self.port}")
            time.sleep(0.1)
        raise KafkaLaunchError(
            f"Kafka broker not ready on {self.bootstrap} after {self.start_timeout:.0f} s "
            f"(last probe: {last_error})",
            log_path=self.stdout_log,
            log_tail=_tail(self.stdout_log),
        )

    def _signal_and_wait(self, sig: signal.Signals, timeout: float) -> None:
        pid = self._pid if self._pid is not None else self._read_pid()
        if pid is not None and self.is_running():
            log.info("sending %s to Kafka broker pid %s", sig.name, pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            if not self._wait_exit(pid, timeout):
                log.warning("Kafka broker pid %s still alive after %.0f s: SIGKILL", pid, timeout)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                if not self._wait_exit(pid, 10.0):
                    raise KafkaLaunchError(f"Kafka broker pid {pid} survived SIGKILL")
        elif self._proc is not None:
            self._proc.poll()  # reap a JVM that died on its own
        self._proc = None
        self._pid = None
        # Only remove the pid file if it is ours: another start may have rewritten it.
        if pid is not None and self._read_pid() == pid:
            self.pid_file.unlink(missing_ok=True)

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        if self._proc is not None:
            try:
                self._proc.wait(timeout)  # also reaps our child, so no zombie stays behind
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _pid_is_broker(pid, self.config_file):
                return True
            time.sleep(0.1)
        return not _pid_is_broker(pid, self.config_file)
