"""The settings as an operator gives them: a secret from a file (``*_FILE``), one line naming
the variable for every mistake, and ``switchboard config check`` showing what is in force
with the secrets masked."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from contracts.errors import ConfigError
from services.bootstrap.cli import app
from services.bootstrap.settings import load_settings

runner = CliRunner()
TOKEN = "a-cti-token-long-enough-for-the-check"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("SWITCHBOARD_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SWITCHBOARD_DATA_DIR", str(tmp_path / "var"))


def test_a_secret_and_the_store_url_come_from_files_without_their_newline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "cti").write_text(TOKEN + "\n")
    (tmp_path / "store").write_text("postgresql://sb:s3cret@db:5432/switchboard\n")
    monkeypatch.setenv("SWITCHBOARD_CTI_TOKEN_FILE", str(tmp_path / "cti"))
    monkeypatch.setenv("SWITCHBOARD_STORE_FILE", str(tmp_path / "store"))
    settings = load_settings()
    assert settings.cti_token is not None and settings.cti_token.get_secret_value() == TOKEN
    assert settings.store == "postgresql://sb:s3cret@db:5432/switchboard"


def test_a_secret_given_twice_or_from_a_missing_file_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SWITCHBOARD_CTI_TOKEN_FILE", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="SWITCHBOARD_CTI_TOKEN_FILE: cannot read"):
        load_settings()
    (tmp_path / "cti").write_text(TOKEN)
    monkeypatch.setenv("SWITCHBOARD_CTI_TOKEN_FILE", str(tmp_path / "cti"))
    monkeypatch.setenv("SWITCHBOARD_CTI_TOKEN", TOKEN)
    with pytest.raises(ConfigError, match="SWITCHBOARD_CTI_TOKEN and SWITCHBOARD_CTI_TOKEN_FILE"):
        load_settings()


def test_a_bad_value_names_the_variable_and_what_was_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SWITCHBOARD_HTTP_PORT", "eighty")
    monkeypatch.setenv("SWITCHBOARD_TOPIC_PARTITIONS", "0")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    text = str(raised.value)
    assert "SWITCHBOARD_HTTP_PORT:" in text and "'eighty'" in text
    assert "SWITCHBOARD_TOPIC_PARTITIONS:" in text
    # a command reading the settings says so in one line per problem, no traceback
    result = runner.invoke(app, ["config", "check"])
    assert result.exit_code == 1
    assert "SWITCHBOARD_HTTP_PORT" in result.output and "Traceback" not in result.output


def test_config_check_prints_what_is_in_force_with_secrets_masked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "cti").write_text(TOKEN)
    monkeypatch.setenv("SWITCHBOARD_CTI_TOKEN_FILE", str(tmp_path / "cti"))
    monkeypatch.setenv("SWITCHBOARD_STORE", "postgresql://sb:s3cret@db:5432/switchboard")
    monkeypatch.setenv("SWITCHBOARD_HTTP_PORT", "9090")
    result = runner.invoke(app, ["config", "check"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "SWITCHBOARD_HTTP_PORT=9090" in lines
    assert "SWITCHBOARD_CTI_TOKEN=********" in lines
    assert "SWITCHBOARD_STORE=postgresql://sb:********@db:5432/switchboard" in lines
    assert TOKEN not in result.output and "s3cret" not in result.output


def test_config_check_reads_the_routing_file_it_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    routing = tmp_path / "routing.yaml"
    routing.write_text("default_queue: nowhere\nqueues:\n  support: {}\n")
    monkeypatch.setenv("SWITCHBOARD_ROUTING_CONFIG", str(routing))
    result = runner.invoke(app, ["config", "check"])
    assert result.exit_code == 1
    assert "SWITCHBOARD_ROUTING_CONFIG:" in result.output and "nowhere" in result.output
