"""The phone rings, and the right agent already sees who is calling.

Two gateway instances run against one real Kafka broker and one store (``run_hub``, uvicorn on
loopback): instance A takes Twilio's webhooks (signed like Twilio signs them) and records, B
only serves consoles.  Agents hold real WebSockets.  A call routed to ann pops on ann's socket
on B, and not on ben's; answered and ended update it; a reconnect gets what still rings; the
decision is filed in the customer's history with its reason.
"""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection, connect

from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.settings import Settings
from tests.gateways import gateway
from tests.helpers import eventually, timeline_when_shown
from tests.standins.twilio_api import signed_twilio_request

TWILIO_TOKEN = "twilio-auth-token-for-pop-tests"
HOTLINE = "+18005550100"
CALLER = "+14155550111"
ROUTING = """
default_queue: support
last_agent_hours: 72
offer_timeout_s: 15
queues:
  support:
    languages: [en]
agents:
  ann: {queues: [support], languages: [en]}
  ben: {queues: [support], languages: [en]}
"""


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'history.db'}"


class Console:
    """An agent's live stream, as the console holds it."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def next(self, kind: str | None = None, timeout: float = 15.0) -> dict[str, Any]:
        """The next message (of ``kind``), skipping keep-alives."""
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            if message["kind"] == "ping" or (kind is not None and message["kind"] != kind):
                continue
            return message


@asynccontextmanager
async def console(url: str, token: str) -> AsyncIterator[Console]:
    ws_url = url.replace("http://", "ws://") + "/v1/agents/me/stream"
    async with connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        live = Console(ws)
        hello = await live.next("hello")
        assert hello["agent"] in ("ann", "ben")
        yield live


@pytest.fixture
def settings(hub_settings: Settings, tmp_path: Path) -> Settings:
    config = tmp_path / "routing.yaml"
    config.write_text(ROUTING)
    return hub_settings.model_copy(
        update={
            "routing_config": config,
            "twilio_auth_token": SecretStr(TWILIO_TOKEN),
            "public_base_url": "https://hooks.example.com/sb",
        }
    )


@pytest.fixture
def tokens(settings: Settings) -> dict[str, str]:
    users = bootstrap(settings).user_directory()
    users.register("boss", roles=["admin"])
    out = {}
    for name in ("ann", "ben"):
        users.register(name, roles=["agent"], password=f"{name}-password-long-enough")
        out[name] = users.issue_token(name).token
    return out


async def twilio_post(
    client: httpx.AsyncClient, settings: Settings, path: str, params: dict[str, str]
) -> httpx.Response:
    signed = signed_twilio_request(TWILIO_TOKEN, f"{settings.public_base_url}{path}", params)
    return await client.post(path, data=params, headers=signed)


def incoming(sid: str, caller: str = CALLER) -> dict[str, str]:
    return {"CallSid": sid, "From": caller, "To": HOTLINE, "Direction": "inbound"}


async def set_presence(client: httpx.AsyncClient, token: str, presence: str) -> dict[str, Any]:
    """Set it as the console does: a 503 (Kafka not reached yet, Retry-After) is tried again."""
    answers: list[httpx.Response] = []

    async def accepted() -> bool:
        answers.append(
            await client.put(
                "/v1/agents/me/presence",
                json={"presence": presence},
                headers={"Authorization": f"Bearer {token}"},
            )
        )
        assert answers[-1].status_code in (200, 503), answers[-1].text
        return answers[-1].status_code == 200

    await eventually(accepted, interval=0.2, what=f"presence {presence} to be accepted")
    return answers[-1].json()


async def test_a_call_pops_on_the_routed_agents_console_on_another_gateway(
    settings: Settings, tokens: dict[str, str]
) -> None:
    async with (
        gateway(settings, ("api", "recorder", "timeline")) as a_url,
        gateway(settings, ("api",)) as b_url,
        httpx.AsyncClient(base_url=a_url) as a,
        httpx.AsyncClient(base_url=b_url) as b,
    ):
        # Presence set on A reaches B through Kafka.
        assert (await set_presence(a, tokens["ann"], "available"))["presence"] == "available"
        await set_presence(a, tokens["ben"], "away")

        async def b_sees_ann_available() -> bool:
            me = await b.get("/v1/agents/me", headers={"Authorization": f"Bearer {tokens['ann']}"})
            return me.json()["presence"] == "available"

        await eventually(b_sees_ann_available, what="B to read ann's presence from Kafka")

        async with console(b_url, tokens["ann"]) as ann, console(a_url, tokens["ben"]) as ben:
            ringing = await twilio_post(a, settings, "/webhooks/twilio/voice", incoming("CA1"))
            assert ringing.status_code == 200, ringing.text
            twiml = ET.fromstring(ringing.content)
            assert twiml.findtext("Dial/Client/Identity") == "ann"

            pop = (await ann.next("pop"))["pop"]
            assert pop["call_id"] == "CA1" and pop["state"] == "ringing"
            assert pop["party"] == CALLER and pop["target"]["agent"] == "ann"
            assert pop["rule"] == "skills" and "ann" in pop["reason"]

            # The agent's leg is answered: the pop says so.
            answered = {
                "CallSid": "CA1-leg",
                "ParentCallSid": "CA1",
                "From": CALLER,
                "To": "client:ann",
                "Direction": "outbound-dial",
                "CallStatus": "in-progress",
            }
            status = await twilio_post(a, settings, "/webhooks/twilio/voice/status", answered)
            assert status.status_code == 204, status.text
            update = (await ann.next("pop.update"))["pop"]
            assert (update["call_id"], update["state"], update["agent"]) == (
                "CA1",
                "answered",
                "ann",
            )

            # ann holds a call now (capacity 1): the next caller is ben's, once he is back.
            await set_presence(a, tokens["ben"], "available")
            second = await twilio_post(
                a, settings, "/webhooks/twilio/voice", incoming("CA2", "+14155550222")
            )
            assert ET.fromstring(second.content).findtext("Dial/Client/Identity") == "ben"
            # ben's first pop is CA2's: CA1 never reached his console.
            assert (await ben.next("pop"))["pop"]["call_id"] == "CA2"

        # ann reconnects while CA1 is answered and nothing rings for her: just the hello.
        # A new call for her rings while she is away from the page; back, she gets it first.
        ended = {**incoming("CA1"), "CallStatus": "completed", "CallDuration": "42"}
        assert (await twilio_post(a, settings, "/webhooks/twilio/voice/status", ended)).is_success

        async def ann_is_free() -> bool:
            me = await a.get("/v1/agents/me", headers={"Authorization": f"Bearer {tokens['ann']}"})
            return me.json()["load"].get("voice", 0) == 0

        await eventually(ann_is_free, what="ann's call to end on A's board")
        third = await twilio_post(
            a, settings, "/webhooks/twilio/voice", incoming("CA3", "+14155550333")
        )
        assert ET.fromstring(third.content).findtext("Dial/Client/Identity") == "ann"

        async def ringing_on_b() -> bool:
            me = await b.get("/v1/agents/me", headers={"Authorization": f"Bearer {tokens['ann']}"})
            return me.json()["ringing"] == 1

        await eventually(ringing_on_b, what="CA3 to reach B")
        async with console(b_url, tokens["ann"]) as ann_again:
            assert (await ann_again.next("pop"))["pop"]["call_id"] == "CA3"

        # The decision is in the caller's history, with its reason.
        entries = await timeline_when_shown(settings, CALLER, 4)
        routed = [e for e in entries if e.type == "contact.routed.v1"]
        assert len(routed) == 1 and routed[0].direction == "internal"
        assert routed[0].summary.startswith("Routed to agent ann")
        assert routed[0].payload["reason"] == pop["reason"]


async def test_the_console_signs_in_with_a_password_and_is_guarded_by_csrf_and_origin(
    settings: Settings, tokens: dict[str, str]
) -> None:
    async with gateway(settings, ("api",)) as url, httpx.AsyncClient(base_url=url) as web:
        page = await web.get("/console/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert (await web.get("/console/session")).status_code == 204  # nobody signed in

        wrong = await web.post("/console/session", json={"username": "ann", "password": "nope"})
        assert wrong.status_code == 401
        signed_in = await web.post(
            "/console/session",
            json={"username": "ann", "password": "ann-password-long-enough"},
        )
        assert signed_in.status_code == 200, signed_in.text
        session = signed_in.json()
        assert session["username"] == "ann" and session["roles"] == ["agent"]
        cookie = signed_in.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")

        # The cookie reads; a change without the CSRF token is refused, with it accepted.
        assert (await web.get("/v1/agents/me")).json()["agent"] == "ann"
        refused = await web.put("/v1/agents/me/presence", json={"presence": "available"})
        assert refused.status_code == 403 and "X-CSRF-Token" in refused.json()["detail"]
        accepted = await web.put(
            "/v1/agents/me/presence",
            json={"presence": "available"},
            headers={"X-CSRF-Token": session["csrf_token"]},
        )
        assert accepted.status_code == 200 and accepted.json()["presence"] == "available"
        # An agent may not list every agent (supervisors do).
        assert (await web.get("/v1/agents")).status_code == 403

        # The WebSocket with the cookie: from the page's own origin yes, from another no.
        ws_url = url.replace("http://", "ws://") + "/v1/agents/me/stream"
        jar = f"sb_session={web.cookies['sb_session']}"
        async with connect(ws_url, additional_headers={"Cookie": jar}, origin=url) as ws:
            assert json.loads(await ws.recv())["kind"] == "hello"
        with pytest.raises(Exception, match="403"):
            async with connect(
                ws_url, additional_headers={"Cookie": jar}, origin="https://evil.example"
            ):
                pass
        with pytest.raises(Exception, match="403"):
            async with connect(ws_url):
                pass

        # The same stream as Server-Sent Events.
        async with web.stream("GET", "/v1/agents/me/events") as events:
            assert events.headers["content-type"].startswith("text/event-stream")
            lines = events.aiter_lines()
            assert await anext(lines) == "event: hello"
            assert json.loads((await anext(lines)).removeprefix("data: "))["agent"] == "ann"

        out = await web.delete("/console/session", headers={"X-CSRF-Token": session["csrf_token"]})
        assert out.status_code == 204
        assert (await web.get("/v1/agents/me")).status_code == 401
