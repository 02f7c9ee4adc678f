"""Users, roles and tokens in the store (SQLite and PostgreSQL), and the API's token table."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.settings import Settings
from services.domain.tokens import split_token
from services.domain.users import Role
from services.gateway.access import AccessTable
from services.history.users import (
    InvalidUserInput,
    UnknownToken,
    UnknownUser,
    UserDirectory,
    UserDisabled,
    UserExists,
)


@pytest.fixture
def settings(store_url: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "var", store=store_url)


@pytest.fixture
def users(settings: Settings) -> UserDirectory:
    return bootstrap(settings).user_directory()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def stored_bytes(directory: UserDirectory, settings: Settings) -> bytes:
    """Everything the store holds about users: each stored event, and on SQLite the files."""
    rows = directory.recorder.select_notifications(start=None, limit=10_000)
    stored = b"".join(n.topic.encode() + n.state for n in rows)
    if not settings.is_postgres:
        base = settings.sqlite_path("users")
        for path in base.parent.glob(base.name + "*"):  # the file and its -wal/-shm
            stored += path.read_bytes()
    return stored


def test_a_user_is_registered_once_whatever_the_case_of_its_name(users: UserDirectory) -> None:
    users.register("Anna", roles=["agent", "supervisor"])

    with pytest.raises(UserExists, match="user 'anna' exists already"):
        users.register("anna", roles=["agent"])
    assert [(u.username, u.roles) for u in users.users()] == [("anna", ["agent", "supervisor"])]


def test_two_racing_registrations_of_one_name_make_one_user(settings: Settings) -> None:
    directories = [bootstrap(settings).user_directory() for _ in range(2)]
    outcomes: list[str] = []
    start = threading.Barrier(2)

    def register(directory: UserDirectory) -> None:
        start.wait()
        try:
            directory.register("bob", roles=["agent"])
            outcomes.append("registered")
        except UserExists:
            outcomes.append("exists")

    threads = [threading.Thread(target=register, args=(d,)) for d in directories]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    assert sorted(outcomes) == ["exists", "registered"]
    assert len(directories[0].users()) == 1


@pytest.mark.parametrize(
    ("roles", "message"),
    [
        (["agent", "janitor"], "unknown role(s) janitor; choose from agent, supervisor"),
        ([], "a user needs at least one role"),
    ],
)
def test_a_bad_role_is_refused_naming_it(
    users: UserDirectory, roles: list[str], message: str
) -> None:
    with pytest.raises(InvalidUserInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        users.register("carla", roles=roles)
    assert users.find("carla") is None


def test_a_bad_user_name_or_short_password_is_refused_naming_it(users: UserDirectory) -> None:
    with pytest.raises(InvalidUserInput, match="user name 'no spaces'"):
        users.register("no spaces", roles=["agent"])
    with pytest.raises(InvalidUserInput, match="at least 8 characters"):
        users.register("dora", roles=["agent"], password="short")


def test_disabling_or_issuing_for_an_unknown_user_says_so(users: UserDirectory) -> None:
    with pytest.raises(UnknownUser, match="no user 'ghost'"):
        users.disable("ghost")
    with pytest.raises(UnknownUser, match="no user 'ghost'"):
        users.issue_token("ghost")
    with pytest.raises(UnknownToken, match="no active token '0123456789abcdef'"):
        users.revoke_token("0123456789abcdef")
    with pytest.raises(InvalidUserInput, match="expected 16 hex digits"):
        users.revoke_token("sbt_not-an-id")


def test_a_disabled_user_gets_no_new_token(users: UserDirectory) -> None:
    users.register("erik", roles=["agent"])
    users.disable("erik")

    with pytest.raises(UserDisabled, match="user 'erik' is disabled"):
        users.issue_token("erik")


def test_only_hashes_of_tokens_and_passwords_are_stored(
    users: UserDirectory, settings: Settings
) -> None:
    password = "correct horse battery staple"
    users.register("fritz", roles=["admin"], password=password)
    issued = users.issue_token("fritz")
    _, secret = split_token(issued.token)

    stored = stored_bytes(users, settings)
    assert issued.token_id.encode() in stored  # the id is public: listed and revoked by it
    assert secret.encode() not in stored
    assert password.encode() not in stored
    assert users.user("fritz").password_hash.startswith("$argon2id$")
    assert users.password_matches("fritz", password)
    assert not users.password_matches("fritz", password + "!")


def test_a_token_stands_for_its_user_and_roles_until_revoked(
    users: UserDirectory, settings: Settings
) -> None:
    users.register("gina", roles=["supervisor", "auditor"])
    issued = users.issue_token("gina")
    token_id, secret = split_token(issued.token)
    clock = FakeClock()
    table = AccessTable(bootstrap(settings).user_directory(), clock=clock)

    caller = table.caller(token_id, secret)
    assert caller is not None and caller.username == "gina"
    assert caller.roles == {Role.supervisor, Role.auditor}
    assert table.caller(token_id, secret[:-1] + "A" if secret[-1] != "A" else "B") is None

    users.revoke_token(token_id)  # by "another process": a directory of its own
    assert not table.refresh_due()  # checked just now: no store read
    clock.now += table.refresh_interval
    assert table.refresh_due()
    table.refresh()
    assert table.caller(token_id, secret) is None


def test_disabling_a_user_refuses_all_its_tokens_at_the_next_refresh(
    users: UserDirectory, settings: Settings
) -> None:
    users.register("hans", roles=["agent"])
    tokens = [split_token(users.issue_token("hans").token) for _ in range(2)]
    table = AccessTable(bootstrap(settings).user_directory())
    assert all(table.caller(*t) is not None for t in tokens)

    users.disable("hans")
    table.refresh()

    assert all(table.caller(*t) is None for t in tokens)


def test_a_token_issued_after_the_table_was_loaded_is_found_by_its_unknown_id(
    users: UserDirectory, settings: Settings
) -> None:
    clock = FakeClock()
    table = AccessTable(bootstrap(settings).user_directory(), clock=clock)
    users.register("ines", roles=["agent"])
    token_id, secret = split_token(users.issue_token("ines").token)

    assert not table.knows(token_id)
    table.recheck()  # within UNKNOWN_TOKEN_RECHECK of the last check: no store read
    assert not table.knows(token_id)
    clock.now += table.seconds_until_recheck()
    table.recheck()
    assert table.caller(token_id, secret) is not None
    assert not table.refresh_due()


def test_a_restarted_table_knows_revocations_at_once(
    users: UserDirectory, settings: Settings
) -> None:
    users.register("jan", roles=["agent"])
    token_id, secret = split_token(users.issue_token("jan").token)
    users.revoke_token(token_id, username="jan")

    assert AccessTable(bootstrap(settings).user_directory()).caller(token_id, secret) is None
