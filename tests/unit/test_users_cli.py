"""``switchboard users``: add, list, token, revoke, disable; clear one-line errors; and the
first sign-in that ``switchboard up`` prints on a new store."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.cli import app
from services.bootstrap.settings import Settings
from services.bootstrap.users_cli import first_sign_in, print_sign_in
from services.domain.tokens import split_token
from services.gateway.access import AccessTable

runner = CliRunner()
TOKEN = re.compile(r"sbt_[0-9a-f]{16}_[A-Za-z0-9_-]{43}")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"SWITCHBOARD_DATA_DIR": str(tmp_path / "var")}


def switchboard(env: dict[str, str], *args: str, stdin: str | None = None):
    return runner.invoke(app, ["users", *args], env=env, input=stdin)


def test_a_user_added_with_a_token_can_be_listed_revoked_and_disabled(
    env: dict[str, str], tmp_path: Path
) -> None:
    added = switchboard(env, "add", "Anna", "--role", "agent", "--role", "supervisor", "--token")
    assert added.exit_code == 0, added.output
    assert "added user anna with role(s) agent, supervisor" in added.output
    first = TOKEN.search(added.output)
    assert first is not None
    first_id, _ = split_token(first.group())

    second = switchboard(env, "token", "anna", "--quiet")
    assert second.exit_code == 0 and TOKEN.fullmatch(second.output.strip())
    listed = switchboard(env, "list")
    assert "anna" in listed.output and first_id in listed.output
    assert first.group() not in listed.output

    revoked = switchboard(env, "revoke", first_id)
    assert revoked.exit_code == 0 and f"token {first_id} of anna is revoked" in revoked.output
    assert first_id not in switchboard(env, "list").output

    settings = Settings(data_dir=tmp_path / "var")
    table = AccessTable(bootstrap(settings).user_directory())
    assert table.caller(*split_token(second.output.strip())) is not None
    assert switchboard(env, "disable", "anna").exit_code == 0
    table.refresh()
    assert table.caller(*split_token(second.output.strip())) is None
    assert "disabled" in switchboard(env, "list").output


def test_a_password_is_read_from_a_file_and_stored_as_an_argon2_hash(
    env: dict[str, str], tmp_path: Path
) -> None:
    secret = tmp_path / "password"
    secret.write_text("a long enough password\n")

    result = switchboard(env, "add", "ben", "--role", "auditor", "--password-file", str(secret))

    assert result.exit_code == 0, result.output
    users = bootstrap(Settings(data_dir=tmp_path / "var")).user_directory()
    assert users.user("ben").password_hash.startswith("$argon2id$")
    assert users.password_matches("ben", "a long enough password")


def test_a_password_can_be_typed_at_a_hidden_prompt(env: dict[str, str], tmp_path: Path) -> None:
    typed = "typed password 123"
    result = switchboard(env, "add", "cleo", "-r", "admin", "--password", stdin=f"{typed}\n" * 2)

    assert result.exit_code == 0, result.output
    assert typed not in result.output
    users = bootstrap(Settings(data_dir=tmp_path / "var")).user_directory()
    assert users.password_matches("cleo", typed)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "dan", "--role", "janitor"], "unknown role(s) janitor; choose from agent"),
        (["disable", "ghost"], "no user 'ghost'"),
        (["token", "ghost"], "no user 'ghost'"),
        (["revoke", "sbt_0123"], "is no token id: expected 16 hex digits"),
        (["revoke", "0123456789abcdef"], "no active token '0123456789abcdef'"),
        (["add", "no spaces", "--role", "agent"], "user name 'no spaces'"),
        (["add", "eve", "--role", "agent", "--password-file", "/nonexistent"], "cannot read"),
    ],
)
def test_bad_input_is_one_line_naming_it(
    env: dict[str, str], args: list[str], message: str
) -> None:
    result = switchboard(env, *args)

    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_adding_a_user_twice_says_it_exists(env: dict[str, str]) -> None:
    assert switchboard(env, "add", "fay", "--role", "agent").exit_code == 0
    again = switchboard(env, "add", "FAY", "--role", "admin")
    assert again.exit_code == 1
    assert "user 'fay' exists already" in again.output


def test_a_new_store_gets_an_admin_and_its_token_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    users = bootstrap(Settings(data_dir=tmp_path)).user_directory()

    issued = first_sign_in(users, demo=True)
    print_sign_in(issued, directory=users, api_url="http://127.0.0.1:8080")

    assert [(i.username, users.user(i.username).roles) for i in issued] == [
        ("admin", ["admin"]),
        ("demo-agent", ["agent"]),
    ]
    shown = capsys.readouterr().out
    assert issued[0].token in shown and issued[1].token in shown
    assert f'curl -H "Authorization: Bearer {issued[1].token}"' in shown
    assert first_sign_in(users, demo=True) == []  # the next `up` issues nothing new
    print_sign_in([], directory=users, api_url="http://127.0.0.1:8080")
    assert "switchboard users token admin" in capsys.readouterr().out
