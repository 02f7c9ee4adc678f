"""The access log, as an auditor relies on it: every read of a customer's data through the API,
the console and the CLI is recorded with who, which customer, what, when and why before it is
answered; a refused attempt too; auditors query it by customer and by user; and a changed,
deleted or reordered row is named by the verification.  Reads on SQLite and PostgreSQL."""

from __future__ import annotations

import getpass
import json
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from channels.publishing import InteractionPublisher
from contracts import Channel, MessageReceived
from services.audit.access_log import (
    AccessEntry,
    AccessLog,
    AccessLogUnavailable,
    chain_hash,
    open_access_log,
    verify_access_log,
)
from services.bootstrap.access_cli import access_app
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.cli import app as switchboard
from services.bootstrap.settings import Settings
from services.domain.users import Role
from services.gateway.access_log import NOT_READS, read_for
from services.gateway.api import create_api
from services.gateway.roles import ROUTE_ROLES

PHONE = "+493055501234"
MAIL = "berta@example.com"
UNKNOWN = "+493055509999"
T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
runner = CliRunner()


class Desk:
    """A hub's API with two customers, an agent, a campaign manager and an auditor."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        hub = bootstrap(settings)
        hub.history().record_interactions(
            [
                MessageReceived(
                    channel=channel, party=party, provider_ref=ref, occurred_at=T0, body="hi"
                )
                for channel, party, ref in [
                    (Channel.sms, PHONE, "SM1"),
                    (Channel.email, MAIL, "<1@x>"),
                ]
            ]
        )
        hub.timeline_follower().catch_up()
        self.view = hub.timeline_view()
        self.anna = self.view.customer_for_address(PHONE)
        self.berta = self.view.customer_for_address(MAIL)
        self.users = users = hub.user_directory()
        self.tokens: dict[str, str] = {}
        for name, role in [("anna.agent", Role.agent), ("carl", Role.campaign_manager)]:
            users.register(name, roles=[role])
        users.register("otto", roles=[Role.auditor], password="otto-password")
        for name in ("anna.agent", "carl", "otto"):
            self.tokens[name] = users.issue_token(name).token
        api = hub.api(view=self.view, publisher=InteractionPublisher("127.0.0.1:1"), users=users)
        self.client = TestClient(api)
        self.log = open_access_log(settings)

    def as_(self, name: str, **headers: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}", **headers}

    def token_id(self, name: str) -> str:
        return self.tokens[name].split("_")[1]


@pytest.fixture
def desk(store_url: str, tmp_path: Path) -> Iterator[Desk]:
    desk = Desk(Settings(data_dir=tmp_path / "var", store=store_url))
    with desk.client:
        yield desk


@pytest.fixture
def sqlite_desk(tmp_path: Path) -> Iterator[Desk]:
    desk = Desk(Settings(data_dir=tmp_path / "var", store=f"sqlite:///{tmp_path / 'history.db'}"))
    with desk.client:
        yield desk


def env_of(settings: Settings) -> dict[str, str]:
    return {
        "SWITCHBOARD_DATA_DIR": str(settings.data_dir),
        "SWITCHBOARD_STORE": settings.store,
        "COLUMNS": "250",
    }


def test_an_agents_lookup_card_and_timeline_are_logged_with_who_what_when_and_why(
    desk: Desk,
) -> None:
    before = datetime.now(UTC)
    agent = desk.as_("anna.agent", **{"X-Purpose": "ticket 4711: call back"})
    found = desk.client.get("/v1/lookup", params={"address": PHONE}, headers=agent)
    assert found.status_code == 200 and found.json()["customer"]["customer_id"] == str(desk.anna)
    assert desk.client.get(f"/v1/customers/{desk.anna}", headers=agent).status_code == 200
    timeline = desk.client.get(f"/v1/customers/{desk.anna}/timeline", headers=agent)
    assert timeline.status_code == 200
    unknown = desk.client.get("/v1/lookup", params={"address": UNKNOWN}, headers=agent)
    assert unknown.json()["known"] is False
    searched = desk.client.get("/v1/customers", params={"q": "+49305550"}, headers=agent)
    assert len(searched.json()["items"]) == 1

    reads = list(reversed(desk.log.entries(customer_id=desk.anna)))
    assert [(e.kind, e.what, e.outcome) for e in reads] == [
        ("lookup", "GET /v1/lookup", 200),
        ("card", "GET /v1/customers/{customer_id}", 200),
        ("timeline", "GET /v1/customers/{customer_id}/timeline", 200),
        ("search", "GET /v1/customers", 200),
    ]
    for e in reads:
        assert (e.who, e.via, e.token_id) == ("anna.agent", "api", desk.token_id("anna.agent"))
        assert e.purpose == "ticket 4711: call back"
        assert before <= e.at <= datetime.now(UTC)
    # The unknown address: recorded as a lookup of nobody; the address is kept nowhere.
    (nobody,) = [e for e in desk.log.entries(who="anna.agent") if e.customer_id is None]
    assert nobody.kind == "lookup"
    assert all(UNKNOWN not in str(vars(e)) for e in desk.log.entries(limit=1000))
    assert desk.log.entries(customer_id=desk.berta) == []  # nobody read her
    assert verify_access_log(desk.log).intact


def test_a_role_without_the_right_is_refused_and_the_attempt_is_in_the_log(desk: Desk) -> None:
    manager = desk.as_("carl", **{"X-Purpose": "campaign audience"})
    refused = desk.client.get(f"/v1/customers/{desk.anna}/timeline", headers=manager)
    assert refused.status_code == 403
    assert (
        desk.client.get("/v1/lookup", params={"address": PHONE}, headers=manager).status_code == 403
    )

    lookup, timeline = desk.log.entries(who="carl")  # newest first
    assert (timeline.customer_id, timeline.outcome, timeline.kind) == (desk.anna, 403, "timeline")
    assert timeline.purpose == "campaign audience"
    # The refused lookup never ran: who it would have shown is not known, nor kept.
    assert (lookup.customer_id, lookup.outcome, lookup.kind) == (None, 403, "lookup")
    # Without credentials (401) nothing is recorded: nobody was identified.
    assert desk.client.get(f"/v1/customers/{desk.anna}").status_code == 401
    assert len(desk.log.entries(limit=1000)) == 2


def test_a_console_session_read_is_logged_as_the_console(sqlite_desk: Desk) -> None:
    desk = sqlite_desk
    signed_in = desk.client.post(
        "/console/session", json={"username": "otto", "password": "otto-password"}
    )
    assert signed_in.status_code == 200, signed_in.text
    assert desk.client.get(f"/v1/customers/{desk.berta}/conversations").status_code == 200
    (read,) = desk.log.entries(customer_id=desk.berta)
    assert (read.who, read.via, read.token_id, read.kind) == (
        "otto",
        "console",
        None,
        "conversations",
    )


def test_an_auditor_queries_the_log_by_customer_and_by_user_through_the_api_and_the_cli(
    sqlite_desk: Desk,
) -> None:
    desk = sqlite_desk
    agent = desk.as_("anna.agent")
    desk.client.get(f"/v1/customers/{desk.anna}", headers=agent)
    desk.client.get(f"/v1/customers/{desk.berta}", headers=agent)
    desk.client.get(f"/v1/customers/{desk.anna}/timeline", headers=desk.as_("carl"))

    auditor = desk.as_("otto")
    by_customer = desk.client.get(
        "/v1/audit/access", params={"customer_id": str(desk.anna)}, headers=auditor
    )
    assert by_customer.status_code == 200, by_customer.text
    assert [(i["who"], i["kind"], i["outcome"]) for i in by_customer.json()["items"]] == [
        ("carl", "timeline", 403),
        ("anna.agent", "card", 200),
    ]
    by_user = desk.client.get("/v1/audit/access", params={"user": "anna.agent"}, headers=auditor)
    assert [i["customer_id"] for i in by_user.json()["items"]] == [str(desk.berta), str(desk.anna)]
    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    since = desk.client.get("/v1/audit/access", params={"since": later}, headers=auditor)
    assert since.json()["items"] == []
    # The access log says what staff did: not for agents.
    assert desk.client.get("/v1/audit/access", headers=agent).status_code == 403
    # Reading it is itself a read, of the customer asked about.
    (asked,) = desk.log.entries(customer_id=desk.anna, who="otto")
    assert asked.kind == "access_log" and asked.what == "GET /v1/audit/access"

    env = env_of(desk.settings)
    shown = runner.invoke(access_app, ["--customer", PHONE], env=env)  # an address will do
    assert shown.exit_code == 0, shown.output
    assert "carl" in shown.output and "anna.agent" in shown.output and "403" in shown.output
    as_json = runner.invoke(access_app, ["--user", "anna.agent", "--json"], env=env)
    assert as_json.exit_code == 0, as_json.output
    rows = [json.loads(line) for line in as_json.output.strip().splitlines()]
    assert [(r["kind"], r["customer_id"], r["outcome"]) for r in rows] == [
        ("access_log", None, 403),  # her try at the access log
        ("card", str(desk.berta), 200),
        ("card", str(desk.anna), 200),
    ]
    me = f"cli:{getpass.getuser()}"
    assert [e.kind for e in desk.log.entries(who=me)] == ["access_log", "access_log"]
    assert desk.log.entries(who=me)[1].customer_id == desk.anna
    assert runner.invoke(access_app, [], env=env).exit_code == 2  # --customer or --user


def test_the_cli_records_what_it_shows(sqlite_desk: Desk) -> None:
    env = env_of(sqlite_desk.settings)
    for args in (
        ["lookup", PHONE],
        ["timeline", MAIL],
        ["customer", "show", str(sqlite_desk.anna)],
        ["customer", "search", "berta"],
    ):
        done = runner.invoke(switchboard, args, env=env)
        assert done.exit_code == 0, done.output
    reads = list(reversed(sqlite_desk.log.entries(who=f"cli:{getpass.getuser()}")))
    assert [(e.kind, e.what, e.customer_id, e.via) for e in reads] == [
        ("lookup", "switchboard lookup", sqlite_desk.anna, "cli"),
        ("timeline", "switchboard timeline", sqlite_desk.berta, "cli"),
        ("card", "switchboard customer show", sqlite_desk.anna, "cli"),
        ("search", "switchboard customer search", sqlite_desk.berta, "cli"),
    ]


def test_writers_of_several_processes_append_to_one_chain(store_url: str, tmp_path: Path) -> None:
    """API processes, workers and the CLI all append: one chain, nothing lost."""
    settings = Settings(data_dir=tmp_path / "var", store=store_url)
    writers = [open_access_log(settings) for _ in range(4)]

    def append(log: AccessLog, n: int) -> None:
        for batch in range(25):
            log.append(
                [
                    AccessEntry("anna.agent", "api", "card", "GET /v1/x", 200, f"{n}-{batch}-{i}")
                    for i in range(3)
                ]
            )

    threads = [threading.Thread(target=append, args=(w, n)) for n, w in enumerate(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    report = verify_access_log(writers[0])
    assert report.intact and report.verified == 4 * 25 * 3
    assert len({e.request_id for e in writers[0].entries(limit=1000)}) == 300


class UnwritableAccessLog(AccessLog):
    """An access log whose store refuses every write (a full disk, a lost database)."""

    def append(self, entries: object) -> int:
        raise AccessLogUnavailable("the access log could not be written: disk I/O error")


def test_a_read_the_log_cannot_record_is_not_served(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "var")
    hub = bootstrap(settings)
    users = hub.user_directory()
    users.register("anna.agent", roles=[Role.agent])
    token = users.issue_token("anna.agent").token
    broken = UnwritableAccessLog.sqlite(tmp_path / "access.db")
    api = create_api(view=hub.timeline_view(), users=users, access_log=broken)
    with TestClient(api, headers={"Authorization": f"Bearer {token}"}) as client:
        answer = client.get("/v1/lookup", params={"address": PHONE})
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "1"
        assert "not served" in answer.json()["detail"] and "known" not in answer.text
        timeline = client.get(f"/v1/customers/{UUID(int=1)}/timeline")
        assert timeline.status_code == 503


def _forge_insertion(path: Path, log: AccessLog) -> None:
    """Make room at seq 3 and put a well-formed row there, chained to row 2."""
    (prev,) = [row[-1] for row in log.rows() if row[0] == 2]
    entry = AccessEntry("mallory", "api", "card", "GET /v1/customers/{customer_id}", 200, "x")
    content = entry.content(3)
    row = (*content.values(), prev, chain_hash(prev, content))
    with sqlite3.connect(path) as db:
        db.execute("UPDATE access_log SET seq = -seq WHERE seq >= 3")
        db.execute("UPDATE access_log SET seq = -seq + 1 WHERE seq < 0")
        db.execute(f"INSERT INTO access_log VALUES ({', '.join('?' * len(row))})", row)


TAMPERING = {
    "modified": (["UPDATE access_log SET who = 'someone.else' WHERE seq = 3"], 3, "modified"),
    "deleted": (["DELETE FROM access_log WHERE seq = 3"], 3, "entry 3 is missing"),
    # Two rows swapped, their numbers kept.
    "reordered": (
        [
            "UPDATE access_log SET seq = -4 WHERE seq = 4",
            "UPDATE access_log SET seq = 4 WHERE seq = 3",
            "UPDATE access_log SET seq = 3 WHERE seq = -4",
        ],
        3,
        "entry 3 does not follow entry 2",
    ),
    # A forged row that chains to the one before: the row after it gives it away.
    "inserted": (_forge_insertion, 4, "entry 4 does not follow entry 3"),
}


@pytest.mark.parametrize("tampering", sorted(TAMPERING))
def test_a_changed_deleted_reordered_or_inserted_row_is_named_by_the_verification(
    tmp_path: Path, tampering: str
) -> None:
    path = tmp_path / "access.db"
    log = AccessLog.sqlite(path)
    for n in range(6):
        entry = AccessEntry(
            "anna.agent",
            "api",
            "card",
            "GET /v1/customers/{customer_id}",
            200,
            f"r{n}",
            customer_id=UUID(int=n),
        )
        log.append([entry])
    assert verify_access_log(log).intact and verify_access_log(log).verified == 6

    change, broken_at, says = TAMPERING[tampering]
    if callable(change):
        change(path, log)
    else:
        with sqlite3.connect(path) as db:
            for statement in change:
                db.execute(statement)
    report = verify_access_log(log)
    assert (report.intact, report.broken_at, report.verified) == (False, broken_at, broken_at - 1)
    assert says in (report.reason or ""), report.reason


def test_every_get_operation_is_a_read_of_customer_data_or_declared_not_to_be() -> None:
    """A new GET operation must say whether it shows a customer's data."""
    gets = [path for method, path in ROUTE_ROLES if method == "GET"]
    undecided = [p for p in gets if read_for(p) is None and p not in NOT_READS]
    assert undecided == [], "add them to READS or NOT_READS in services/gateway/access_log.py"
