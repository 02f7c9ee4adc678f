"""Keep a long-running service alive: a failure is logged with its cause and the service
restarted with back-off, so one broken part (Kafka down, a store that does not answer)
never takes the rest of the hub, its API included, down with it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiokafka.errors import KafkaConnectionError

log = logging.getLogger(__name__)

# Expected while a broker restarts or is not up yet: one line, no traceback.
_OUTAGES = (KafkaConnectionError, ConnectionError, TimeoutError)


async def supervise(
    name: str,
    run: Callable[[], Awaitable[None]],
    stop: asyncio.Event,
    *,
    first_delay: float = 1.0,
    max_delay: float = 30.0,
    healthy_after: float = 60.0,
    states: dict[str, str] | None = None,
) -> None:
    """Run ``run()`` until ``stop`` is set, restarting it whenever it fails or returns early.

    The delay doubles from ``first_delay`` up to ``max_delay`` and starts over once a run
    has lasted ``healthy_after`` seconds.  ``states[name]`` says how it goes: ``ok`` while it
    runs, else why not (``/readyz`` shows it).
    """
    states = {} if states is None else states
    delay = first_delay
    while not stop.is_set():
        started = time.monotonic()
        failure: Exception | None = None
        states[name] = "ok"
        try:
            await run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failure = exc
        if failure is None and stop.is_set():
            return
        if time.monotonic() - started >= healthy_after:
            delay = first_delay  # it ran well for a while: the back-off starts over
        states[name] = (
            "stopped by itself" if failure is None else _cause(failure)
        ) + f"; restarting in {delay:.0f} s"
        if failure is None:
            log.warning("%s stopped by itself; restarting in %.0fs", name, delay)
        elif isinstance(failure, _OUTAGES):
            log.warning("%s cannot run: %s; retrying in %.0fs", name, _cause(failure), delay)
        else:
            log.error(
                "%s failed: %s; restarting in %.0fs", name, _cause(failure), delay, exc_info=failure
            )
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
        except TimeoutError:
            pass
        delay = min(delay * 2, max_delay)


def _cause(exc: BaseException) -> str:
    name, text = type(exc).__name__, str(exc)
    return text if text.startswith(name) else f"{name}: {text}" if text else name
