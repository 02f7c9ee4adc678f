"""The people (and programs) that use the API: a ``User`` with roles and API tokens.

Like the other aggregates, every event has an explicit ``TOPIC`` so stored events keep
resolving when modules move.  A token's secret never enters an event: ``TokenIssued``
carries the token's id and the hash of its secret (``services.domain.tokens``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event


class Role(StrEnum):
    agent = "agent"
    supervisor = "supervisor"
    campaign_manager = "campaign_manager"
    auditor = "auditor"
    admin = "admin"


class UnknownRole(ValueError):
    """A role name that is none of ``Role``."""


def parse_roles(names: Iterable[str]) -> tuple[Role, ...]:
    """Role names as ``Role``s, in the order of ``Role``, without repeats; at least one."""
    given = {name.strip().lower() for name in names}
    unknown = sorted(given - set(Role))
    if unknown:
        raise UnknownRole(f"unknown role(s) {', '.join(unknown)}; choose from {', '.join(Role)}")
    if not given:
        raise UnknownRole(f"a user needs at least one role: {', '.join(Role)}")
    return tuple(role for role in Role if role in given)


def user_id_for(username: str) -> UUID:
    """Deterministic, so two racing registrations of one name make one user (the second
    save fails on version 1).  Names are compared without case: 'Anna' is 'anna'."""
    return uuid5(NAMESPACE_URL, f"/switchboard/users/{username.lower()}")


class User(Aggregate):
    TOPIC = "switchboard:User"

    class Event(Aggregate.Event):
        TOPIC = "switchboard:User.Event"

    class Registered(Aggregate.Created):
        TOPIC = "switchboard:User.Registered"
        username: str
        roles: list[str]
        password_hash: str | None

    class RolesChanged(Event):
        TOPIC = "switchboard:User.RolesChanged"
        roles: list[str]

    class Disabled(Event):
        TOPIC = "switchboard:User.Disabled"

    class TokenIssued(Event):
        TOPIC = "switchboard:User.TokenIssued"
        token_id: str
        secret_hash: str
        issued_at: datetime

    class TokenRevoked(Event):
        TOPIC = "switchboard:User.TokenRevoked"
        token_id: str

    class Snapshot(Aggregate.Snapshot):
        TOPIC = "switchboard:User.Snapshot"

    @staticmethod
    def create_id(username: str, roles: list[str], password_hash: str | None) -> UUID:
        return user_id_for(username)

    @event(Registered)
    def __init__(self, username: str, roles: list[str], password_hash: str | None) -> None:
        self.username = username
        self.roles = list(roles)
        self.password_hash = password_hash
        self.disabled = False
        # The tokens not revoked: token id -> hash of its secret, and when it was issued.
        self.tokens: dict[str, str] = {}
        self.token_issued_at: dict[str, datetime] = {}

    @event(RolesChanged)
    def change_roles(self, roles: list[str]) -> None:
        self.roles = list(roles)

    @event(Disabled)
    def disable(self) -> None:
        self.disabled = True

    @event(TokenIssued)
    def issue_token(self, token_id: str, secret_hash: str, issued_at: datetime) -> None:
        self.tokens[token_id] = secret_hash
        self.token_issued_at[token_id] = issued_at

    @event(TokenRevoked)
    def revoke_token(self, token_id: str) -> None:
        self.tokens.pop(token_id, None)
        self.token_issued_at.pop(token_id, None)

    def has_role(self, role: Role) -> bool:
        return role in self.roles
