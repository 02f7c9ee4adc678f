"""Bearer tokens and roles on every ``/v1`` operation.

``v1_router`` gives the routes under ``/v1`` one security dependency: it reads the bearer
token (declared in the OpenAPI document as the ``apiToken`` scheme), finds the caller in the
``AccessTable``, and checks the caller's roles against the operation's row in
``services.gateway.roles``.  Refusals are problem bodies whose detail names the roles the
operation needs: 401 (with ``WWW-Authenticate: Bearer``) without a valid token, 403 with the
wrong role.  ``document_access`` checks, when the API is built, that every ``/v1`` operation has
this dependency and a row in the table, and documents its 401 and 403.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.domain.tokens import MalformedToken, split_token
from services.gateway.access import AccessTable, Caller
from services.gateway.roles import ROUTE_ROLES, operation_of, roles_for, spelled

V1 = "/v1"

SCHEME = "apiToken"
bearer = HTTPBearer(
    auto_error=False,
    scheme_name=SCHEME,
    bearerFormat="sbt_<id>_<secret>",
    description="An API token of a Switchboard user: `switchboard users token <name>` "
    "issues one (README, Access).",
)
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _unauthenticated(why: str, needed: str) -> HTTPException:
    # 401, not 403: the caller has not shown who it is (RFC 9110 15.5.2); the challenge
    # says how to.
    return HTTPException(
        401, f"{why}; this operation needs a bearer token of a user with role {needed}", _CHALLENGE
    )


def v1_router(access: AccessTable) -> APIRouter:
    """The router every ``/v1`` operation is added to."""

    async def authorize(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    ) -> Caller:
        # The row is found from the request itself, not from the router's internals (which
        # FastAPI versions change); a request no row matches is refused to every role.
        scope = request.scope
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        template, allowed = operation_of(request.method, path) or (path, frozenset())
        needed = spelled(allowed)
        if credentials is None:
            raise _unauthenticated("no bearer token (Authorization: Bearer sbt_…)", needed)
        try:
            token_id, secret = split_token(credentials.credentials)
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
        if not caller.roles & allowed:
            have = ", ".join(sorted(caller.roles)) or "none"
            raise HTTPException(
                403,
                f"user {caller.username!r} has role(s) {have}; "
                f"{request.method} {template} needs role {needed}",
            )
        request.state.caller = caller
        return caller

    return APIRouter(prefix=V1, dependencies=[Security(authorize)])


def document_access(document: dict[str, Any]) -> dict[str, Any]:
    """Refuse a document with a ``/v1`` operation that is unguarded or has no row in the role
    table; give each one its 401 and 403, naming the roles it needs.

    Done on the document, as FastAPI generates it, so nothing of its routing internals is
    relied on: an operation is guarded when it declares the ``apiToken`` scheme, which only
    the ``v1_router`` dependency gives it.
    """
    for path, path_item in document.get("paths", {}).items():
        if not path.startswith(V1 + "/"):
            continue
        for method, operation in path_item.items():
            key = f"{method.upper()} {path}"
            if (method.upper(), path) not in ROUTE_ROLES:
                raise RuntimeError(f"{key} has no row in services/gateway/roles.py ROUTE_ROLES")
            if {SCHEME: []} not in operation.get("security", []):
                raise RuntimeError(f"{key} is not on the /v1 router: it checks no token")
            needed = spelled(roles_for(method, path))
            responses = operation.setdefault("responses", {})
            responses.setdefault(
                "401", {"description": f"No valid bearer token. Needs a user with role {needed}."}
            )
            responses.setdefault(
                "403", {"description": f"The user lacks the role. Needs role {needed}."}
            )
    return document
