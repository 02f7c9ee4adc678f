"""What an operator's tools ask of every hub process: ``/healthz``, ``/readyz``, ``/metrics``,
and the drain on shutdown.

The API serves these beside its own routes; a process without the API (``switchboard serve
recorder`` …) serves them alone through ``ops_app``, on the same port, so every pod has its
probes and its scrape target.

Draining: on SIGTERM the hub calls ``Drain.start()``.  From then on webhooks are answered
503 with ``Retry-After`` (the provider retries, and reaches another instance: the load balancer
takes this one out because ``/readyz`` says ``draining``), the webhooks already in flight
finish and publish, and only then does the process stop listening and stop its consumers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from services import metrics
from services.gateway.problems import problem_response

WEBHOOKS = "/webhooks/"
RETRY_AFTER_S = 5


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, str] = Field(
        description="Each check: ok, or why not",
        examples=[{"kafka": "ok", "store": "ok", "recorder": "no partitions assigned yet"}],
    )


class Drain:
    """Whether this process is shutting down, and the webhooks it is still answering."""

    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def start(self) -> None:
        self.draining = True

    def entered(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def left(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    async def settled(self, timeout: float) -> bool:
        """Wait until no webhook is in flight (True), or ``timeout`` seconds (False)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True


class DrainGuard:
    """ASGI middleware: counts the webhooks in flight; while draining, refuses new ones with
    503 and ``Retry-After`` (nothing of theirs was taken, so the provider's retry loses
    nothing).  The API, the console and the probes answer as before."""

    def __init__(self, app: Callable[..., Awaitable[None]], drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(WEBHOOKS):
            await self.app(scope, receive, send)
            return
        if self.drain.draining:
            metrics.HTTP_REFUSED_DRAINING.inc()
            refusal = problem_response(
                503,
                "this instance is shutting down; try again",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
            await refusal(scope, receive, send)
            return
        self.drain.entered()
        try:
            await self.app(scope, receive, send)
        finally:
            self.drain.left()


def operations_router(
    readiness: Callable[[], Awaitable[dict[str, str]]] | None, drain: Drain | None
) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    def healthz() -> dict[str, str]:
        """Alive: the process answers (a liveness probe)."""
        return {"status": "ok"}

    @router.get(
        "/readyz",
        response_model=Readiness,
        responses={503: {"description": "Not ready: the detail names each check that failed"}},
    )
    async def readyz() -> Readiness | Response:
        """Ready for traffic: Kafka and the store answer, this process's services run and
        hold their partitions, the recorder's lag is under its bound, and it is not shutting
        down.  ``checks`` names each check with ``ok``; when one is not, 503 with a detail
        naming it and why."""
        checks = await readiness() if readiness is not None else {}
        if drain is not None and drain.draining:
            checks["shutdown"] = "draining: this instance is shutting down"
        failing = {name: why for name, why in checks.items() if why != "ok"}
        if failing:
            detail = "not ready: " + "; ".join(f"{name}: {why}" for name, why in failing.items())
            return problem_response(503, detail, headers={"Retry-After": str(RETRY_AFTER_S)})
        return Readiness(ready=True, checks=checks)

    @router.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text"}},
    )
    def prometheus_metrics(request: Request) -> Response:
        """This process's metrics in Prometheus' text format, or OpenMetrics when asked
        (``Accept``); no personal data in any label."""
        body, content_type = metrics.exposition(request.headers.get("accept"))
        return Response(body, media_type=content_type)

    return router


def instrument(app: FastAPI, drain: Drain | None) -> None:
    """The middleware every hub HTTP app has: latency metrics, and the drain's guard."""
    if drain is not None:
        app.add_middleware(DrainGuard, drain=drain)
    app.add_middleware(metrics.HttpMetrics)  # outermost: it times the refusals too


def ops_app(
    readiness: Callable[[], Awaitable[dict[str, str]]] | None, drain: Drain | None = None
) -> FastAPI:
    """The probes and metrics alone: the HTTP side of a process that serves no API."""
    app = FastAPI(
        title="Switchboard operations",
        version="0.1.0",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.include_router(operations_router(readiness, drain))
    instrument(app, drain)
    return app


def monotonic_deadline(seconds: float) -> Callable[[], float]:
    """Seconds left until ``seconds`` from now (never below zero)."""
    end = time.monotonic() + seconds
    return lambda: max(0.0, end - time.monotonic())
