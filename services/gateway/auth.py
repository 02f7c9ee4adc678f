"""Bearer tokens and roles on every ``/v1`` operation.

``V1Guard`` is a plain ASGI middleware in front of the API: for every request under ``/v1`` that
matches an operation of the role table (``services.gateway.roles``) it reads the bearer token,
finds the caller in the ``AccessTable`` and checks the caller's roles against the operation's
row, before FastAPI routes, parses or validates anything.  Refusals are problem bodies whose
detail names the roles the operation needs: 401 (with ``WWW-Authenticate: Bearer``) without a
valid token, 403 with the wrong role.  The caller is left in ``request.state.caller``.

A middleware rather than a FastAPI dependency: the same checks, without FastAPI's
per-request dependency solving (about a third of a caller lookup's time, bench/lookup.py), and
a body is never read before the token is checked.  ``document_access`` declares the
``apiToken`` scheme on every ``/v1`` operation of the OpenAPI document, and refuses to build an
API with a ``/v1`` operation that has no row in the table.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.security.utils import get_authorization_scheme_param
from starlette.types import ASGIApp, Receive, Scope, Send

from services.domain.tokens import MalformedToken, split_token
from services.gateway.access import AccessTable, Caller
from services.gateway.problems import problem_response
from services.gateway.roles import ROUTE_ROLES, operation_of, roles_for, spelled
from services.gateway.session import CSRF_HEADER, SessionCodec, cookie_value, header

V1 = "/v1"

SCHEME = "apiToken"
SECURITY_SCHEME = {
    "type": "http",
    "description": "An API token of a Switchboard user: `switchboard users token <name>` "
    "issues one (README, Access).",
    "scheme": "bearer",
    "bearerFormat": "sbt_<id>_<secret>",
}
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


class Refused(Exception):
    def __init__(self, status: int, detail: str, caller: Caller | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.caller = caller  # a 403 for the role: who was refused


# Given a role refusal (path template, caller, the 403 answer): the answer to send instead,
# e.g. one that records the attempt first (services.gateway.access_log).
RefusalHook = Callable[[str, Caller, ASGIApp], ASGIApp]


def _unauthenticated(why: str, needed: str) -> Refused:
    # 401, not 403: the caller has not shown who it is (RFC 9110 15.5.2); the challenge
    # says how to.
    return Refused(401, f"{why}; this operation needs a bearer token of a user with role {needed}")


def _bearer(scope: Scope) -> str | None:
    """The credentials of ``Authorization: Bearer <credentials>``, else None."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, credentials = get_authorization_scheme_param(value.decode("latin-1"))
            if scheme.lower() == "bearer" and credentials:
                return credentials
            return None
    return None


class V1Guard:
    """The token and role check of every ``/v1`` operation (see the module's docstring).

    A console session cookie (``services.gateway.session``) stands in for the bearer token
    where none is given; with it, a request that changes something needs ``X-CSRF-Token``.
    WebSockets under ``/v1`` are guarded as the ``WEBSOCKET`` rows of the role table; a refusal
    closes the handshake (HTTP 403) before it is accepted.  ``refusals`` is told of each HTTP
    403 for a missing role and gives the answer to send (the access log records it first).
    """

    def __init__(
        self,
        app: ASGIApp,
        access: AccessTable,
        sessions: SessionCodec | None = None,
        refusals: RefusalHook | None = None,
    ) -> None:
        self.app = app
        self.access = access
        self.sessions = sessions
        self.refusals = refusals

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        if kind == "websocket":
            method = "WEBSOCKET"
        else:  # Starlette answers HEAD with the GET route: it is guarded as that GET.
            method = "GET" if scope["method"] == "HEAD" else scope["method"]
        row = operation_of(method, path) if path.startswith(V1 + "/") else None
        if row is None:  # not /v1, or no such operation: FastAPI answers (404, 405)
            await self.app(scope, receive, send)
            return
        try:
            caller = await self._caller(scope, method, *row)
        except Refused as e:
            if kind == "websocket":
                # A close reason may be 123 bytes at most (RFC 6455 5.5): cut as bytes.
                reason = e.detail.encode()[:120].decode(errors="ignore")
                await send({"type": "websocket.close", "code": 1008, "reason": reason})
                return
            headers = _CHALLENGE if e.status == 401 else None
            answer: ASGIApp = problem_response(e.status, e.detail, headers)
            if e.caller is not None and self.refusals is not None:
                answer = self.refusals(row[0], e.caller, answer)
            await answer(scope, receive, send)
            return
        scope.setdefault("state", {})["caller"] = caller
        await self.app(scope, receive, send)

    async def _caller(self, scope: Scope, method: str, template: str, allowed: frozenset) -> Caller:
        access = self.access
        needed = spelled(allowed)
        credentials = _bearer(scope)
        if credentials is None:
            cookie = cookie_value(scope["headers"]) if self.sessions is not None else None
            if cookie is not None:
                return await self._session_caller(scope, method, template, allowed, cookie)
            raise _unauthenticated("no bearer token (Authorization: Bearer sbt_…)", needed)
        try:
            token_id, secret = split_token(credentials)
        except MalformedToken as e:
            raise _unauthenticated(str(e), needed) from None
        if access.refresh_due():
            await run_in_threadpool(access.refresh)
        caller = access.caller(token_id, secret)
        if caller is None and not access.knows(token_id):  # issued a moment ago elsewhere?
            await asyncio.sleep(access.seconds_until_recheck())
            await run_in_threadpool(access.recheck)
            caller = access.caller(token_id, secret)
        if caller is None:
            raise _unauthenticated(
                f"token {token_id} is unknown or revoked, or its user is disabled", needed
            )
        _check_roles(caller, method, template, allowed)
        return caller

    async def _session_caller(
        self, scope: Scope, method: str, template: str, allowed: frozenset, cookie: str
    ) -> Caller:
        assert self.sessions is not None
        needed = spelled(allowed)
        session = self.sessions.read(cookie)
        if session is None:
            raise _unauthenticated("the console session expired or is not valid", needed)
        if self.access.refresh_due():
            await run_in_threadpool(self.access.refresh)
        caller = self.access.session_caller(session.username)
        if caller is None:
            raise _unauthenticated(f"user {session.username!r} is unknown or disabled", needed)
        if method == "WEBSOCKET":
            origin = header(scope["headers"], b"origin")
            host = header(scope["headers"], b"host")
            if origin is not None and urlsplit(origin).netloc != host:
                raise Refused(403, f"a console session is not accepted from origin {origin}")
        elif method not in _SAFE and not self.sessions.csrf_matches(
            cookie, header(scope["headers"], CSRF_HEADER.encode())
        ):
            raise Refused(
                403,
                "a request made with the console's session needs the X-CSRF-Token header "
                "(GET /console/session gives it)",
            )
        _check_roles(caller, method, template, allowed)
        return caller


_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def _check_roles(caller: Caller, method: str, template: str, allowed: frozenset) -> None:
    if not caller.roles & allowed:
        have = ", ".join(sorted(caller.roles)) or "none"
        raise Refused(
            403,
            f"user {caller.username!r} has role(s) {have}; "
            f"{method} {template} needs role {spelled(allowed)}",
            caller,
        )


def v1_router() -> APIRouter:
    """The router every ``/v1`` operation is added to (``V1Guard`` guards the prefix)."""
    return APIRouter(prefix=V1)


def document_access(document: dict[str, Any]) -> dict[str, Any]:
    """Refuse a document with a ``/v1`` operation that has no row in the role table; declare
    the ``apiToken`` scheme on each one and give it its 401 and 403, naming the roles it needs.

    Done on the document as FastAPI generates it, so nothing of its routing internals is
    relied on.
    """
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {})[SCHEME] = SECURITY_SCHEME
    for path, path_item in document.get("paths", {}).items():
        if not path.startswith(V1 + "/"):
            continue
        for method, operation in path_item.items():
            key = f"{method.upper()} {path}"
            if (method.upper(), path) not in ROUTE_ROLES:
                raise RuntimeError(f"{key} has no row in services/gateway/roles.py ROUTE_ROLES")
            operation["security"] = [{SCHEME: []}]
            needed = spelled(roles_for(method, path))
            responses = operation.setdefault("responses", {})
            responses.setdefault(
                "401", {"description": f"No valid bearer token. Needs a user with role {needed}."}
            )
            responses.setdefault(
                "403", {"description": f"The user lacks the role. Needs role {needed}."}
            )
    return document
