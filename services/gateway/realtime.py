"""The agent's live side of the API: presence, and the stream of screen pops.

- ``GET /v1/agents/me`` and ``PUT /v1/agents/me/presence``: the signed-in agent's presence,
  queues and load.  A presence change is published on ``sb.presence.v1`` (confirmed by Kafka)
  before it is answered: the router of every instance reads it from there.
- ``GET /v1/agents``: every agent of the routing configuration, for supervisors.
- ``GET /v1/supervisor/queues``: live queues and today's figures (``services/gateway/floor.py``).
- ``/v1/agents/me/stream`` (WebSocket) and ``GET /v1/agents/me/events`` (Server-Sent Events,
  for networks that break WebSockets): the pops for this agent, their updates, and presence
  changes, as JSON ``{"kind": …}`` messages (``services/gateway/pops.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, Field

from contracts import AgentPresenceChanged, OfferAnswered
from projections.timeline import AgentConversation
from services.gateway.floor import Floor
from services.gateway.pops import AgentStream, PopBoard
from services.router.board import AgentBoard

KEEPALIVE_S = 15.0


class PresenceChange(BaseModel):
    presence: Literal["available", "busy", "away", "offline"] = Field(examples=["available"])


class AgentOut(BaseModel):
    agent: str = Field(examples=["ann"])
    presence: str = Field(examples=["available"])
    since: datetime | None = Field(description="When this presence was set")
    queues: list[str] = Field(examples=[["support", "vip"]])
    load: dict[str, int] = Field(
        description="Contacts the agent holds now, per channel", examples=[{"voice": 1}]
    )
    ringing: int = Field(description="Calls ringing for the agent now")


class AgentsOut(BaseModel):
    agents: list[AgentOut]


class OfferAnswer(BaseModel):
    contact_ref: str = Field(
        min_length=1, max_length=512, description="The message offered", examples=["wamid.HBgL"]
    )
    attempt: int = Field(ge=1, le=1_000_000, description="The offer's attempt", examples=[1])
    accept: bool = Field(description="true: take it; false: decline (it goes to the next agent)")


class OfferAnswerOut(BaseModel):
    contact_ref: str
    attempt: int
    accepted: bool


class MyConversation(BaseModel):
    conversation_id: UUID
    customer_id: UUID
    channel: str = Field(examples=["whatsapp"])
    status: str = Field(description="assigned or pending", examples=["assigned"])
    opened_at: datetime


class MyConversations(BaseModel):
    agent: str = Field(examples=["ann"])
    items: list[MyConversation] = Field(description="Newest first, at most 100")


def agents_router(
    *,
    board: AgentBoard,
    pops: PopBoard,
    serves: Callable[[str], list[str]],
    agents: Callable[[], list[str]],
    publish_presence: Callable[[AgentPresenceChanged], Awaitable[None]],
    conversations_of: Callable[[str], list[AgentConversation]] | None = None,
    publish_answer: Callable[[OfferAnswered], Awaitable[None]] | None = None,
) -> APIRouter:
    router = APIRouter(prefix="/agents", tags=["agents"])

    def agent_out(name: str) -> AgentOut:
        presence, at = board.presence_of(name)
        return AgentOut(
            agent=name,
            presence=str(presence),
            since=at if at.year > 1970 else None,
            queues=serves(name),
            load=dict(board.state(name).load),
            ringing=len(pops.ringing_for(name)),
        )

    def hello(name: str) -> dict[str, Any]:
        presence, _ = board.presence_of(name)
        return {"kind": "hello", "agent": name, "presence": str(presence)}

    @router.get("/me", response_model=AgentOut)
    def me(request: Request) -> AgentOut:
        """The signed-in agent: presence, queues, what they hold now."""
        return agent_out(request.state.caller.username)

    @router.get("/me/conversations", response_model=MyConversations)
    def my_conversations(request: Request) -> MyConversations:
        """The conversations the signed-in agent has (assigned or pending): their work list.
        The stream says when it changes (``assigned``, ``unassigned``)."""
        name = request.state.caller.username
        found = conversations_of(name) if conversations_of is not None else []
        return MyConversations(
            agent=name,
            items=[
                MyConversation(
                    conversation_id=c.conversation_id,
                    customer_id=c.customer_id,
                    channel=c.channel,
                    status=c.status,
                    opened_at=c.opened_at,
                )
                for c in found
            ],
        )

    @router.post(
        "/me/offers",
        response_model=OfferAnswerOut,
        responses={
            404: {
                "description": "No such offer is open for you (answered, run out, or "
                "routed to someone else)."
            },
            503: {"description": "Kafka did not confirm the answer; try again."},
        },
    )
    async def answer_offer(answer: OfferAnswer, request: Request) -> OfferAnswerOut:
        """Accept or decline a message offered to you (the stream's ``offer``).  Accepted, the
        conversation is yours; declined, it goes to the next agent at once."""
        name = request.state.caller.username
        offered = pops.offer_for(name, answer.contact_ref, answer.attempt)
        if offered is None or publish_answer is None:
            raise HTTPException(404, f"no open offer of {answer.contact_ref} for {name}")
        event = OfferAnswered(
            channel=offered["channel"],
            party=offered["party"],
            contact_ref=answer.contact_ref,
            provider_ref=f"{answer.contact_ref}:answered:{answer.attempt}",
            occurred_at=datetime.now(UTC),
            attempt=answer.attempt,
            agent=name,
            accepted=answer.accept,
        )
        await publish_answer(event)
        return OfferAnswerOut(
            contact_ref=answer.contact_ref, attempt=answer.attempt, accepted=answer.accept
        )

    @router.put(
        "/me/presence",
        response_model=AgentOut,
        responses={503: {"description": "Kafka did not confirm the change; try again."}},
    )
    async def set_presence(change: PresenceChange, request: Request) -> AgentOut:
        """Become available, busy, away or offline.  Routing sees it at once."""
        name = request.state.caller.username
        event = AgentPresenceChanged(
            agent=name, presence=change.presence, occurred_at=datetime.now(UTC), by=name
        )
        await publish_presence(event)
        board.presence_changed(event)  # this instance at once; the others through Kafka
        return agent_out(name)

    @router.get("", response_model=AgentsOut)
    def every_agent() -> AgentsOut:
        """Every agent of the routing configuration, with presence and load."""
        return AgentsOut(agents=[agent_out(name) for name in agents()])

    @router.websocket("/me/stream")
    async def stream(websocket: WebSocket) -> None:
        name = websocket.state.caller.username
        await websocket.accept()
        connection = pops.connect(name, hello(name))
        reader = asyncio.create_task(_drain(websocket, connection))
        try:
            async for message in _messages(connection):
                if message is None:
                    await websocket.send_json({"kind": "ping"})
                    continue
                await websocket.send_json(message)
        except (WebSocketDisconnect, RuntimeError):
            pass  # the console went away
        finally:
            pops.disconnect(connection)
            reader.cancel()
            with contextlib.suppress(Exception):
                await websocket.close()

    @router.get("/me/events", response_class=EventSourceResponse)
    async def events(request: Request) -> AsyncIterator[ServerSentEvent]:
        """The same messages as the WebSocket, as Server-Sent Events (``event`` = kind)."""
        name = request.state.caller.username
        connection = pops.connect(name, hello(name))
        try:
            async for message in _messages(connection):
                if await request.is_disconnected():
                    return
                if message is None:
                    yield ServerSentEvent(comment="keep-alive")
                    continue
                yield ServerSentEvent(event=message["kind"], data=message)
        finally:
            pops.disconnect(connection)

    return router


async def _messages(connection: AgentStream) -> AsyncIterator[dict[str, Any] | None]:
    """The stream's messages; None every ``KEEPALIVE_S`` of quiet (a proxy keeps it open).
    Ends when the stream overflowed (the console stopped reading)."""
    while True:
        try:
            message = await asyncio.wait_for(connection.messages.get(), KEEPALIVE_S)
        except TimeoutError:
            yield None
            continue
        if message is None:
            return
        yield message


async def _drain(websocket: WebSocket, connection: AgentStream) -> None:
    """Read (and drop) what the console sends, so a close from its side ends the stream."""
    with contextlib.suppress(Exception):
        while True:
            await websocket.receive_text()
    connection.close()


class QueueNow(BaseModel):
    queue: str = Field(examples=["support"])
    waiting: int = Field(description="Contacts waiting in the queue now")
    longest_wait_s: float = Field(description="How long the longest-waiting one has waited")
    agents_available: int = Field(description="Agents serving the queue with room for a call")


class AgentToday(BaseModel):
    agent: str = Field(examples=["ann"])
    presence: str = Field(examples=["available"])
    contacts_today: int = Field(description="Contacts offered to the agent today")
    answered: int
    missed: int = Field(description="Offered but not taken (routed on, or the caller hung up)")
    avg_answer_s: float | None = Field(description="Arrival to answer, on average")
    avg_handle_s: float | None = Field(description="Talk time, on average")


class ChannelToday(BaseModel):
    channel: str = Field(examples=["voice"])
    contacts: int
    answered: int
    missed: int
    abandoned: int = Field(description="Hung up while waiting in a queue")


class FloorOut(BaseModel):
    day: str = Field(description="The day (UTC) the figures are for", examples=["2026-12-01"])
    queues: list[QueueNow]
    agents: list[AgentToday]
    channels: list[ChannelToday]


def supervisor_router(floor: Floor) -> APIRouter:
    router = APIRouter(prefix="/supervisor", tags=["agents"])

    @router.get("/queues", response_model=FloorOut)
    def queues_now() -> FloorOut:
        """Live queues and today's figures per agent and channel (the supervisor's view)."""
        return FloorOut.model_validate(floor.snapshot())

    return router
