"""``switchboard conversations|notes|files``: the desk from a shell, with one-line refusals
and the exit codes (1 refused, 2 usage)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from typer.testing import CliRunner

from contracts import Channel, MessageReceived
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.cli import app
from services.bootstrap.settings import Settings
from services.domain import customer_id_for

runner = CliRunner()
PHONE = "+4930123456789"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"SWITCHBOARD_DATA_DIR": str(tmp_path / "var"), "COLUMNS": "200"}


@pytest.fixture
def customer(tmp_path: Path) -> UUID:
    hub = bootstrap(Settings(data_dir=tmp_path / "var"))
    hub.history().record_interactions(
        [
            MessageReceived(
                channel=Channel.sms,
                party=PHONE,
                provider_ref="SM1",
                occurred_at=datetime(2026, 3, 2, 9, tzinfo=UTC),
                body="hello",
            )
        ]
    )
    hub.desk_follower().catch_up()
    hub.user_directory().register("anna", roles=["agent"])
    return customer_id_for(PHONE)


def switchboard(env: dict[str, str], *args: str):
    return runner.invoke(app, list(args), env=env)


def conversation_of(env: dict[str, str], customer: UUID) -> str:
    listed = switchboard(env, "conversations", "list", str(customer))
    assert listed.exit_code == 0, listed.output
    ids = [word for word in listed.output.split() if len(word) == 36 and word.count("-") == 4]
    return ids[-1]


def test_an_agent_lists_assigns_and_notes_from_the_shell(
    env: dict[str, str], customer: UUID, tmp_path: Path
) -> None:
    conversation = conversation_of(env, customer)

    assigned = switchboard(
        env,
        "conversations",
        "status",
        conversation,
        "assigned",
        "--assignee",
        "anna",
        "--as",
        "anna",
    )
    assert assigned.exit_code == 0, assigned.output
    assert "is assigned (anna), version 2" in assigned.output
    noted = switchboard(env, "notes", "add", "--conversation", conversation, "call back at 3")
    assert noted.exit_code == 0 and f"added to customer {customer}" in noted.output
    pdf = tmp_path / "invoice.pdf"
    pdf.write_bytes(b"%PDF-1.7\n%%EOF\n")
    attached = switchboard(env, "files", "attach", "--customer", str(customer), str(pdf))
    assert attached.exit_code == 0, attached.output
    assert "application/pdf" in attached.output
    assert f"/v1/customers/{customer}/files/" in attached.output


def test_refusals_are_one_line_and_exit_1(
    env: dict[str, str], customer: UUID, tmp_path: Path
) -> None:
    conversation = conversation_of(env, customer)
    cases = [
        (["conversations", "list", str(uuid4())], "no customer"),
        (["conversations", "status", str(uuid4()), "resolved"], "no conversation"),
        (["conversations", "status", conversation, "open"], "it can become"),
        (
            ["conversations", "status", conversation, "resolved", "--expected-version", "7"],
            "at version 1, not 7",
        ),
        (["conversations", "status", conversation, "resolved", "--as", "ghost"], "no user"),
        (["notes", "add", "--customer", str(customer), " "], "needs some text"),
    ]
    fake = tmp_path / "fake.pdf"
    fake.write_bytes(b"just text")
    cases.append((["files", "attach", "--customer", str(customer), str(fake)], "its bytes are"))
    for args, reason in cases:
        answer = switchboard(env, *args)
        assert answer.exit_code == 1, (args, answer.output)
        assert reason in answer.output and "Traceback" not in answer.output, answer.output
        assert len(answer.output.strip().splitlines()) == 1, answer.output


def test_usage_errors_exit_2(env: dict[str, str], customer: UUID) -> None:
    conversation = conversation_of(env, customer)
    for args in (
        ["notes", "add", "both", "--customer", str(customer), "--conversation", conversation],
        ["notes", "add", "neither"],
        ["conversations", "status", conversation, "closed"],
    ):
        assert switchboard(env, *args).exit_code == 2, args
    # A customer is an id or an address: anything else is refused in one line.
    unknown = switchboard(env, "conversations", "list", "not-a-uuid")
    assert unknown.exit_code == 1 and "give a customer id or an address" in unknown.output
