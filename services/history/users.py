"""``UserDirectory``: who may use the API, with which roles and tokens (event-sourced).

One ``User`` aggregate per user name, id derived from the name, so two racing ``users add``
make one user and the other is told it exists.  Passwords are hashed with argon2
(``argon2-cffi``): they are for the console sign-in and are low-entropy, so the hash must be
slow and salted.  API tokens are stored as the SHA-256 of their secret only
(``services.domain.tokens`` says why that is enough for them).

The API does not load users per request: ``services.gateway.access.AccessTable`` follows
this application's notification log (``changes_after``) into memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import IntegrityError

from contracts.errors import Conflict, InputError, NotFound
from services.domain.tokens import is_token_id, mint_token
from services.domain.users import Role, UnknownRole, User, parse_roles, user_id_for

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")
MIN_PASSWORD_LENGTH = 8  # NIST SP 800-63B's floor; length beats composition rules
_PAGE = 500


class InvalidUserInput(InputError):
    """A user name, role or password that cannot be accepted; the reason names it."""


class UserExists(Conflict):
    def __init__(self, username: str) -> None:
        super().__init__(f"user {username!r} exists already")


class UnknownUser(NotFound):
    def __init__(self, username: str) -> None:
        super().__init__(f"no user {username!r} (see `switchboard users list`)")


class UnknownToken(NotFound):
    def __init__(self, token_id: str) -> None:
        super().__init__(f"no active token {token_id!r} (see `switchboard users list`)")


class UserDisabled(Conflict):
    def __init__(self, username: str) -> None:
        super().__init__(f"user {username!r} is disabled: it gets no new tokens")


@dataclass(frozen=True)
class IssuedToken:
    """A new API token; ``token`` exists only here and is shown once."""

    username: str
    token_id: str
    token: str
    issued_at: datetime


def normalize_username(username: str) -> str:
    name = username.strip().lower()
    if not USERNAME.match(name):
        raise InvalidUserInput(
            f"user name {username!r}: use 1-64 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit"
        )
    return name


def checked_roles(names: Iterable[str]) -> list[str]:
    try:
        return [str(role) for role in parse_roles(names)]
    except UnknownRole as e:
        raise InvalidUserInput(str(e)) from None


class UserDirectory(Application[UUID]):
    name = "users"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._passwords = PasswordHasher()

    # -- commands ------------------------------------------------------------------------

    def register(self, username: str, *, roles: Iterable[str], password: str | None = None) -> User:
        name = normalize_username(username)
        role_names = checked_roles(roles)
        password_hash = None
        if password is not None:
            if len(password) < MIN_PASSWORD_LENGTH:
                raise InvalidUserInput(
                    f"the password is too short: use at least {MIN_PASSWORD_LENGTH} characters"
                )
            password_hash = self._passwords.hash(password)
        if self.find(name) is not None:
            raise UserExists(name)
        user = User(username=name, roles=role_names, password_hash=password_hash)
        try:
            self.save(user)
        except IntegrityError:  # registered by another process at the same moment
            raise UserExists(name) from None
        return user

    def change_roles(self, username: str, roles: Iterable[str]) -> User:
        user = self.user(username)
        role_names = checked_roles(roles)
        if role_names != user.roles:
            user.change_roles(roles=role_names)
            self.save(user)
        return user

    def disable(self, username: str) -> User:
        """Disabled at once for every token of the user; disabling twice changes nothing."""
        user = self.user(username)
        if not user.disabled:
            user.disable()
            self.save(user)
        return user

    def issue_token(self, username: str) -> IssuedToken:
        user = self.user(username)
        if user.disabled:
            raise UserDisabled(user.username)
        new = mint_token()
        issued_at = datetime.now(UTC)
        user.issue_token(token_id=new.token_id, secret_hash=new.secret_hash, issued_at=issued_at)
        self.save(user)
        return IssuedToken(user.username, new.token_id, new.token, issued_at)

    def revoke_token(self, token_id: str, *, username: str | None = None) -> User:
        """Revoke a token by its id (the owner is found when not named)."""
        user = self.user(username) if username is not None else self._owner_of(token_id)
        if token_id not in user.tokens:
            raise UnknownToken(token_id)
        user.revoke_token(token_id=token_id)
        self.save(user)
        return user

    # -- queries -------------------------------------------------------------------------

    def find(self, username: str) -> User | None:
        try:
            return self.repository.get(user_id_for(username.strip().lower()))
        except AggregateNotFoundError:
            return None

    def user(self, username: str) -> User:
        found = self.find(username)
        if found is None:
            raise UnknownUser(username)
        return found

    def users(self) -> list[User]:
        """Every user, in the order they were registered."""
        return [
            self.repository.get(event.originator_id)
            for _, event in self._events(topics=[User.Registered.TOPIC])
        ]

    def has_active_admin(self) -> bool:
        return any(Role.admin in u.roles and not u.disabled for u in self.users())

    def password_matches(self, username: str, password: str) -> bool:
        user = self.find(username)
        if user is None or user.disabled or user.password_hash is None:
            return False
        try:
            return self._passwords.verify(user.password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def position(self) -> int:
        """The newest notification id: it changes whenever anything about users changes."""
        return self.recorder.max_notification_id() or 0

    def changes_after(
        self, position: int, *, limit: int = _PAGE
    ) -> list[tuple[int, DomainEventProtocol[UUID]]]:
        """User events after ``position`` in the order they were stored, with their ids."""
        notifications = self.recorder.select_notifications(
            start=position, limit=limit, inclusive_of_start=False
        )
        return [(n.id, self.mapper.to_domain_event(n)) for n in notifications]

    def _events(self, *, topics: list[str]) -> Iterator[tuple[int, DomainEventProtocol[UUID]]]:
        start = 0
        while True:
            page = self.recorder.select_notifications(
                start=start, limit=_PAGE, topics=topics, inclusive_of_start=False
            )
            for n in page:
                yield n.id, self.mapper.to_domain_event(n)
            if len(page) < _PAGE:
                return
            start = page[-1].id

    def _owner_of(self, token_id: str) -> User:
        if not is_token_id(token_id):
            raise InvalidUserInput(f"{token_id!r} is no token id: expected 16 hex digits")
        for _, event in self._events(topics=[User.TokenIssued.TOPIC]):
            if event.token_id == token_id:  # type: ignore[attr-defined]
                return self.repository.get(event.originator_id)
        raise UnknownToken(token_id)
