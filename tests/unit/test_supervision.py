"""A service of ``switchboard up`` that fails is logged with its cause and restarted with
back-off until the hub stops; the back-off is made short here (milliseconds, not seconds)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from services.bootstrap.supervision import supervise

FAST = {"first_delay": 0.01, "max_delay": 0.04, "healthy_after": 60.0}


def restarts(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "services.bootstrap.supervision" and r.levelno == level
    ]


async def test_a_failing_service_is_logged_with_its_cause_and_restarted_with_back_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop = asyncio.Event()
    runs = 0

    async def broken() -> None:
        nonlocal runs
        runs += 1
        if runs == 5:
            stop.set()
        try:
            {}["contact_ref"]
        except KeyError as e:
            raise RuntimeError("the desk follower lost its store") from e

    with caplog.at_level(logging.INFO, logger="services.bootstrap.supervision"):
        await asyncio.wait_for(supervise("desk", broken, stop, **FAST), timeout=10)

    assert runs == 5  # restarted until stop was set, then not again
    failed = restarts(caplog, logging.ERROR)
    assert len(failed) == 5
    first = failed[0]
    assert first.getMessage().startswith(
        "desk failed: RuntimeError: the desk follower lost its store; restarting in"
    )
    assert first.exc_info is not None and first.exc_info[0] is RuntimeError
    assert isinstance(first.exc_info[1].__cause__, KeyError)  # the traceback shows the cause
    assert [r.args[2] for r in failed] == [0.01, 0.02, 0.04, 0.04, 0.04]  # doubling, capped


async def test_a_broker_outage_is_one_line_and_a_service_that_returns_early_is_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop = asyncio.Event()
    runs = 0

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise ConnectionRefusedError("Connect call failed ('127.0.0.1', 9092)")
        if runs == 3:
            stop.set()
        # returns without being asked to: restarted too

    with caplog.at_level(logging.INFO, logger="services.bootstrap.supervision"):
        await asyncio.wait_for(supervise("recorder", flaky, stop, **FAST), timeout=10)

    assert runs == 3
    outage = restarts(caplog, logging.WARNING)[0]
    assert "recorder cannot run: ConnectionRefusedError" in outage.getMessage()
    assert outage.exc_info is None  # expected while a broker restarts: no traceback
    assert any("stopped by itself" in r.getMessage() for r in restarts(caplog, logging.WARNING))


async def test_a_stop_during_the_back_off_ends_supervision_at_once() -> None:
    stop = asyncio.Event()

    async def broken() -> None:
        asyncio.get_running_loop().call_later(0.05, stop.set)
        raise ValueError("boom")

    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(
        supervise("router", broken, stop, first_delay=30.0, max_delay=30.0), timeout=10
    )
    assert loop.time() - started < 5  # not the 30 s back-off


async def test_a_cancelled_hub_cancels_the_supervised_service() -> None:
    stop = asyncio.Event()
    running = asyncio.Event()

    async def forever() -> None:
        running.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(supervise("gateway", forever, stop, **FAST))
    await running.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_service_that_ran_well_before_it_failed_is_said_to_restart_after_the_first_delay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop = asyncio.Event()
    runs = 0

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs == 4:
            stop.set()
        if runs == 3:
            await asyncio.sleep(0.06)  # a healthy run: longer than healthy_after
        raise RuntimeError("lost the store")

    timing = {"first_delay": 0.01, "max_delay": 0.04, "healthy_after": 0.05}
    with caplog.at_level(logging.INFO, logger="services.bootstrap.supervision"):
        await asyncio.wait_for(supervise("desk", flaky, stop, **timing), timeout=10)
    said = [r.args[2] for r in restarts(caplog, logging.ERROR)]
    assert said == [0.01, 0.02, 0.01, 0.02]  # what is logged is what is waited
