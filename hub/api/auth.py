"""Who is calling: bearer tokens from ``HUB_API_TOKENS`` or a signed-in account's session.

``HUB_API_TOKENS`` is ``name:role:token`` (all sites) or ``name:role:token:site1|site2``
(those sites only), comma-separated. People sign in with an account (hub.accounts) and get an
HttpOnly session cookie that every route accepts like a token. Three roles: viewer reads;
officer also acknowledges, clears, assigns and comments; admin may do everything (an admin
limited to sites manages the devices and users of those sites only).

With no tokens and no accounts, reads are open (user ``anonymous``, all sites) and every write
is refused with 403 saying that nothing is configured: a hub without credentials never lets an
unknown caller change state. A session-authenticated write must carry the session's CSRF token
in ``X-CSRF-Token``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

if TYPE_CHECKING:
    from hub.accounts.store import AccountStore

ROLES: tuple[str, ...] = ("viewer", "officer", "admin")
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}
ANONYMOUS = "anonymous"
SESSION_COOKIE = "hub_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SITE_ID = re.compile(r"^[a-z0-9_-]+$")

_bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True, slots=True)
class User:
    """An authenticated caller; ``sites`` None means every site."""

    name: str
    role: str
    sites: frozenset[str] | None = None
    via: str = "token"  # token, session or anonymous
    csrf: str | None = None  # the session's CSRF token (sessions only)

    def sees(self, site: str | None) -> bool:
        """True when this caller may see objects of ``site``."""
        return self.sites is None or (site is not None and site in self.sites)

    def public(self) -> dict[str, Any]:
        """``{name, role, sites}`` as ``GET /api/me`` tells it (sites null for all)."""
        return {"name": self.name, "role": self.role,
                "sites": None if self.sites is None else sorted(self.sites)}


def parse_sites(text: str, where: str) -> frozenset[str] | None:
    """``a|b`` or ``a,b`` -> the set; empty -> None (all sites); raise naming a bad site id."""
    names = [s.strip() for s in re.split(r"[|,]", text) if s.strip()]
    if not names:
        return None
    for name in names:
        if not SITE_ID.match(name):
            raise ValueError(f"{where}: bad site id {name!r} (lower-case letters, digits, _ -)")
    return frozenset(names)


class TokenTable:
    """Tokens by their SHA-256 digest (lookups compare digests in constant time)."""

    def __init__(self, users: dict[bytes, User]) -> None:
        self._users = users

    @classmethod
    def parse(cls, text: str) -> TokenTable:
        """Parse ``name:role:token[:site|site],...``; raise ValueError naming the bad entry."""
        users: dict[bytes, User] = {}
        for index, raw in enumerate(text.split(","), start=1):
            entry = raw.strip()
            if not entry:
                continue
            parts = entry.split(":", 3)
            if len(parts) < 3 or not all(p.strip() for p in parts[:3]):
                raise ValueError(f"HUB_API_TOKENS entry {index}: expected name:role:token "
                                 "or name:role:token:site1|site2")
            name, role, token = (p.strip() for p in parts[:3])
            where = f"HUB_API_TOKENS entry {index} ({name})"
            sites = parse_sites(parts[3], where) if len(parts) == 4 else None
            if len(parts) == 4 and sites is None:
                raise ValueError(f"{where}: empty site list after the token")
            if role not in ROLE_RANK:
                raise ValueError(f"{where}: unknown role {role!r}, use {', '.join(ROLES)}")
            digest = hashlib.sha256(token.encode()).digest()
            if digest in users:
                raise ValueError(f"{where}: token used twice")
            users[digest] = User(name, role, sites)
        if not users and text:
            raise ValueError("HUB_API_TOKENS has no entry (only spaces or commas): unset it "
                             "for open reads, or give name:role:token entries")
        return cls(users)

    @property
    def empty(self) -> bool:
        """True when no token is configured."""
        return not self._users

    def users(self) -> list[User]:
        """Every configured token's user (for checks at start)."""
        return list(self._users.values())

    def fingerprint(self) -> str:
        """A digest of every entry (tokens included) that tells whether the table changed."""
        lines = sorted(f"{d.hex()}:{u.name}:{u.role}:{sorted(u.sites or [])}"
                       for d, u in self._users.items())
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]

    def lookup(self, token: str) -> User | None:
        """Return the user of a token or None."""
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for known, user in self._users.items():
            if hmac.compare_digest(known, digest):
                found = user
        return found


def install(app_state: object, tokens: str | TokenTable,
            accounts: AccountStore | None = None) -> TokenTable:
    """Put the token table (and the account store) on ``app.state`` once, building the app."""
    table = tokens if isinstance(tokens, TokenTable) else TokenTable.parse(tokens)
    app_state.api_tokens = table  # type: ignore[attr-defined]
    if accounts is not None:
        app_state.accounts = accounts  # type: ignore[attr-defined]
    return table


def _table(request: Request) -> TokenTable:
    table = getattr(request.app.state, "api_tokens", None)
    if table is None:
        from hub.settings import Settings

        table = install(request.app.state, Settings().api_tokens)
    assert isinstance(table, TokenTable)
    return table


def accounts_of(request: Request) -> AccountStore | None:
    """The app's account store, or None where the app has none (bare test apps)."""
    return getattr(request.app.state, "accounts", None)


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, detail={"error": "unauthorized", "message": message},
                         headers={"WWW-Authenticate": "Bearer"})


def open_reads(request: Request) -> bool:
    """True when nothing is configured (no token, no account): reads are open."""
    if not _table(request).empty:
        return False
    accounts = accounts_of(request)
    return accounts is None or not accounts.any_enabled()


def resolve(request: Request) -> User:
    """The caller of a request: bearer token, else session cookie, else anonymous or 401.

    Cached on ``request.state.caller``; an invalid token or session is 401 even when reads
    are open (a caller who sent credentials means them).
    """
    cached = getattr(request.state, "caller", None)
    if isinstance(cached, User):
        return cached
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    user: User | None
    if header:
        if scheme.lower() != "bearer" or not value.strip():
            raise _unauthorized("expected an Authorization: Bearer token")
        user = _table(request).lookup(value.strip())
        if user is None:
            raise _unauthorized("invalid token")
    elif request.cookies.get(SESSION_COOKIE):
        accounts = accounts_of(request)
        user = accounts.session_user(request.cookies[SESSION_COOKIE]) if accounts else None
        if user is None:
            raise _unauthorized("session expired or signed out: sign in again")
    elif open_reads(request):
        user = User(ANONYMOUS, "viewer", None, "anonymous")
    else:
        raise _unauthorized("missing bearer token or session: sign in")
    request.state.caller = user
    return user


def caller_of(request: Request) -> User:
    """The caller already resolved by a route's dependency (resolves it if not)."""
    return resolve(request)


def _check_csrf(request: Request, user: User) -> None:
    if user.via != "session" or request.method in SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER, "")
    if not user.csrf or not hmac.compare_digest(sent.encode(), user.csrf.encode()):
        raise HTTPException(403, detail={
            "error": "csrf", "message": "missing or wrong X-CSRF-Token for this session "
                                        "(the console sends it; reload the page)"})


def check_role(request: Request, role: str, *, all_sites: bool = False) -> User:
    """Resolve the caller and demand ``role`` (and, with ``all_sites``, no site limit)."""
    needed = ROLE_RANK[role]
    user = resolve(request)
    if user.via == "anonymous" and needed > 0:
        raise HTTPException(403, detail={
            "error": "forbidden",
            "message": "writes are disabled: HUB_API_TOKENS is empty and there is no account "
                       "(configure name:role:token entries or `hub users add` to allow them)"})
    if ROLE_RANK[user.role] < needed:
        raise HTTPException(403, detail={
            "error": "forbidden",
            "message": f"{user.name} is {user.role}; this needs {role} or higher"})
    if all_sites and user.sites is not None:
        raise HTTPException(403, detail={
            "error": "forbidden",
            "message": f"{user.name} is limited to sites {', '.join(sorted(user.sites))}; "
                       "this needs a caller for all sites"})
    _check_csrf(request, user)
    return user


def require(role: str, *, all_sites: bool = False) -> Callable[..., str]:
    """Return a dependency that checks the caller has at least ``role``; gives the name."""
    if role not in ROLE_RANK:
        raise ValueError(f"unknown role {role!r}")

    def dependency(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
    ) -> str:
        del credentials  # declared for the OpenAPI security scheme; resolve() reads the header
        return check_role(request, role, all_sites=all_sites).name

    dependency.__name__ = f"require_{role}" + ("_all_sites" if all_sites else "")
    return dependency


def require_caller(role: str) -> Callable[..., User]:
    """Like ``require`` but gives the whole caller (name, role, sites)."""
    if role not in ROLE_RANK:
        raise ValueError(f"unknown role {role!r}")

    def dependency(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
    ) -> User:
        del credentials
        return check_role(request, role)

    dependency.__name__ = f"caller_{role}"
    return dependency


viewer = require("viewer")
officer = require("officer")
admin = require("admin")
global_admin = require("admin", all_sites=True)
