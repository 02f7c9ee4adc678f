"""The HTTP API: caller lookup, the customer timeline, delivery reports and users.

Every operation under ``/v1`` needs a bearer token and a role (``auth.py``, ``roles.py``);
``/healthz``, ``/readyz``, ``/metrics`` and the documentation pages are open (they hold no
customer data).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, FastAPI, HTTPException, Path, Query

from projections.reachability_store import ReachabilityView
from projections.timeline import TimelineView
from services.audit.access_log import AccessLog
from services.gateway.access import AccessTable
from services.gateway.access_log import (
    AccessRecorder,
    RecordReads,
    access_log_router,
    document_reads,
)
from services.gateway.auth import V1Guard, document_access, v1_router
from services.gateway.console import install_console
from services.gateway.customers_api import add_directory_routes
from services.gateway.docs import install_offline_docs
from services.gateway.operations import Drain, instrument, operations_router
from services.gateway.problems import (
    install_problem_handlers,
    problem_documented_openapi,
)
from services.gateway.schemas import Delivery, Timeline, TimelineItem
from services.gateway.session import SessionCodec
from services.gateway.users_api import users_router
from services.history.users import UserDirectory

# The largest offset both stores take (SQLite and PostgreSQL bind it as a 64-bit integer);
# far beyond any customer's history, and a bound the document can state.
MAX_OFFSET = 2**31 - 1
# A provider's message id, as the contracts accept one (contracts.text.Ref).
MESSAGE_REF_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]+$"


def create_api(
    *,
    view: TimelineView,
    users: UserDirectory,
    default_region: str | None = None,
    routers: Sequence[APIRouter] = (),
    access: AccessTable | None = None,
    sessions: SessionCodec | None = None,
    readiness: Callable[[], Awaitable[dict[str, str]]] | None = None,
    drain: Drain | None = None,
    access_log: AccessLog | None = None,
    reachability: ReachabilityView | None = None,
) -> FastAPI:
    """The API over ``view``; ``users`` says who may call it (``access``: the table of their
    tokens, built from ``users`` unless given).  With ``sessions``, the agent console is
    served at ``/console/`` and its session cookie is accepted on ``/v1``.  With
    ``access_log``, every read of a customer's data (and every 403) is recorded in it before
    it is answered, and auditors query it (``GET /v1/audit/access``).  With ``reachability``,
    a customer's card ranks their channels (``GET /v1/customers/{id}``)."""
    api = FastAPI(
        title="Switchboard",
        version="0.1.0",
        description="Multichannel communication hub: caller lookup and customer timelines.",
        # FastAPI's own pages load from a CDN; install_offline_docs serves them from the package.
        docs_url=None,
        redoc_url=None,
    )
    install_offline_docs(api)

    api.include_router(operations_router(readiness, drain))

    access = access or AccessTable(users)
    reads = AccessRecorder(access_log) if access_log is not None else None
    if reads is not None:  # inside the guard: it knows the caller
        api.add_middleware(RecordReads, recorder=reads)
    refusals = reads.refusal if reads is not None else None
    api.add_middleware(V1Guard, access=access, sessions=sessions, refusals=refusals)
    v1 = v1_router()

    add_directory_routes(v1, view, default_region=default_region, reachability=reachability)

    @v1.get(
        "/customers/{customer_id}/timeline",
        response_model=Timeline,
        responses={404: {"description": "No such customer."}},
        tags=["customers"],
    )
    def timeline(
        customer_id: UUID,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> Timeline:
        if view.summary(customer_id) is None:
            raise HTTPException(404, f"no customer {customer_id}")
        # A merged customer's history shows on the survivor's timeline (its card says which).
        entries = view.timeline(customer_id, limit=limit, offset=offset)
        items = [
            TimelineItem(**{k: v for k, v in asdict(e).items() if k != "customer_id"})
            for e in entries
        ]
        return Timeline(customer_id=customer_id, items=items, limit=limit, offset=offset)

    @v1.get(
        "/deliveries/{message_ref}",
        response_model=Delivery,
        responses={404: {"description": "No outbound message has this id."}},
        tags=["messages"],
    )
    def delivery(
        message_ref: Annotated[
            str, Path(min_length=1, max_length=512, pattern=MESSAGE_REF_PATTERN)
        ],
    ) -> Delivery:
        """How far an outbound message got: sent, delivered, read, or failed (forward only)."""
        report = view.delivery_status(message_ref)
        if report is None:
            raise HTTPException(404, f"no outbound message {message_ref}")
        return Delivery(
            message_ref=report.message_ref,
            customer_id=report.customer_id,
            channel=report.channel,
            status=str(report.status),
            updated_at=report.occurred_at,
        )

    v1.include_router(users_router(users, changed=lambda: access.refresh(wait=True)))
    if access_log is not None:
        v1.include_router(access_log_router(access_log))
    api.include_router(v1)
    for router in routers:  # the channels' webhooks: the provider's signature, no bearer
        api.include_router(router)
    if sessions is not None:
        install_console(api, users=users, access=access, sessions=sessions)
    install_problem_handlers(api)
    instrument(api, drain)
    amend = document_access if reads is None else lambda d: document_reads(document_access(d))
    api.openapi = problem_documented_openapi(api, amend=amend)  # type: ignore[method-assign]
    api.openapi()  # an unguarded /v1 operation, or one without a role rule, fails here
    return api
