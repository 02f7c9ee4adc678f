"""The auditor's API: a customer as of any moment (``GET /v1/audit/customers/{id}``) and the
person's full record (``…/export``, subject access)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import AwareDatetime, BaseModel, Field

from projections.timeline import TimelineView
from services.audit.export import Proof, render_html, subject_access
from services.audit.replay import NotYetACustomer, UnknownVersion, moment_of_version, replay
from services.gateway.customers_api import CardOut, card_out
from services.gateway.schemas import TimelineItem
from services.history.customers import CustomerHistory, CustomerNotFound


class Replay(BaseModel):
    customer_id: UUID
    as_of: datetime = Field(description="The moment replayed (the recorded time of events)")
    version: int = Field(description="The customer's stream version in force then")
    state: dict[str, Any] = Field(
        description="The customer's own state then: addresses, consent, profile, merges"
    )
    card: CardOut | None = Field(
        description="The card an agent saw then (null when merged into another: see state)"
    )
    timeline: list[TimelineItem] = Field(description="The timeline then, newest first")
    events_replayed: int = Field(description="Stored events projected to rebuild it")


def audit_router(
    history: CustomerHistory, view: TimelineView, *, proof: Proof | None = None
) -> APIRouter:
    router = APIRouter(prefix="/audit", tags=["audit"])

    @router.get(
        "/customers/{customer_id}/export",
        responses={
            200: {
                "content": {"application/json": {}, "text/html": {}},
                "description": "The person's full record (JSON), or a readable page (HTML)",
            },
            404: {"description": "No such customer."},
        },
    )
    def subject_access_export(
        customer_id: UUID,
        format: Annotated[
            Literal["json", "html"], Query(description="json (default) or html")
        ] = "json",
    ) -> Response:
        """Subject access (GDPR Art. 15): everything held about the person, with each stored
        event's place in the store's hash chain.  Auditors and admins."""
        try:
            document = subject_access(history, view, customer_id, proof=proof)
        except CustomerNotFound as e:
            raise HTTPException(404, str(e)) from None
        disposition = {"Content-Disposition": f'attachment; filename="subject-{customer_id}'}
        if format == "html":
            disposition["Content-Disposition"] += '.html"'
            return HTMLResponse(render_html(document), headers=disposition)
        disposition["Content-Disposition"] += '.json"'
        return JSONResponse(document, headers=disposition)

    @router.get(
        "/customers/{customer_id}",
        response_model=Replay,
        responses={
            404: {"description": "No such customer at that moment (or at all)."},
            422: {"description": "Neither or both of as_of and version, or a bad value."},
        },
    )
    def customer_as_of(
        customer_id: UUID,
        as_of: Annotated[
            AwareDatetime | None,
            Query(description="The moment, with its time zone (ISO 8601)"),
        ] = None,
        version: Annotated[
            int | None, Query(ge=1, description="Or: the customer's stream version")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Replay:
        """The customer's state, card and timeline exactly as they were at ``as_of`` (or when
        its stream reached ``version``), merges and unmerges in force then included: rebuilt
        from the events recorded by then.  Auditors and admins."""
        if (as_of is None) == (version is None):
            field = "version" if as_of is not None else "as_of"
            raise RequestValidationError(
                [
                    {
                        "loc": ("query", field),
                        "msg": "give exactly one of as_of and version",
                        "type": "value_error",
                        "input": None,
                    }
                ]
            )
        try:
            moment = as_of or moment_of_version(history, customer_id, version or 0)
            found = replay(history, customer_id, moment, limit=limit)
        except (NotYetACustomer, CustomerNotFound) as e:
            raise HTTPException(404, str(e.args[0]) if e.args else str(e)) from None
        except UnknownVersion as e:
            raise HTTPException(404, str(e)) from None
        return Replay(
            customer_id=found.customer_id,
            as_of=found.as_of,
            version=found.version,
            state=found.state,
            card=card_out(found.card) if found.card is not None else None,
            timeline=[
                TimelineItem(**{k: v for k, v in asdict(e).items() if k != "customer_id"})
                for e in found.timeline
            ],
            events_replayed=found.events_replayed,
        )

    return router
