"""The agent console: a static page served with the API, and its sign-in.

The page (``static/console/``) is plain HTML, CSS and a script module: no build step, nothing
loaded from the internet (its Content-Security-Policy allows this origin only).  It signs in
with a user name and password (``switchboard users add NAME --role agent --password``) for a
session cookie (``services/gateway/session.py``) and then calls ``/v1`` like any client.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from services.domain.tokens import MalformedToken, split_token
from services.gateway.access import AccessTable
from services.gateway.problems import problem_response
from services.gateway.session import COOKIE, CSRF_HEADER, SessionCodec
from services.history.users import UserDirectory

CONSOLE_DIR = Path(__file__).parent / "static" / "console"
CONSOLE_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


class SignIn(BaseModel):
    username: str = Field(min_length=1, max_length=64, examples=["ann"])
    password: str = Field(min_length=1, max_length=1024)


class SessionInfo(BaseModel):
    username: str
    roles: list[str]
    csrf_token: str = Field(description="Send it as X-CSRF-Token on every change")


class _SelfContained:
    """The console's files, each with a policy that keeps the page on this origin."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_policy(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append(
                    (b"content-security-policy", CONSOLE_CONTENT_SECURITY_POLICY.encode())
                )
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"referrer-policy", b"no-referrer"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_policy)


def install_console(
    api: FastAPI, *, users: UserDirectory, access: AccessTable, sessions: SessionCodec
) -> None:
    router = APIRouter(prefix="/console", tags=["console"])

    def info(request: Request, cookie: str, username: str) -> SessionInfo | None:
        caller = access.session_caller(username)
        if caller is None:
            return None
        return SessionInfo(
            username=caller.username,
            roles=sorted(str(r) for r in caller.roles),
            csrf_token=sessions.csrf_token(cookie),
        )

    def _token_of(username: str, secret: str) -> bool:
        """Whether ``secret`` is a valid API token of ``username``."""
        try:
            token_id, token_secret = split_token(secret)
        except MalformedToken:
            return False
        caller = access.caller(token_id, token_secret)
        return caller is not None and caller.username.lower() == username.lower()

    def refused(detail: str) -> Response:
        # 401 needs a challenge (RFC 9110 15.5.2): the API also takes the user's bearer token.
        return problem_response(401, detail, {"WWW-Authenticate": 'Bearer realm="switchboard"'})

    @router.post(
        "/session",
        response_model=SessionInfo,
        responses={401: {"description": "Wrong user name or password, or a disabled user."}},
    )
    async def sign_in(credentials: SignIn, request: Request) -> Response:
        """Sign in to the console with the user's password, or one of the user's API tokens
        (``switchboard users token NAME``): a session cookie (HttpOnly, SameSite=Strict)."""
        await run_in_threadpool(access.refresh, wait=True)
        if not _token_of(credentials.username, credentials.password) and not (
            await run_in_threadpool(
                users.password_matches, credentials.username, credentials.password
            )
        ):
            return refused("wrong user name or password (or token)")
        cookie = sessions.issue(credentials.username.lower())
        answer = info(request, cookie, credentials.username.lower())
        if answer is None:
            return refused(f"user {credentials.username!r} is disabled")
        response = JSONResponse(answer.model_dump())
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=sessions.max_age,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    @router.get(
        "/session",
        response_model=SessionInfo,
        responses={204: {"description": "Nobody is signed in (or the session expired)."}},
    )
    def current(request: Request) -> Response:
        """Who is signed in, and the CSRF token the page sends with every change.  No one:
        204, not 401 — being signed out is the page's normal first state, not an error."""
        cookie = request.cookies.get(COOKIE)
        session = sessions.read(cookie) if cookie else None
        answer = info(request, cookie, session.username) if session and cookie else None
        if answer is None:
            return Response(status_code=204)
        return JSONResponse(answer.model_dump())

    @router.delete("/session", status_code=204, responses={403: {"description": "No CSRF token."}})
    def sign_out(request: Request) -> Response:
        """Sign out: the cookie is dropped."""
        cookie = request.cookies.get(COOKIE)
        if cookie and not sessions.csrf_matches(cookie, request.headers.get(CSRF_HEADER)):
            return problem_response(403, "signing out needs the X-CSRF-Token header", None)
        response = Response(status_code=204)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @api.get("/console", include_in_schema=False)
    def to_console() -> RedirectResponse:
        return RedirectResponse("/console/")

    api.include_router(router)
    # Checked now: an install without the package data fails at start-up, not on a visit.
    api.mount(
        "/console",
        _SelfContained(StaticFiles(directory=CONSOLE_DIR, html=True)),
        name="console",
    )
