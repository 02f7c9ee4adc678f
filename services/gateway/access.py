"""Who is calling: API tokens checked in memory, kept fresh from the user directory.

A caller lookup must answer in well under a millisecond, so no request reads the store to
check its token.  ``AccessTable`` holds token id -> (hash of the secret, user) and
user -> (name, roles, disabled), loaded from the directory's notification log when the API
starts and brought up to date by applying the user events stored since.

**The revocation bound.**  The table asks the store for its newest notification id when a
request comes more than ``REFRESH_INTERVAL`` (1 s) after the last check, before that request
is authenticated, and applies what changed.  So a token revoked or a user disabled
(by this process or any other) is refused by every API process for every request that
starts more than 1 s plus one store read (a few milliseconds) after the change was
committed; requests that arrive while that one read runs are judged by the table as it was.
After a restart the table is loaded before the API serves: refused at once.

A token id the table does not know (a token issued a moment ago by another process) makes
its request wait for the next check, which runs at most every ``UNKNOWN_TOKEN_RECHECK``
(0.1 s): a new token works at once, and made-up ids cannot make every request read the store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from uuid import UUID

from services.domain.tokens import secret_matches
from services.domain.users import Role, User, user_id_for
from services.history.users import UserDirectory

REFRESH_INTERVAL = 1.0
UNKNOWN_TOKEN_RECHECK = 0.1


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: the user behind the token, with the roles it has now."""

    username: str
    roles: frozenset[Role]
    token_id: str


@dataclass
class _Account:
    username: str
    roles: frozenset[Role]
    disabled: bool = False


@dataclass
class AccessTable:
    users: UserDirectory
    refresh_interval: float = REFRESH_INTERVAL
    clock: Callable[[], float] = time.monotonic
    _accounts: dict[UUID, _Account] = field(default_factory=dict)
    _tokens: dict[str, tuple[str, UUID]] = field(default_factory=dict)
    _position: int = 0
    _checked_at: float = float("-inf")
    _refreshing: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.refresh()

    # -- on every request: memory only ---------------------------------------------------

    def caller(self, token_id: str, secret: str) -> Caller | None:
        """The caller a token stands for, or None (unknown, revoked, wrong secret, disabled)."""
        entry = self._tokens.get(token_id)
        if entry is None or not secret_matches(secret, entry[0]):
            return None
        account = self._accounts.get(entry[1])
        if account is None or account.disabled:
            return None
        return Caller(account.username, account.roles, token_id)

    def session_caller(self, username: str) -> Caller | None:
        """The caller a console session stands for, or None (unknown or disabled user)."""
        account = self._accounts.get(user_id_for(username))
        if account is None or account.disabled:
            return None
        return Caller(account.username, account.roles, "session")

    def refresh_due(self) -> bool:
        return self.clock() - self._checked_at >= self.refresh_interval

    def knows(self, token_id: str) -> bool:
        return token_id in self._tokens

    def seconds_until_recheck(self) -> float:
        return max(0.0, self._checked_at + UNKNOWN_TOKEN_RECHECK - self.clock())

    def has_active_admin(self) -> bool:
        return any(Role.admin in a.roles and not a.disabled for a in self._accounts.values())

    # -- off the event loop: one store read, and the changes if there are any ------------

    def refresh(self, *, wait: bool = False) -> None:
        """Apply the user events stored since the last refresh.  One refresh at a time: a
        request that finds one running goes on with the table as it is (``wait``: waits
        for it, then refreshes, as after a change made through this API)."""
        if not self._refreshing.acquire(blocking=wait):
            return
        try:
            self._checked_at = self.clock()
            if self.users.position() <= self._position:
                return
            while changes := self.users.changes_after(self._position):
                for notification_id, event in changes:
                    self._apply(event)
                    self._position = notification_id
        finally:
            self._refreshing.release()

    def recheck(self) -> None:
        """Refresh for a token id the table does not know, unless a check ran within the
        last ``UNKNOWN_TOKEN_RECHECK``: made-up ids cause at most ten store reads a second."""
        if self.clock() - self._checked_at >= UNKNOWN_TOKEN_RECHECK:
            self.refresh()

    def _apply(self, event: object) -> None:
        if isinstance(event, User.Registered):
            roles = frozenset(Role(r) for r in event.roles)
            self._accounts[event.originator_id] = _Account(event.username, roles)
            return
        account = self._accounts.get(event.originator_id)  # type: ignore[attr-defined]
        if account is None:  # pragma: no cover - a user's first event is Registered
            return
        if isinstance(event, User.RolesChanged):
            account.roles = frozenset(Role(r) for r in event.roles)
        elif isinstance(event, User.Disabled):
            account.disabled = True
        elif isinstance(event, User.TokenIssued):
            self._tokens[event.token_id] = (event.secret_hash, event.originator_id)
        elif isinstance(event, User.TokenRevoked):
            self._tokens.pop(event.token_id, None)
