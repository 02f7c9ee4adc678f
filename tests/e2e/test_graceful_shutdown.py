"""SIGTERM under load: the hub refuses new webhooks (503 + Retry-After, so the phone system
retries), finishes those in flight, commits and exits 0 within its deadline; the retries,
taken by the restarted hub, are recorded; nothing is lost, nothing doubled."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest

from services.bootstrap.settings import Settings
from tests.e2e.processes import ChildProcess
from tests.helpers import eventually, recorded_refs, recorded_to_end, settings_env

pytestmark = pytest.mark.slow

TOKEN = "cti-token-for-shutdown"
DRAIN_SECONDS = 15
CLIENTS = 6


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """The drain is the services'; the stores are tested on both elsewhere."""
    return f"sqlite:///{tmp_path / 'history.db'}"


def hub_process(settings: Settings, log_path: Path) -> ChildProcess:
    env = {
        **settings_env(settings),
        "SWITCHBOARD_CTI_TOKEN": TOKEN,
        "SWITCHBOARD_DRAIN_SECONDS": str(DRAIN_SECONDS),
        "SWITCHBOARD_DRAIN_REFUSE_SECONDS": "1",
    }
    args = [sys.executable, "-m", "services", "serve", "api", "recorder", "timeline"]
    return ChildProcess(args, log_path, env={**os.environ, **env})


def ringing(call_id: str) -> dict[str, str]:
    return {
        "event": "newCall",
        "call_id": call_id,
        "direction": "inbound",
        "from": f"+49305559{int(call_id.split('-')[1]) % 1000:04d}",
        "to": "+493055500000",
    }


async def ready(client: httpx.AsyncClient) -> bool:
    try:
        answer = await client.get("/readyz")
    except httpx.TransportError:
        return False
    return answer.status_code == 200


async def test_sigterm_under_load_refuses_then_drains_and_loses_and_doubles_nothing(
    hub_settings: Settings, tmp_path: Path
) -> None:
    settings = hub_settings
    base = f"http://127.0.0.1:{settings.http_port}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    first = hub_process(settings, tmp_path / "hub-1.log").start()
    second: ChildProcess | None = None
    ids = (f"drain-{n}" for n in itertools.count())
    accepted: set[str] = set()
    to_retry: list[str] = []  # refused, or no answer: the phone system tries again later
    refusals: list[httpx.Response] = []
    sent: list[str] = []
    stop_load = asyncio.Event()
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            await eventually(lambda: ready(client), timeout=90, what="the hub to be ready")

            async def phone_system() -> None:
                while not stop_load.is_set():
                    call_id = next(ids)
                    sent.append(call_id)
                    try:
                        answer = await client.post(
                            "/webhooks/cti/events", json=ringing(call_id), headers=auth
                        )
                    except httpx.TransportError:
                        to_retry.append(call_id)
                        await asyncio.sleep(0.05)  # the listener is gone: don't spin
                        continue
                    if answer.status_code == 200:
                        accepted.add(call_id)
                    else:
                        assert answer.status_code == 503, answer.text
                        refusals.append(answer)
                        to_retry.append(call_id)

            load = [asyncio.create_task(phone_system()) for _ in range(CLIENTS)]
            await eventually(lambda: len(accepted) >= 150, timeout=60, what="150 webhooks")
            assert first.proc is not None
            first.proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            code = await asyncio.to_thread(first.proc.wait, DRAIN_SECONDS + 15)
            took = time.monotonic() - signalled
            stop_load.set()
            await asyncio.gather(*load)
            log = (tmp_path / "hub-1.log").read_text(errors="replace")
            assert code == 0, log[-3000:]
            assert took < DRAIN_SECONDS + 5, f"took {took:.1f}s to stop"
            assert "shutting down: webhooks answer 503" in log
            assert refusals, "no webhook was refused while draining"
            assert all(r.headers.get("Retry-After") for r in refusals)
            assert "shutting down" in refusals[0].json()["detail"]

            second = hub_process(settings, tmp_path / "hub-2.log").start()
            await eventually(lambda: ready(client), timeout=90, what="the restarted hub")
            for call_id in to_retry:  # the phone system's retries
                answer = await client.post(
                    "/webhooks/cti/events", json=ringing(call_id), headers=auth
                )
                assert answer.status_code == 200, answer.text
        await recorded_to_end(settings, timeout=90)
        counts = recorded_refs(settings)
        assert len(counts) == len(set(sent)), (len(counts), len(set(sent)))
        assert set(counts.values()) == {1}, [k for k, v in counts.items() if v != 1][:5]
        assert {k.split("|")[1].split(":")[0] for k in counts} == set(sent)
    finally:
        stop_load.set()
        first.kill()
        if second is not None:
            second.stop()
