"""``switchboard lookup`` and ``switchboard customer …`` as an operator uses them: the card as
JSON, profile edits, a merge and its undo — and every mistake one line with exit status 1."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from contracts import Channel, MessageReceived
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.cli import app
from services.bootstrap.settings import Settings

runner = CliRunner()
PHONE = "+4930123456789"
MAIL = "anna@example.com"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    settings = Settings(data_dir=tmp_path / "var")
    hub = bootstrap(settings)
    hub.history().record_interactions(
        [
            MessageReceived(
                channel=channel,
                party=party,
                provider_ref=ref,
                occurred_at=datetime(2026, 3, 2, 9, minute, tzinfo=UTC),
                body="hello",
            )
            for minute, (channel, party, ref) in enumerate(
                [
                    (Channel.sms, PHONE, "SM1"),
                    (Channel.whatsapp, f"whatsapp:{PHONE}", "wamid.1"),
                    (Channel.email, MAIL, "<m1@example.com>"),
                ]
            )
        ]
    )
    hub.timeline_follower().catch_up()
    hub.user_directory().register("anna", roles=["agent"])
    return {"SWITCHBOARD_DATA_DIR": str(tmp_path / "var"), "COLUMNS": "200"}


def switchboard(env: dict[str, str], *args: str):
    return runner.invoke(app, list(args), env=env)


def catch_up(env: dict[str, str]) -> None:
    bootstrap(Settings(data_dir=Path(env["SWITCHBOARD_DATA_DIR"]))).timeline_follower().catch_up()


def card(env: dict[str, str], address: str) -> dict:
    result = switchboard(env, "lookup", address)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_lookup_prints_the_card_and_an_explicit_unknown(env: dict[str, str]) -> None:
    found = card(env, "whatsapp:+4930123456789")
    assert found["known"] is True
    assert found["customer"]["addresses"] == [PHONE, f"whatsapp:{PHONE}"]
    assert [r["channel"] for r in found["customer"]["recent"]] == ["whatsapp", "sms"]
    assert card(env, "+4930999999")["known"] is False


def test_edit_merge_and_unmerge_from_the_shell(env: dict[str, str]) -> None:
    phone_customer = card(env, PHONE)["customer"]["customer_id"]
    mail_customer = card(env, MAIL)["customer"]["customer_id"]

    edited = switchboard(
        env, "customer", "edit", PHONE, "--expected-version", "0", "--name", "Anna Berg",
        "--tier", "gold", "--as", "anna",
    )  # fmt: skip
    assert edited.exit_code == 0, edited.output
    stale = switchboard(env, "customer", "edit", PHONE, "--expected-version", "0", "--tier", "x")
    assert stale.exit_code == 1 and "changed meanwhile" in stale.output

    merged = switchboard(env, "customer", "merge", PHONE, MAIL, "--reason", "same person")
    assert merged.exit_code == 0, merged.output
    assert f"customer unmerge {phone_customer} {mail_customer}" in merged.output
    catch_up(env)
    after = card(env, MAIL)["customer"]
    assert after["customer_id"] == phone_customer and after["name"] == "Anna Berg"
    assert after["contact_count"] == 3

    undone = switchboard(env, "customer", "unmerge", PHONE, MAIL, "--reason", "two people")
    assert undone.exit_code == 0, undone.output
    catch_up(env)
    assert card(env, MAIL)["customer"]["customer_id"] == mail_customer


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["customer", "merge", PHONE, PHONE, "--reason", "r"], "same customer"),
        (["customer", "show", "not an address"], "give a customer id or an address"),
        (["customer", "show", "+4930999999"], "no customer has the address"),
        (["customer", "edit", PHONE, "--expected-version", "0"], "nothing to change"),
        (
            ["customer", "edit", PHONE, "--expected-version", "0", "--time-zone", "Mars/Base"],
            "--time-zone",
        ),
        (["customer", "link", PHONE, MAIL, "--reason", "r"], "merge the two customers"),
        (["customer", "unmerge", PHONE, MAIL, "--reason", "r"], "no customer merged into"),
        (
            ["customer", "edit", PHONE, "--expected-version", "0", "--name", "X", "--as", "ghost"],
            "ghost",
        ),
        (["lookup", "call me"], "not a phone number"),
    ],
)
def test_a_mistake_is_one_line_and_exit_status_1(
    env: dict[str, str], args: list[str], says: str
) -> None:
    result = switchboard(env, *args)
    assert result.exit_code == 1, result.output
    assert says in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_unmerging_what_was_never_merged_is_refused(env: dict[str, str]) -> None:
    phone_customer = card(env, PHONE)["customer"]["customer_id"]
    mail_customer = card(env, MAIL)["customer"]["customer_id"]
    result = switchboard(env, "customer", "unmerge", phone_customer, mail_customer, "--reason", "r")
    assert result.exit_code == 1 and "never merged" in result.output


def test_a_withheld_callers_one_call_customer_is_merged_into_the_known_one(
    env: dict[str, str],
) -> None:
    from contracts import CallRinging

    hub = bootstrap(Settings(data_dir=Path(env["SWITCHBOARD_DATA_DIR"])))
    hub.history().record_interactions(
        [
            CallRinging(
                channel=Channel.voice,
                direction="inbound",
                party="anonymous:CA777",
                provider_ref="CA777",
                call_id="CA777",
                occurred_at=datetime(2026, 3, 2, 10, tzinfo=UTC),
            )
        ]
    )
    catch_up(env)
    merged = switchboard(
        env, "customer", "merge", PHONE, "anonymous:CA777", "--reason", "she gave her number"
    )
    assert merged.exit_code == 0, merged.output
    catch_up(env)
    found = card(env, "anonymous:CA777")["customer"]
    assert found["customer_id"] == card(env, PHONE)["customer"]["customer_id"]
    assert found["contact_count"] == 3
