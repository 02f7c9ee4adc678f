"""``make up STORE=postgres`` (``switchboard up --store postgres``): the hub on a throwaway
PostgreSQL it starts itself; the tables made on start; a contact recorded and looked up
through the API; Ctrl-C stops it all and removes the cluster's files."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import httpx
import pytest

from services.bootstrap.settings import Settings
from tests.e2e.processes import ChildProcess
from tests.helpers import eventually, settings_env

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TOKEN = "cti-token-for-up-postgres"
CALLER = "+493055567890"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return "sqlite"  # what the environment says; --store postgres overrides it


async def test_up_with_store_postgres_runs_the_hub_on_its_own_cluster_and_removes_it(
    hub_settings: Settings, tmp_path: Path
) -> None:
    log_path = tmp_path / "up.log"
    env = {
        **os.environ,
        **settings_env(hub_settings),
        "SWITCHBOARD_CTI_TOKEN": TOKEN,
        "COLUMNS": "400",  # one line per message: the test reads the token and the paths
    }
    hub = ChildProcess(
        [sys.executable, "-m", "services", "up", "--store", "postgres"], log_path, env
    )
    hub.start()
    base = f"http://127.0.0.1:{hub_settings.http_port}"
    cluster_dir: Path | None = None

    def output() -> str:
        return log_path.read_text(errors="replace")

    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:

            async def ready() -> bool:
                assert hub.proc is not None and hub.proc.poll() is None, output()[-3000:]
                try:
                    return (await client.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(ready, timeout=120, what="the hub on PostgreSQL to be ready")
            text = output()
            assert "store postgresql://postgres@127.0.0.1:" in text
            cluster_dir = Path(re.search(r"PostgreSQL in (\S+) ", text).group(1)).parent
            assert cluster_dir.exists()
            bearer = re.search(r'Authorization: Bearer (\S+)"', text).group(1)
            call = {
                "event": "newCall",
                "call_id": "up-pg-1",
                "direction": "inbound",
                "from": CALLER,
                "to": "+493055500000",
            }
            answer = await client.post(
                "/webhooks/cti/events", json=call, headers={"Authorization": f"Bearer {TOKEN}"}
            )
            assert answer.status_code == 200, answer.text

            async def known() -> bool:
                found = await client.get(
                    "/v1/lookup",
                    params={"address": CALLER},
                    headers={"Authorization": f"Bearer {bearer}"},
                )
                assert found.status_code == 200, found.text
                return found.json()["known"] is True

            await eventually(known, timeout=60, what="the caller to be known")
        assert hub.proc is not None
        hub.proc.send_signal(signal.SIGINT)
        assert hub.proc.wait(60) == 0, output()[-3000:]
        assert not cluster_dir.exists(), "the throwaway cluster's files were left behind"
        assert "stopping PostgreSQL and removing its data" in output()
    finally:
        hub.kill()
        pid_file = cluster_dir / "data" / "postmaster.pid" if cluster_dir else None
        if pid_file is not None and pid_file.exists():  # the hub died before stopping it
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGQUIT)
