"""What ``GET /readyz`` checks in one hub process: the checks ``run_hub`` wires in.

- ``kafka``: the cluster answers a metadata request (within ``TIMEOUT_S``);
- ``store``: the event store answers (its last notification id);
- every supervised service of the process (``supervise`` says how each goes): ``ok`` while it
  runs, else the cause of its last failure and when it is retried;
- ``recorder`` (when it runs here): it holds partitions, and its lag — records on them not
  recorded yet — is at most ``ready_max_lag``;
- ``router`` (when the message router runs here): it holds partitions;
- ``webhook publisher`` (with the API): connected to Kafka, so a webhook can be answered.

Answers are kept for ``CACHE_S`` seconds, so a probe every second costs Kafka and the store
little.  A recorder that holds no partition (more instances than partitions) reads not ready:
deploy recorders apart from the API (docs: Production).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiokafka.admin import AIOKafkaAdminClient

if TYPE_CHECKING:
    from services.bootstrap.bootstrap import Hub

TIMEOUT_S = 3.0
CACHE_S = 2.0
OK = "ok"


class HubReadiness:
    def __init__(self, hub: Hub, *, states: dict[str, str], running: dict[str, Any]) -> None:
        self.hub = hub
        self.states = states  # supervised service -> "ok" or why not
        self.running = running  # what runs here now: "recorder" -> its current Recorder
        self._history: Any = None  # opened once, on the first check
        self._answer: dict[str, str] = {}
        self._at = -1e9
        self._lock = asyncio.Lock()

    async def __call__(self) -> dict[str, str]:
        async with self._lock:
            if time.monotonic() - self._at >= CACHE_S:
                self._answer = await self._check()
                self._at = time.monotonic()
            return dict(self._answer)

    async def _check(self) -> dict[str, str]:
        kafka, store = await asyncio.gather(
            _within(self._kafka, "Kafka"), _within(self._store, "the store")
        )
        checks = {"kafka": kafka, "store": store}
        checks.update(sorted(self.states.items()))
        recorder = self.running.get("recorder")
        if recorder is not None and self.states.get("recorder") == OK:
            checks["recorder"] = await _within(lambda: self._recorder(recorder), "the recorder")
        publisher = self.running.get("webhook publisher")
        if publisher is not None and self.states.get("webhook publisher") == OK:
            checks["webhook publisher"] = (
                OK if publisher.connected else "not connected to Kafka yet"
            )
        routers = self.hub.message_routers
        if routers and self.states.get("router") == OK:
            checks["router"] = OK if routers[-1].assigned else "no partitions assigned yet"
        return checks

    async def _kafka(self) -> str:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.hub.kafka,
            client_id="switchboard-readiness",
            request_timeout_ms=int(TIMEOUT_S * 1000),
        )
        try:
            await admin.start()
            await admin.list_topics()
        except Exception as e:
            return f"not reachable at {self.hub.kafka}: {type(e).__name__}: {e}"
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        return OK

    def last_event(self) -> int | None:
        """The store's last notification id (blocking: call it off the event loop)."""
        if self._history is None:
            self._history = self.hub.history(cached=False)
        return self._history.recorder.max_notification_id()

    async def _store(self) -> str:
        await asyncio.to_thread(self.last_event)
        return OK

    async def _recorder(self, recorder: Any) -> str:
        if not any(recorder.stats.assigned.values()):
            return "no partitions assigned yet"
        lag = await recorder.lag()
        bound = self.hub.settings.ready_max_lag
        if lag is not None and lag > bound:
            return f"{lag} records behind (more than {bound})"
        return OK


async def _within(check: Callable[[], Awaitable[str]], what: str) -> str:
    try:
        return await asyncio.wait_for(check(), TIMEOUT_S)
    except TimeoutError:
        return f"{what} did not answer within {TIMEOUT_S:g} s"
    except Exception as e:
        return f"{type(e).__name__}: {e}"
