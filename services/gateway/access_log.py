"""Every read of a customer's data through ``/v1`` is in the access log before it is answered.

``RecordReads`` is a plain ASGI middleware just inside ``V1Guard`` (which has put the caller in
``scope["state"]``).  For a ``GET``/``HEAD`` of a read route (``READS``: lookup, search, card,
timeline, duplicates, conversations, one conversation, a file, a delivery report, the access
log itself, an auditor's replay or export; any other ``GET`` naming a ``{customer_id}``) it
holds the response's start, records one entry per customer the answer shows, waits until they
are committed, then lets the response go.  A 403 from the guard's role check is recorded the
same way before it is sent (``AccessRecorder.refusal``, the guard's ``refusals`` hook).  401s
are not recorded: nobody was identified, and anyone could fill the log with them.

Which customers a read shows: the ``customer_id`` of the path; for the reads whose customers
are only known from the answer (a lookup, a search, duplicates, a conversation, a delivery)
every ``customer_id`` in the JSON answer — a search listing five customers is five entries.
What a lookup or a search was asked is not kept (an address or a name is personal data): a
lookup of an unknown address is one entry with no customer.  A file download names the file
(its SHA-256) as ``target`` and the customer of its path; by the hash alone (``/v1/files/…``,
the links of timelines built before) no customer: a file is stored by its bytes.
The purpose is the optional ``X-Purpose`` request header (documented on each read), kept up
to 200 printable characters.

**Never dropped.**  The entries of the reads that come together are committed together
(``services.gateway.access_commit``: group commit, one transaction and one fsync per batch, no
timer: a batch is as big as the load makes it).  A read is answered only after its entries are
durable; if the access log cannot be written the read is refused with 503 (Retry-After) and
nothing of it is sent.  So when the process dies (SIGKILL, power cut), the only reads that may
be missing from the log are reads that were never answered; a read recorded but not answered
(the client went away, or the process died between the commit and the send) is in the log,
which errs on the side of the auditor.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any
from urllib.parse import parse_qs
from uuid import UUID, uuid4

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.audit.access_log import (
    AccessEntry,
    AccessLog,
    AccessLogUnavailable,
    LoggedAccess,
    printable,
)
from services.gateway.access import Caller
from services.gateway.access_commit import GroupCommit
from services.gateway.problems import problem_response
from services.gateway.roles import operation_of

PURPOSE_HEADER = "X-Purpose"
_PURPOSE = PURPOSE_HEADER.lower().encode()
_READ_METHODS = frozenset({"GET", "HEAD"})
# A key of the JSON answer: a "customer_id" inside a string value is escaped (\"), so only
# real keys match.  Cheaper than parsing the answer (a lookup's is answered many times a second).
_CUSTOMER_KEY = re.compile(rb'"customer_id":\s*"([0-9a-fA-F-]{36})"')
# Request ids: unique per process (a random prefix) without a system call per request.
_REQUESTS = itertools.count(1)
_PROCESS = uuid4().hex[:12]


@dataclass(frozen=True)
class Read:
    """A kind of read: its name, and where the customers it shows are named besides the
    path's ``customer_id`` (the JSON answer, a query parameter)."""

    kind: str
    from_answer: bool = False
    customer_query: str | None = None
    target_query: str | None = None


READS: dict[str, Read] = {
    "/v1/lookup": Read("lookup", from_answer=True),
    "/v1/customers": Read("search", from_answer=True),
    "/v1/customers/{customer_id}": Read("card"),
    "/v1/customers/{customer_id}/timeline": Read("timeline"),
    "/v1/customers/{customer_id}/duplicates": Read("duplicates", from_answer=True),
    "/v1/customers/{customer_id}/conversations": Read("conversations"),
    "/v1/conversations/{conversation_id}": Read("conversation", from_answer=True),
    "/v1/customers/{customer_id}/files/{sha256}": Read("file"),
    "/v1/files/{sha256}": Read("file"),
    "/v1/deliveries/{message_ref}": Read("delivery", from_answer=True),
    "/v1/audit/access": Read("access_log", customer_query="customer_id", target_query="user"),
    "/v1/audit/customers/{customer_id}": Read("replay"),
    "/v1/audit/customers/{customer_id}/export": Read("export"),
    # A campaign's preview shows sample recipients: their addresses and messages.
    "/v1/campaigns/{campaign_id}/preview": Read("campaign preview", from_answer=True),
}
# GET operations that show no customer's data (the caller's own desk, staff, queue figures).
NOT_READS = frozenset(
    {
        "/v1/agents",
        "/v1/agents/me",
        "/v1/agents/me/conversations",
        "/v1/agents/me/events",
        # Campaigns: settings, states and counts; no recipient is named.
        "/v1/campaigns",
        "/v1/campaigns/{campaign_id}",
        "/v1/campaigns/{campaign_id}/funnel",
        "/v1/supervisor/queues",
        "/v1/users",
    }
)


def read_for(template: str) -> Read | None:
    """The kind of read a ``GET`` of ``template`` is; None if it shows no customer's data.
    A ``GET`` not in ``READS`` that names a customer in its path is a read too, named by its
    last segment (``…/{customer_id}/notes``: notes)."""
    found = READS.get(template)
    if found is None and "/{customer_id}" in template:
        literal = [s for s in template.split("/") if s and s[:1] != "{"]
        found = Read(literal[-1])
    return found


class AccessRecorder:
    """What the API records in the access log, and how it waits for it."""

    def __init__(self, log: AccessLog) -> None:
        self.log = log
        self.commit = GroupCommit(log)

    def entries(
        self,
        scope: Scope,
        template: str,
        read: Read,
        caller: Caller,
        outcome: int,
        shown: Sequence[UUID] = (),
    ) -> list[AccessEntry]:
        customer_at, target_at = _parameters(template)
        if customer_at or target_at:
            segments = scope["path"].removeprefix(scope.get("root_path", "")).split("/")
        customers = [_uuid(segments[customer_at])] if customer_at else []
        target = printable(segments[target_at]) if target_at else None
        if read.customer_query or read.target_query:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            if read.customer_query:
                customers.append(_uuid(_first(query, read.customer_query)))
            if read.target_query:
                target = printable(_first(query, read.target_query))
        customers.extend(shown)
        console = caller.token_id == "session"
        via, token_id = ("console", None) if console else ("api", caller.token_id)
        what, request_id = f"{scope['method']} {template}", f"{_PROCESS}-{next(_REQUESTS)}"
        purpose, at = _purpose(scope), datetime.now(UTC)
        known = [c for c in customers if c is not None]
        if len(known) > 1:  # each once, in the order shown
            known = list(dict.fromkeys(known))
        return [
            AccessEntry(
                caller.username,
                via,
                read.kind,
                what,
                outcome,
                request_id,
                customer,
                target,
                purpose,
                token_id,
                at,
            )
            for customer in known or [None]
        ]

    def refusal(self, template: str, caller: Caller, answer: ASGIApp) -> ASGIApp:
        """``V1Guard``'s hook for a 403: ``answer`` once the attempt is recorded."""
        read = read_for(template)
        if read is None:
            return answer

        async def recorded_answer(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["method"] in _READ_METHODS:
                try:
                    await self.commit.record(self.entries(scope, template, read, caller, 403))
                except AccessLogUnavailable as e:
                    await _unavailable(e)(scope, receive, send)
                    return
            await answer(scope, receive, send)

        return recorded_answer


class RecordReads:
    """The middleware (see the module's docstring); inside ``V1Guard``."""

    def __init__(self, app: ASGIApp, recorder: AccessRecorder) -> None:
        self.app = app
        self.recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _READ_METHODS:
            await self.app(scope, receive, send)
            return
        caller = scope.get("state", {}).get("caller")
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        row = operation_of("GET", path) if caller is not None else None
        read = read_for(row[0]) if row is not None else None
        if read is None:
            await self.app(scope, receive, send)
            return
        held = _HeldAnswer(self.recorder, scope, receive, send, row[0], read, caller)
        await self.app(scope, receive, held.send)


class _HeldAnswer:
    """One read's response, held until the access log has it."""

    def __init__(
        self,
        recorder: AccessRecorder,
        scope: Scope,
        receive: Receive,
        send: Send,
        template: str,
        read: Read,
        caller: Caller,
    ) -> None:
        self.recorder, self.scope, self.receive, self._send = recorder, scope, receive, send
        self.template, self.read, self.caller = template, read, caller
        self.start: Message | None = None
        self.body: list[bytes] = []
        self.state = "holding"  # then "passing", or "refused" (a 503 was sent instead)

    async def send(self, message: Message) -> None:
        if self.state == "passing":
            await self._send(message)
            return
        if self.state == "refused":
            return
        if message["type"] == "http.response.start":
            self.start = message
            if not self.read.from_answer:
                await self._release(())
            return
        if message["type"] != "http.response.body" or self.start is None:
            await self._send(message)
            return
        self.body.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = b"".join(self.body)
        shown = _customers_in(body) if self.start["status"] == 200 else ()
        await self._release(shown, body)

    async def _release(self, shown: Sequence[UUID], body: bytes | None = None) -> None:
        assert self.start is not None
        entries = self.recorder.entries(
            self.scope, self.template, self.read, self.caller, self.start["status"], shown
        )
        try:
            await self.recorder.commit.record(entries)
        except AccessLogUnavailable as e:
            self.state = "refused"
            await _unavailable(e)(self.scope, self.receive, self._send)
            return
        self.state = "passing"
        await self._send(self.start)
        if body is not None:
            await self._send({"type": "http.response.body", "body": body})


def _unavailable(_error: Exception) -> ASGIApp:
    # Why is in the server's log (services.gateway.access_commit), not in the answer.
    return problem_response(
        503,
        "the access log could not be written, so the read was not served (every read of "
        "customer data is logged first): try again",
        {"Retry-After": "1"},
    )


def _customers_in(body: bytes) -> list[UUID]:
    """Every ``customer_id`` anywhere in a JSON answer, in order."""
    found = (_uuid(m.group(1).decode()) for m in _CUSTOMER_KEY.finditer(body))
    return [customer for customer in found if customer is not None]


@lru_cache(maxsize=256)
def _parameters(template: str) -> tuple[int, int]:
    """Where in the path the customer id is, and the other parameter (0: nowhere)."""
    segments = template.split("/")
    customer = segments.index("{customer_id}") if "{customer_id}" in segments else 0
    others = [i for i, s in enumerate(segments) if s[:1] == "{" and i != customer]
    return customer, others[0] if others else 0


def _uuid(text: str | None) -> UUID | None:
    if text is None:
        return None
    try:
        return UUID(text)
    except ValueError:
        return None


def _first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _purpose(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == _PURPOSE:
            return printable(value.decode("utf-8", errors="replace"))
    return None


PURPOSE_PARAMETER = {
    "name": PURPOSE_HEADER,
    "in": "header",
    "required": False,
    "description": "Why you read this customer's data (a ticket, a call): kept with the "
    "read in the access log, up to 200 characters.",
    "schema": {"type": "string"},
}
_UNAVAILABLE = {"description": "The access log could not be written: the read was not served."}


def document_reads(document: dict[str, Any]) -> dict[str, Any]:
    """The ``X-Purpose`` header and the 503 on every read's operation in the OpenAPI
    document."""
    for path, path_item in document.get("paths", {}).items():
        operation = path_item.get("get")
        if operation is None or read_for(path) is None:
            continue
        parameters = operation.setdefault("parameters", [])
        if all(p.get("name") != PURPOSE_HEADER for p in parameters):
            parameters.append(PURPOSE_PARAMETER)
        operation.setdefault("responses", {}).setdefault("503", _UNAVAILABLE)
    return document


# -- GET /v1/audit/access ---------------------------------------------------------------------

# A date, or a date and time; a string of digits is not taken as a Unix time.
_ISO_MOMENT = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?)?$"


def _moment(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError as e:
        problem = {"type": "value_error", "loc": ("query", "since"), "msg": str(e)}
        raise RequestValidationError([problem]) from None


class AccessOut(BaseModel):
    seq: int = Field(description="The entry's place in the hash chain")
    at: datetime
    who: str = Field(examples=["anna"])
    via: str = Field(description="api, console or cli", examples=["api"])
    token_id: str | None = Field(description="The API token used (via api)")
    customer_id: UUID | None = Field(description="None: the read showed no customer")
    kind: str = Field(examples=["timeline"])
    what: str = Field(examples=["GET /v1/customers/{customer_id}/timeline"])
    target: str | None = Field(description="The conversation, file or message read, if any")
    purpose: str | None = Field(description="What the reader said it was for (X-Purpose)")
    outcome: int = Field(description="The HTTP status answered (403: refused)", examples=[200])
    request_id: str = Field(description="Entries of one request share it")
    hash: str = Field(description="sha256 of the previous entry's hash and this entry")


class AccessAnswer(BaseModel):
    items: list[AccessOut] = Field(description="Newest first")


def access_out(entry: LoggedAccess) -> AccessOut:
    return AccessOut.model_validate(entry, from_attributes=True)


def access_log_router(access_log: AccessLog) -> APIRouter:
    """``GET /audit/access`` (under ``/v1``): auditors query the access log."""
    router = APIRouter(prefix="/audit", tags=["audit"])

    @router.get("/access", response_model=AccessAnswer)
    def access(
        customer_id: UUID | None = None,
        user: Annotated[
            str | None, Query(min_length=1, max_length=100, description="A user name, or cli:NAME")
        ] = None,
        since: Annotated[
            str | None,
            Query(
                pattern=_ISO_MOMENT,
                description="Only entries at or after this moment (ISO 8601; UTC if no offset)",
                examples=["2026-12-01T09:00:00Z"],
            ),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> AccessAnswer:
        """Who read a customer's data, or what a user read: newest first.  This query is
        itself recorded in the access log."""
        found = access_log.entries(
            customer_id=customer_id, who=user, since=_moment(since), limit=limit
        )
        return AccessAnswer(items=[access_out(e) for e in found])

    return router
