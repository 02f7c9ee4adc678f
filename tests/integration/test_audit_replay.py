"""Replay as of any moment: the state, card and timeline captured at several moments of a
scripted history (contacts, a profile edit, a merge, an unmerge) equal what the auditor's
replay rebuilds for those moments afterwards, on SQLite and PostgreSQL; the API and the CLI
answer it, and a moment before the customer existed is a clear 404 / one line."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from fastapi import FastAPI
from typer.testing import CliRunner

from contracts import Channel, MessageReceived, identity_of
from projections.follower import TimelineFollower
from services.audit.replay import NotYetACustomer, replay
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.replay_cli import export_command, replay_command
from services.bootstrap.settings import Settings
from services.domain import customer_id_for
from services.gateway.audit_api import audit_router

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ANNA, ANNA_WORK = "+493012340001", "anna.berg@example.com"


def sms(ref: str, party: str, minutes: int) -> MessageReceived:
    return MessageReceived(
        channel=Channel.sms if party.startswith("+") else Channel.email,
        party=party,
        provider_ref=ref,
        occurred_at=T0 + timedelta(minutes=minutes),
        body=f"message {ref}",
        subject=None if party.startswith("+") else f"subject {ref}",
    )


@pytest.fixture
def settings(store_url: str, tmp_path: Path) -> Settings:
    return Settings(store=store_url, data_dir=tmp_path / "var")


def captured(settings: Settings, customer_id) -> dict[str, Any]:
    """What the live views show now, and the moment (after everything recorded so far)."""
    hub = bootstrap(settings)
    history, view = hub.history(), hub.timeline_view()
    follower = TimelineFollower(history, view)
    while follower.run_once():
        pass
    card = view.card(customer_id)
    time.sleep(0.002)  # the next event's recorded time is after the moment
    return {
        "moment": datetime.now(UTC),
        "card": card,
        "timeline": [asdict(e) for e in view.timeline(customer_id, limit=1000)],
        "version": history.get_customer(customer_id).version,
    }


def test_replay_equals_what_was_shown_at_each_moment_merges_included(settings: Settings) -> None:
    hub = bootstrap(settings)
    history = hub.history()
    anna, work = customer_id_for(identity_of(ANNA)), customer_id_for(identity_of(ANNA_WORK))
    history.record_interactions([sms("a1", ANNA, 0), sms("w1", ANNA_WORK, 1)])
    moments = [captured(settings, anna)]
    history.record_interactions([sms("a2", ANNA, 2)])
    history.edit_profile(
        anna, {"name": "Anna Berg", "tier": "gold"}, by="agent:a", expected_version=0
    )
    moments.append(captured(settings, anna))
    history.merge(anna, work, by="agent:a", reason="same person")
    history.record_interactions([sms("w2", ANNA_WORK, 3)])  # now on Anna's timeline
    moments.append(captured(settings, anna))
    history.unmerge(anna, work, by="agent:b", reason="two people after all")
    history.record_interactions([sms("a3", ANNA, 4)])
    moments.append(captured(settings, anna))

    shown = [len(m["timeline"]) for m in moments]
    assert shown == [1, 2, 4, 3], shown  # the merge showed both histories, the unmerge undid it
    assert moments[2]["card"].merged == [work]
    for m in moments:
        past = replay(history, anna, m["moment"], limit=1000)
        assert past.card == m["card"]
        assert [asdict(e) for e in past.timeline] == m["timeline"]
        assert past.version == m["version"]
    merged_then = replay(history, work, moments[2]["moment"])
    assert merged_then.state["merged_into"] == str(anna)
    assert replay(history, work, moments[3]["moment"]).state["merged_into"] is None
    with pytest.raises(NotYetACustomer):
        replay(history, anna, T0.replace(year=2020))


async def test_the_api_answers_as_of_a_moment_or_a_version(tmp_path: Path) -> None:
    settings = Settings(store=f"sqlite:///{tmp_path / 'history.db'}", data_dir=tmp_path / "var")
    hub = bootstrap(settings)
    history = hub.history()
    anna = customer_id_for(identity_of(ANNA))
    history.record_interactions([sms("a1", ANNA, 0)])
    first = captured(settings, anna)
    history.record_interactions([sms("a2", ANNA, 1)])
    app = FastAPI()
    app.include_router(audit_router(history, bootstrap(settings).timeline_view()), prefix="/v1")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://hub"
    ) as client:
        then = await client.get(
            f"/v1/audit/customers/{anna}", params={"as_of": first["moment"].isoformat()}
        )
        assert then.status_code == 200, then.text
        assert [i["provider_ref"] for i in then.json()["timeline"]] == ["a1"]
        by_version = await client.get(
            f"/v1/audit/customers/{anna}", params={"version": first["version"] + 1}
        )
        assert [i["provider_ref"] for i in by_version.json()["timeline"]] == ["a2", "a1"]
        before = await client.get(
            f"/v1/audit/customers/{anna}", params={"as_of": "2020-01-01T00:00:00+00:00"}
        )
        assert before.status_code == 404
        assert "did not exist at 2020-01-01" in before.json()["detail"]
        naive = await client.get(
            f"/v1/audit/customers/{anna}", params={"as_of": "2026-01-01T00:00:00"}
        )
        assert naive.status_code == 422
        assert (await client.get(f"/v1/audit/customers/{anna}")).status_code == 422
        unknown = await client.get(f"/v1/audit/customers/{anna}", params={"version": 99})
        assert unknown.status_code == 404 and "not 99" in unknown.json()["detail"]


def test_the_cli_replays_as_of_a_moment_and_says_what_is_wrong_in_one_line(
    tmp_path: Path,
) -> None:
    settings = Settings(store=f"sqlite:///{tmp_path / 'history.db'}", data_dir=tmp_path / "var")
    history = bootstrap(settings).history()
    anna = customer_id_for(identity_of(ANNA))
    history.record_interactions([sms("a1", ANNA, 0)])
    first = captured(settings, anna)
    history.record_interactions([sms("a2", ANNA, 1)])
    app = typer.Typer()
    app.command("replay")(replay_command)
    app.command("noop")(lambda: None)  # a group, as `switchboard audit` is
    env = {"SWITCHBOARD_STORE": settings.store, "SWITCHBOARD_DATA_DIR": str(settings.data_dir)}
    runner = CliRunner()

    then = runner.invoke(
        app, ["replay", str(anna), "--as-of", first["moment"].isoformat(), "--json"], env=env
    )
    assert then.exit_code == 0, then.output
    document = json.loads(then.stdout)
    assert [e["provider_ref"] for e in document["timeline"]] == ["a1"]
    assert document["state"]["addresses"] == [ANNA]
    now = runner.invoke(app, ["replay", ANNA, "--as-of", str(first["version"] + 1)], env=env)
    assert now.exit_code == 0 and "message a2" in now.stdout, now.output
    for args, says in (
        (["--as-of", "2020-01-01T00:00:00Z"], "did not exist at 2020-01-01"),
        (["--as-of", "2026-01-01T10:00"], "has no time zone"),
        (["--as-of", "yesterday"], "neither a moment"),
        (["--as-of", "99"], "not 99"),
    ):
        wrong = runner.invoke(app, ["replay", str(anna), *args], env=env)
        assert wrong.exit_code == 1, wrong.output
        assert says in wrong.output and "Traceback" not in wrong.output
        assert len(wrong.output.strip().splitlines()) == 1, wrong.output


async def test_subject_access_exports_the_whole_record_as_json_and_a_self_contained_page(
    settings: Settings, tmp_path: Path
) -> None:
    hub = bootstrap(settings)
    history = hub.history()
    anna = customer_id_for(identity_of(ANNA))
    history.record_interactions([sms("a1", ANNA, 0), sms("a2", ANNA, 1)])
    history.edit_profile(anna, {"name": "Anna <Berg>"}, by="agent:a", expected_version=0)
    desk = hub.desk_follower()
    while desk.run_once():
        pass
    captured(settings, anna)  # the views caught up
    app = FastAPI()
    app.include_router(audit_router(history, hub.timeline_view()), prefix="/v1")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://hub"
    ) as client:
        answer = await client.get(f"/v1/audit/customers/{anna}/export")
        assert answer.status_code == 200, answer.text
        document = answer.json()
        page = await client.get(f"/v1/audit/customers/{anna}/export", params={"format": "html"})
        missing = await client.get(f"/v1/audit/customers/{customer_id_for('nobody')}/export")
    assert missing.status_code == 404
    assert document["person"]["addresses"] == [ANNA]
    assert document["person"]["profile"]["name"] == "Anna <Berg>"
    received = [e for e in document["timeline"] if e["type"] == "message.received.v1"]
    assert [e["provider_ref"] for e in received] == ["a2", "a1"]
    assert any(e["channel"] == "desk" or "conversation" in e["type"] for e in document["timeline"])
    streams = {e["stream"] for e in document["events"]}
    assert streams == {"customer", "desk"}, streams
    versions = [e["version"] for e in document["events"] if e["stream"] == "customer"]
    assert versions == list(range(1, history.get_customer(anna).version + 1))
    assert len(document["conversations"]) == 1
    proofs = [e["proof"] for e in document["events"]]  # each event's place in the chain
    assert all(p and len(p["stream_hash"]) == 64 for p in proofs), proofs
    assert len({p["notification_id"] for p in proofs}) == len(proofs)
    assert page.headers["content-type"].startswith("text/html")
    assert "Anna &lt;Berg&gt;" in page.text and "<Berg>" not in page.text
    assert "message a1" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from outside

    app_cli = typer.Typer()
    app_cli.command("export")(export_command)
    app_cli.command("noop")(lambda: None)
    env = {"SWITCHBOARD_STORE": settings.store, "SWITCHBOARD_DATA_DIR": str(settings.data_dir)}
    out, page_file = tmp_path / "anna.json", tmp_path / "anna.html"
    done = CliRunner().invoke(
        app_cli, ["export", ANNA, "--out", str(out), "--html", str(page_file)], env=env
    )
    assert done.exit_code == 0, done.output
    assert json.loads(out.read_text())["subject"] == str(anna)
    assert "Anna &lt;Berg&gt;" in page_file.read_text()
