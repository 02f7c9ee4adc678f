"""Fast tests of the Kafka launcher: config rendering, jar cache, state files. No JVM, no Maven."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deploy import kafka_local
from deploy.kafka_local import (
    CONFIG_TEMPLATE,
    KafkaLaunchError,
    LocalKafka,
    ensure_jars,
    missing_jars,
    new_cluster_id,
    parse_properties,
    pom_hash,
    render_config,
    set_properties,
)
from deploy.ports import ephemeral_range, free_ports
from services.bootstrap.kafka_cli import kafka_app

# --------------------------------------------------------------------------- config


def test_render_config_binds_loopback_only_with_given_ports(tmp_path: Path) -> None:
    rendered = render_config(
        CONFIG_TEMPLATE.read_text(), port=31001, controller_port=31002, data_dir=tmp_path / "data"
    )
    props = parse_properties(rendered)

    assert props["listeners"] == "PLAINTEXT://127.0.0.1:31001,CONTROLLER://127.0.0.1:31002"
    assert props["advertised.listeners"] == props["listeners"]
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:31002"
    assert props["log.dirs"] == str(tmp_path / "data")
    # every host:port in the active config is loopback, and the template's ports are gone
    endpoints = re.findall(
        r"(?:://|=|,)([\w.\-]+):(\d+)", "\n".join(f"{k}={v}" for k, v in props.items())
    )
    assert endpoints and {host for host, _ in endpoints} == {"127.0.0.1"}
    assert {int(port) for _, port in endpoints} == {31001, 31002}


def test_render_config_keeps_test_friendly_settings(tmp_path: Path) -> None:
    props = parse_properties(
        render_config(CONFIG_TEMPLATE.read_text(), port=1, controller_port=2, data_dir=tmp_path)
    )
    assert props["process.roles"] == "broker,controller"
    assert props["offsets.topic.num.partitions"] == "1"
    assert props["transaction.state.log.num.partitions"] == "1"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["group.min.session.timeout.ms"] == "1000"
    assert int(props["broker.heartbeat.interval.ms"]) < int(props["broker.session.timeout.ms"])


def test_render_config_static_quorum_rewrites_voters(tmp_path: Path) -> None:
    template = (
        "process.roles=broker,controller\n"
        "controller.quorum.voters=1@10.0.0.1:9093\n"
        "listeners=PLAINTEXT://0.0.0.0:9092,CONTROLLER://0.0.0.0:9093\n"
        "log.dirs=/var/lib/kafka\n"
    )
    props = parse_properties(
        render_config(template, port=4001, controller_port=4002, data_dir=tmp_path)
    )
    assert props["controller.quorum.voters"] == "1@127.0.0.1:4002"
    assert "controller.quorum.bootstrap.servers" not in props
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:4001,CONTROLLER://127.0.0.1:4002"
    # advertised.listeners was missing from the template: appended, still loopback
    assert props["advertised.listeners"] == props["listeners"]


def test_set_properties_replaces_active_lines_keeps_comments_and_appends() -> None:
    text = "# listeners=PLAINTEXT://0.0.0.0:1\nlisteners=old\na=1\nlisteners=dup\n"
    out = set_properties(text, {"listeners": "new", "b": "2"})
    lines = out.splitlines()
    assert lines[0] == "# listeners=PLAINTEXT://0.0.0.0:1"  # comments untouched
    assert lines.count("listeners=new") == 1
    assert "listeners=dup" not in lines  # a later duplicate would override ours
    assert parse_properties(out) == {"listeners": "new", "a": "1", "b": "2"}


# --------------------------------------------------------------------------- jar cache

FAKE_JARS = (
    "kafka_2.13-4.4.0.jar",
    "kafka-server-4.4.0.jar",
    "kafka-server-common-4.4.0.jar",
    "log4j-core-2.24.3.jar",
)


def _fake_pom(tmp_path: Path, text: str = "<project/>") -> Path:
    pom = tmp_path / "pom.xml"
    pom.write_text(text)
    return pom


def test_pom_hash_is_16_hex_of_sha256_and_tracks_content(tmp_path: Path) -> None:
    pom = _fake_pom(tmp_path)
    first = pom_hash(pom)
    assert re.fullmatch(r"[0-9a-f]{16}", first)
    assert pom_hash(pom) == first
    pom.write_text("<project><!-- 4.3.1 --></project>")
    assert pom_hash(pom) != first
    assert re.fullmatch(r"[0-9a-f]{16}", pom_hash())  # the real deploy/kafka/pom.xml


def test_missing_jars_needs_the_server_jar_not_just_server_common(tmp_path: Path) -> None:
    assert missing_jars(tmp_path / "absent") == list(kafka_local.REQUIRED_JARS)
    for name in ("kafka_2.13-4.4.0.jar", "kafka-server-common-4.4.0.jar", "log4j-core-2.24.3.jar"):
        (tmp_path / name).touch()
    assert missing_jars(tmp_path) == ["kafka-server-[0-9]*.jar"]
    (tmp_path / "kafka-server-4.4.0.jar").touch()
    assert missing_jars(tmp_path) == []


def test_ensure_jars_reuses_complete_cache_without_maven(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pom = _fake_pom(tmp_path)
    lib = tmp_path / "cache" / pom_hash(pom) / "lib"
    lib.mkdir(parents=True)
    for name in FAKE_JARS:
        (lib / name).touch()

    def no_maven(build_dir: Path, *, quiet: bool) -> None:
        raise AssertionError("maven must not run for a complete cache entry")

    monkeypatch.setattr(kafka_local, "_run_maven", no_maven)
    assert ensure_jars(cache_root=tmp_path / "cache", pom=pom) == lib


def test_ensure_jars_builds_in_temp_dir_then_renames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pom = _fake_pom(tmp_path)
    root = tmp_path / "cache"
    calls: list[Path] = []

    def fake_maven(build_dir: Path, *, quiet: bool) -> None:
        calls.append(build_dir)
        assert quiet
        assert (build_dir / "pom.xml").read_text() == "<project/>"  # builds from a copy
        assert not (root / pom_hash(pom)).exists()  # nothing visible under the key yet
        (build_dir / "lib").mkdir()
        for name in FAKE_JARS:
            (build_dir / "lib" / name).touch()

    monkeypatch.setattr(kafka_local, "_run_maven", fake_maven)
    lib = ensure_jars(cache_root=root, pom=pom)

    assert lib == root / pom_hash(pom) / "lib"
    assert sorted(p.name for p in lib.iterdir()) == sorted(FAKE_JARS)
    assert calls and calls[0].parent == root and calls[0].name.startswith(".")
    assert not calls[0].exists()  # renamed away
    # second call: cached, no second build
    assert ensure_jars(cache_root=root, pom=pom) == lib
    assert len(calls) == 1


@pytest.mark.parametrize("produced", [(), ("kafka_2.13-4.4.0.jar", "log4j-core-2.24.3.jar")])
def test_ensure_jars_failed_build_leaves_no_cache_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, produced: tuple[str, ...]
) -> None:
    pom = _fake_pom(tmp_path)
    root = tmp_path / "cache"

    def broken_maven(build_dir: Path, *, quiet: bool) -> None:
        (build_dir / "lib").mkdir()
        for name in produced:
            (build_dir / "lib" / name).touch()
        if not produced:
            raise KafkaLaunchError("mvn package failed with exit code 1")

    monkeypatch.setattr(kafka_local, "_run_maven", broken_maven)
    with pytest.raises(KafkaLaunchError):
        ensure_jars(cache_root=root, pom=pom)
    leftovers = [p.name for p in root.iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []  # no entry, no half-filled temp dir


def test_ensure_jars_replaces_an_incomplete_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pom = _fake_pom(tmp_path)
    root = tmp_path / "cache"
    stale = root / pom_hash(pom) / "lib"
    stale.mkdir(parents=True)
    (stale / "kafka_2.13-4.4.0.jar").touch()  # someone deleted the rest

    def fake_maven(build_dir: Path, *, quiet: bool) -> None:
        (build_dir / "lib").mkdir()
        for name in FAKE_JARS:
            (build_dir / "lib" / name).touch()

    monkeypatch.setattr(kafka_local, "_run_maven", fake_maven)
    lib = ensure_jars(cache_root=root, pom=pom)
    assert lib == stale and missing_jars(lib) == []


# --------------------------------------------------------------------------- ids, ports, state


def test_new_cluster_id_is_kafka_uuid_shaped_and_never_starts_with_dash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    draws = iter([b"\xf8" + bytes(15), bytes(16)])  # 0xf8 encodes to a leading "-"
    monkeypatch.setattr(kafka_local.os, "urandom", lambda n: next(draws))
    assert new_cluster_id() == "A" * 22
    monkeypatch.undo()
    for _ in range(200):
        cluster_id = new_cluster_id()
        assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", cluster_id)


def test_free_ports_are_distinct_bindable_and_outside_the_ephemeral_range() -> None:
    ports = free_ports(2)
    assert len(set(ports)) == 2
    low, high = ephemeral_range()
    assert not any(low <= port <= high for port in ports), "a client socket could take it"
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_attach_reads_state_and_ignores_a_reused_pid(tmp_path: Path) -> None:
    (tmp_path / "ports.json").write_text(
        json.dumps({"port": 31001, "controller_port": 31002, "cluster_id": "abc"})
    )
    (tmp_path / "kafka.pid").write_text(f"{os.getpid()}\n")  # alive, but not a Kafka JVM
    kafka = LocalKafka.attach(tmp_path)
    assert kafka.bootstrap == "127.0.0.1:31001"
    assert (kafka.port, kafka.controller_port, kafka.cluster_id) == (31001, 31002, "abc")
    assert kafka.keep_data
    assert not kafka.is_running()
    kafka.stop()  # nothing to stop: must not signal pytest itself
    assert not (tmp_path / "kafka.pid").exists()


def test_attach_matches_the_pid_to_this_work_dirs_config(tmp_path: Path) -> None:
    """A process whose argv looks like our broker counts as running, and stop() ends it by PID;
    a 'kafka.Kafka' process for another config does not count (PID reuse guard)."""
    (tmp_path / "ports.json").write_text(json.dumps({"port": 31001, "controller_port": 31002}))
    sleeper = "import time; time.sleep(30)"
    other = subprocess.Popen(
        [sys.executable, "-c", sleeper, "kafka.Kafka", str(tmp_path / "elsewhere.properties")]
    )
    ours = subprocess.Popen(
        [sys.executable, "-c", sleeper, "kafka.Kafka", str(tmp_path / "server.properties")]
    )
    try:
        (tmp_path / "kafka.pid").write_text(f"{other.pid}\n")
        assert not LocalKafka.attach(tmp_path).is_running()

        (tmp_path / "kafka.pid").write_text(f"{ours.pid}\n")
        kafka = LocalKafka.attach(tmp_path)
        deadline = time.monotonic() + 5  # a loaded machine may show the new argv late
        while not kafka.is_running() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert kafka.is_running()
        kafka.stop(timeout=5)
        assert ours.wait(5) == -signal.SIGTERM
        assert not kafka.is_running()
        assert not (tmp_path / "kafka.pid").exists()
        assert other.poll() is None  # untouched
    finally:
        for proc in (other, ours):
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)


def test_attach_without_state_raises(tmp_path: Path) -> None:
    with pytest.raises(KafkaLaunchError, match="no broker state"):
        LocalKafka.attach(tmp_path)


def test_stop_and_kill_are_idempotent_without_a_broker(tmp_path: Path) -> None:
    kafka = LocalKafka(work_dir=tmp_path)
    kafka.stop()
    kafka.kill()
    assert not kafka.is_running()
    with pytest.raises(KafkaLaunchError):
        _ = kafka.bootstrap  # no port before start


def test_launch_error_first_line_names_the_log(tmp_path: Path) -> None:
    err = KafkaLaunchError("broker died", log_path=tmp_path / "stdout.log", log_tail="a\nb")
    first, *rest = str(err).splitlines()
    assert first == f"broker died; log: {tmp_path / 'stdout.log'}"
    assert rest == ["a", "b"]


# --------------------------------------------------------------------------- CLI without a broker


def test_cli_status_and_stop_without_a_broker(tmp_path: Path) -> None:
    runner = CliRunner()
    status = runner.invoke(kafka_app, ["status", "--work-dir", str(tmp_path)])
    assert status.exit_code == 1
    stop = runner.invoke(kafka_app, ["stop", "--work-dir", str(tmp_path)])
    assert stop.exit_code == 0
    assert "not running" in stop.output


def test_cli_defaults_are_switchboard_ups_from_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`kafka start|status` without options find the broker `switchboard up` starts."""
    from services.bootstrap import kafka_cli

    monkeypatch.setenv("SWITCHBOARD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SWITCHBOARD_LOCAL_KAFKA_PORT", "31500")
    runner = CliRunner()
    status = runner.invoke(kafka_app, ["status"])
    assert status.exit_code == 1
    assert f"work dir {tmp_path / 'kafka'}" in status.output

    started: dict[str, object] = {}

    class Launcher:
        def __init__(self, **kwargs: object) -> None:
            started.update(kwargs)

        @staticmethod
        def attach(work_dir: Path) -> None:
            raise KafkaLaunchError(f"nothing in {work_dir}")

        def start(self) -> None:
            raise KafkaLaunchError("stop here")

    monkeypatch.setattr(kafka_cli, "LocalKafka", Launcher)
    start = runner.invoke(kafka_app, ["start"])
    assert (start.exit_code, start.output) == (1, "error: stop here\n")
    assert started == {
        "work_dir": tmp_path / "kafka",
        "port": 31500,
        "controller_port": 31501,
        "keep_data": True,
    }
