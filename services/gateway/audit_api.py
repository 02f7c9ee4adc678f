"""The auditor's API: a customer as of any moment (``GET /v1/audit/customers/{id}``) and the
person's full record (``…/export``, subject access); and the admin's erasure of a person
(``POST /v1/customers/{id}/erasure``, GDPR Art. 17)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import AwareDatetime, BaseModel, Field, field_validator

from projections.timeline import TimelineView
from services.audit.erasure import BASES, ErasureDone
from services.audit.export import Proof, render_html, subject_access
from services.audit.replay import NotYetACustomer, UnknownVersion, moment_of_version, replay
from services.gateway.customers_api import CardOut, card_out
from services.gateway.schemas import TimelineItem
from services.history.customers import AlreadyErased, CustomerHistory, CustomerNotFound
from services.history.sealing import CustomerErased


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


# -- erasure (GDPR Art. 17) ---------------------------------------------------------------------


class ErasureRequest(BaseModel):
    basis: str = Field(
        description="The legal basis: " + ", ".join(BASES) + ", or other:<your words>",
        examples=["consent-withdrawn"],
    )
    reason: str = Field(
        min_length=1,
        max_length=500,
        description="Why: kept with the erasure, in clear, as its audit trail",
        examples=["the customer asked by letter of 2026-11-30"],
    )

    @field_validator("basis")
    @classmethod
    def _known_basis(cls, value: str) -> str:
        if value in BASES or (value.startswith("other:") and value[6:].strip()):
            return value
        raise ValueError(f"unknown basis: use one of {', '.join(BASES)}, or other:<words>")

    @field_validator("reason")
    @classmethod
    def _said(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("say why: the reason is kept with the erasure")
        return value


class ErasureOut(BaseModel):
    erased: list[UUID] = Field(
        description="Every customer erased: the one named's survivor first, then those merged "
        "into it (one person)"
    )
    basis: str
    files_removed: int = Field(description="Files of theirs removed from the blob store")
    files_kept: int = Field(description="Files kept: another person's history has them too")
    campaigns_still_sending: list[str] = Field(
        description="Campaigns still sending to them from a plan made before: erase again "
        "once they ended (their ended campaigns' plans were rewritten without them)"
    )


Erase = Callable[[UUID, str, str, str], ErasureDone]


def erasure_router(erase: Erase) -> APIRouter:
    """``erase(customer_id, by, basis, reason)``: the whole erasure (``erase_person``)."""
    router = APIRouter(tags=["audit"])

    def caller(request: Request) -> str:
        return str(request.state.caller.username)

    @router.post(
        "/customers/{customer_id}/erasure",
        responses={
            404: {"description": "No such customer."},
            409: {"description": "The customer was erased already."},
        },
    )
    def erase_customer(customer_id: UUID, body: ErasureRequest, request: Request) -> ErasureOut:
        """Erase a person's personal data (GDPR Art. 17) by crypto-shredding: their key is
        deleted, so their events keep only what names no one; the views and their files are
        purged; the erasure (who, when, basis, reason) stays as the audit trail.  A customer
        merged with others is erased with them.  This cannot be undone.  Admins only."""
        try:
            done = erase(customer_id, caller(request), body.basis, body.reason)
        except CustomerErased:
            raise AlreadyErased(customer_id) from None
        return ErasureOut(
            erased=done.erasure.group,
            basis=body.basis,
            files_removed=len(done.files_removed),
            files_kept=len(done.files_kept),
            campaigns_still_sending=done.plans_running,
        )

    return router
