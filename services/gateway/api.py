"""The HTTP API: caller lookup and the customer timeline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, FastAPI, HTTPException, Query

from contracts import AddressError
from projections.timeline import TimelineView
from services.addressing import parse_any_address
from services.gateway.schemas import CustomerLookup, Delivery, Problem, Timeline, TimelineItem


def create_api(
    *,
    view: TimelineView,
    default_region: str | None = None,
    routers: Sequence[APIRouter] = (),
) -> FastAPI:
    api = FastAPI(
        title="Switchboard",
        version="0.1.0",
        description="Multichannel communication hub: caller lookup and customer timelines.",
    )

    @api.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get(
        "/v1/lookup",
        response_model=CustomerLookup,
        responses={404: {"model": Problem}, 422: {"model": Problem}},
        tags=["customers"],
    )
    def lookup(
        address: Annotated[str, Query(description="Phone number, e-mail or social id")],
    ) -> CustomerLookup:
        try:
            normalized = parse_any_address(address, default_region=default_region)
        except AddressError as e:
            raise HTTPException(422, str(e)) from None
        customer_id = view.customer_for_address(normalized)
        summary = view.summary(customer_id) if customer_id else None
        if summary is None:
            raise HTTPException(404, f"no customer has the address {normalized}")
        return CustomerLookup(address=normalized, **asdict(summary))

    @api.get(
        "/v1/customers/{customer_id}/timeline",
        response_model=Timeline,
        responses={404: {"model": Problem}},
        tags=["customers"],
    )
    def timeline(
        customer_id: UUID,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> Timeline:
        if view.summary(customer_id) is None:
            raise HTTPException(404, f"no customer {customer_id}")
        entries = view.timeline(customer_id, limit=limit, offset=offset)
        items = [
            TimelineItem(**{k: v for k, v in asdict(e).items() if k != "customer_id"})
            for e in entries
        ]
        return Timeline(customer_id=customer_id, items=items, limit=limit, offset=offset)

    @api.get(
        "/v1/deliveries/{message_ref}",
        response_model=Delivery,
        responses={404: {"model": Problem}},
        tags=["messages"],
    )
    def delivery(message_ref: str) -> Delivery:
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

    for router in routers:  # the channels' webhooks
        api.include_router(router)
    return api
