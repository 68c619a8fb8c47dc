"""Bearer-token auth from ``HUB_API_TOKENS`` (``name:role:token,...``) with three roles.

viewer reads; officer also acknowledges, clears, assigns and comments; admin may do everything.
With no tokens configured, reads are open (user ``anonymous``) and every write is refused with
403 and a message saying that HUB_API_TOKENS is empty: a hub without tokens never lets an
unknown caller change alarm state.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

ROLES: tuple[str, ...] = ("viewer", "officer", "admin")
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}
ANONYMOUS = "anonymous"

_bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True, slots=True)
class User:
    """An authenticated caller."""

    name: str
    role: str


class TokenTable:
    """Tokens by their SHA-256 digest (lookups compare digests in constant time)."""

    def __init__(self, users: dict[bytes, User]) -> None:
        self._users = users

    @classmethod
    def parse(cls, text: str) -> TokenTable:
        """Parse ``name:role:token,...``; raise ValueError naming the bad entry."""
        users: dict[bytes, User] = {}
        for index, raw in enumerate(text.split(","), start=1):
            entry = raw.strip()
            if not entry:
                continue
            parts = entry.split(":", 2)
            if len(parts) != 3 or not all(p.strip() for p in parts):
                raise ValueError(f"HUB_API_TOKENS entry {index}: expected name:role:token")
            name, role, token = (p.strip() for p in parts)
            if role not in ROLE_RANK:
                raise ValueError(f"HUB_API_TOKENS entry {index} ({name}): unknown role "
                                 f"{role!r}, use {', '.join(ROLES)}")
            digest = hashlib.sha256(token.encode()).digest()
            if digest in users:
                raise ValueError(f"HUB_API_TOKENS entry {index} ({name}): token used twice")
            users[digest] = User(name, role)
        return cls(users)

    @property
    def empty(self) -> bool:
        """True when no token is configured."""
        return not self._users

    def lookup(self, token: str) -> User | None:
        """Return the user of a token or None."""
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for known, user in self._users.items():
            if hmac.compare_digest(known, digest):
                found = user
        return found


def install(app_state: object, tokens: str | TokenTable) -> TokenTable:
    """Put the token table on ``app.state`` (call once when building the app)."""
    table = tokens if isinstance(tokens, TokenTable) else TokenTable.parse(tokens)
    app_state.api_tokens = table  # type: ignore[attr-defined]
    return table


def _table(request: Request) -> TokenTable:
    table = getattr(request.app.state, "api_tokens", None)
    if table is None:
        from hub.settings import Settings

        table = install(request.app.state, Settings().api_tokens)
    assert isinstance(table, TokenTable)
    return table


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, detail={"error": "unauthorized", "message": message},
                         headers={"WWW-Authenticate": "Bearer"})


def require(role: str) -> Callable[..., str]:
    """Return a dependency that checks the bearer token has at least ``role``; gives the name."""
    if role not in ROLE_RANK:
        raise ValueError(f"unknown role {role!r}")
    needed = ROLE_RANK[role]

    def dependency(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
    ) -> str:
        table = _table(request)
        if table.empty:
            if needed == 0:
                return ANONYMOUS
            raise HTTPException(403, detail={
                "error": "forbidden",
                "message": "writes are disabled: HUB_API_TOKENS is empty (configure "
                           "name:role:token entries to allow them)"})
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise _unauthorized("missing bearer token")
        user = table.lookup(credentials.credentials)
        if user is None:
            raise _unauthorized("invalid token")
        if ROLE_RANK[user.role] < needed:
            raise HTTPException(403, detail={
                "error": "forbidden",
                "message": f"{user.name} is {user.role}; this needs {role} or higher"})
        return user.name

    dependency.__name__ = f"require_{role}"
    return dependency


viewer = require("viewer")
officer = require("officer")
admin = require("admin")
