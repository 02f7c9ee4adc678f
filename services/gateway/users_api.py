"""The admin API for users and their tokens (``/v1/users``; admins only, see ``roles.py``).

The store work is synchronous (the eventsourcing library), so the handlers are plain
``def``s: FastAPI runs them in its thread pool, off the event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, Response
from pydantic import BaseModel, Field

from services.domain.users import Role, User
from services.history.users import USERNAME, UserDirectory

# What the path and body accept: the directory's own rule, any case (names are lower-cased).
USERNAME_PATTERN = USERNAME.pattern.replace("a-z0-9", "A-Za-z0-9")
Username = Annotated[str, Path(pattern=USERNAME_PATTERN, max_length=64, examples=["anna.schmidt"])]
TokenId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", examples=["3f9a0c1d2e4b5a67"])]


class TokenInfo(BaseModel):
    token_id: str = Field(description="The token's public id (the part after sbt_)")
    issued_at: datetime


class UserInfo(BaseModel):
    username: str
    roles: list[Role]
    disabled: bool
    registered_at: datetime
    tokens: list[TokenInfo] = Field(description="Tokens not revoked (their ids only)")


class NewUser(BaseModel):
    username: str = Field(pattern=USERNAME_PATTERN, max_length=64, examples=["anna.schmidt"])
    roles: list[Role] = Field(min_length=1, examples=[["agent"]])
    password: str | None = Field(
        None,
        min_length=8,
        max_length=1024,
        description="For the console sign-in (stored as an argon2 hash); optional",
        json_schema_extra={"writeOnly": True},
    )


class NewToken(BaseModel):
    username: str
    token_id: str
    token: str = Field(description="Shown once: only its hash is stored")
    issued_at: datetime


def user_info(user: User) -> UserInfo:
    return UserInfo(
        username=user.username,
        roles=[Role(r) for r in user.roles],
        disabled=user.disabled,
        registered_at=user.created_on,
        tokens=[
            TokenInfo(token_id=token_id, issued_at=user.token_issued_at[token_id])
            for token_id in user.tokens
        ],
    )


def users_router(users: UserDirectory, *, changed: Callable[[], None]) -> APIRouter:
    """``changed`` is called after each change, so this API process applies it at once (other
    processes within their refresh interval)."""
    router = APIRouter(prefix="/users", tags=["users"])
    unknown = {404: {"description": "No user has this name."}}

    @router.get("")
    def list_users() -> list[UserInfo]:
        """Every user with roles, status and the ids of its tokens."""
        return [user_info(u) for u in users.users()]

    @router.post(
        "",
        status_code=201,
        responses={
            400: {"description": "The password or user name was refused; the detail says why."},
            409: {"description": "A user with this name exists already."},
        },
    )
    def create_user(new: NewUser) -> UserInfo:
        user = users.register(new.username, roles=new.roles, password=new.password)
        changed()
        return user_info(user)

    @router.post(
        "/{username}/disable",
        responses={**unknown, 409: {"description": "Admins cannot disable themselves."}},
    )
    def disable_user(username: Username, request: Request) -> UserInfo:
        """Disable a user: every token of it stops working (within a second, README Access)."""
        if username.lower() == request.state.caller.username:
            raise HTTPException(409, "you cannot disable yourself: ask another admin")
        user = users.disable(username)
        changed()
        return user_info(user)

    @router.post(
        "/{username}/tokens",
        status_code=201,
        responses={**unknown, 409: {"description": "The user is disabled."}},
    )
    def issue_token(username: Username) -> NewToken:
        """Issue a new API token; it is in this answer only, keep it."""
        issued = users.issue_token(username)
        changed()
        return NewToken(
            username=issued.username,
            token_id=issued.token_id,
            token=issued.token,
            issued_at=issued.issued_at,
        )

    @router.delete(
        "/{username}/tokens/{token_id}",
        status_code=204,
        responses={404: {"description": "No such user, or it has no such token."}},
    )
    def revoke_token(username: Username, token_id: TokenId) -> Response:
        users.revoke_token(token_id, username=username)
        changed()
        return Response(status_code=204)

    return router
