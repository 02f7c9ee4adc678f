"""The command line follows the conventions: --help, exit codes, clear one-line errors."""

from __future__ import annotations

from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from services.bootstrap.cli import app

runner = CliRunner()


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("up", "serve", "timeline", "lookup", "simulate", "send", "kafka"):
        assert command in result.output


def test_unknown_address_exits_1_with_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["timeline", "+493099999999"], env={"SWITCHBOARD_DATA_DIR": str(tmp_path)}
    )
    assert result.exit_code == 1
    assert "no customer has the address +493099999999" in result.output


def test_an_invalid_recipient_is_refused_before_anything_is_published(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["send", "--channel", "sms", "--to", "hello", "--body", "x"],
        env={"SWITCHBOARD_KAFKA_BOOTSTRAP": "127.0.0.1:1"},
    )
    assert result.exit_code == 1
    assert "is not a phone number" in result.output


def test_serve_rejects_an_unknown_service() -> None:
    result = runner.invoke(app, ["serve", "fax"], env={"SWITCHBOARD_KAFKA_BOOTSTRAP": "x:1"})
    assert result.exit_code == 2


def test_an_unknown_customer_id_exits_1_like_the_api_answers_404(tmp_path: Path) -> None:
    for command in ("timeline", "lookup"):
        result = runner.invoke(
            app,
            [command, "5f0c1d2e-3a4b-4c5d-8e6f-7a8b9c0d1e2f"],
            env={"SWITCHBOARD_DATA_DIR": str(tmp_path)},
        )
        assert result.exit_code == 1, result.output
        assert "no customer 5f0c1d2e-3a4b-4c5d-8e6f-7a8b9c0d1e2f" in result.output
        assert "Traceback" not in result.output


def test_an_unreachable_broker_is_one_line_saying_how_to_start_it(tmp_path: Path) -> None:
    env = {
        "SWITCHBOARD_KAFKA_BOOTSTRAP": "127.0.0.1:1",
        "SWITCHBOARD_DATA_DIR": str(tmp_path),
        "SWITCHBOARD_TELEGRAM_BOT_TOKEN": "123:abc",
        "SWITCHBOARD_TELEGRAM_SECRET_TOKEN": "s3cret",
    }
    for args in (
        ["send", "--channel", "telegram", "--to", "telegram:4711", "--body", "x"],
        ["simulate", "--duration", "1"],
    ):
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 1, result.output
        assert "Kafka is not reachable at 127.0.0.1:1" in result.output
        assert "make up" in result.output
        assert "Traceback" not in result.output


def test_send_on_a_channel_without_credentials_is_refused_before_anything_is_queued(
    tmp_path: Path,
) -> None:
    result = runner.invoke(
        app,
        ["send", "--channel", "sms", "--to", "+493012345678", "--body", "x"],
        env={"SWITCHBOARD_KAFKA_BOOTSTRAP": "127.0.0.1:1", "SWITCHBOARD_DATA_DIR": str(tmp_path)},
    )
    assert result.exit_code == 1, result.output
    assert "the hub has no sender for sms" in result.output
    assert "queued command" not in result.output


def test_a_coordinator_that_is_still_starting_is_not_logged_as_an_error() -> None:
    import logging

    from services.bootstrap.logs import ExpectedKafkaChatter

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("aiokafka", logging.ERROR, __file__, 1, message, None, None)

    chatter = ExpectedKafkaChatter()
    normal = record(
        "Group Coordinator Request failed: [Error 15] GroupCoordinatorNotAvailableError"
    )
    assert not chatter.filter(normal)  # hidden unless the root logger shows DEBUG
    assert chatter.filter(record("Unexpected error in coordinator routine"))


def test_a_wrong_setting_is_one_line_naming_it_not_a_traceback(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    mailbox = {"name": "support", "host": "imap.example.com", "user": "support@example.com"}
    env = {
        **os.environ,
        "SWITCHBOARD_DATA_DIR": str(tmp_path),
        "SWITCHBOARD_KAFKA_BOOTSTRAP": "127.0.0.1:1",
        "SWITCHBOARD_EMAIL_MAILBOXES": json.dumps([mailbox]),
    }
    result = subprocess.run(
        [sys.executable, "-m", "services", "serve", "email"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert "mailbox 'support': set password or password_file" in result.stderr
    assert "Traceback" not in result.stderr


def test_simulate_names_its_seed_and_says_what_a_replay_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deploy.simulator import SimulationResult
    from services.bootstrap import cli

    def run(kafka: str, work: Coroutine[Any, Any, Any]) -> SimulationResult:
        work.close()  # no broker here: what the simulator would have reported
        return SimulationResult(published=100, seconds=1.0, retries=2, malformed=1, seed=42)

    monkeypatch.setattr(cli, "_with_kafka", run)
    env = {"SWITCHBOARD_KAFKA_BOOTSTRAP": "127.0.0.1:1", "SWITCHBOARD_DATA_DIR": str(tmp_path)}
    new = runner.invoke(app, ["simulate", "--duration", "1"], env=env)
    assert new.exit_code == 0, new.output
    said = " ".join(new.output.split())  # rich wraps lines
    assert "with seed 42 (`--seed 42` replays this run)" in said
    assert "97 new contacts, 2 provider retries" in said
    replay = runner.invoke(app, ["simulate", "--duration", "1", "--seed", "42"], env=env)
    assert replay.exit_code == 0, replay.output
    said = " ".join(replay.output.split())
    assert "new contacts" not in said  # not if an earlier run already published them
    assert "already published are provider retries" in said
