"""Sign-in, sign-out, who am I, users of a site, and the audit log (docs/accounts.md).

``POST /api/login {username, password}`` -> 200 with an HttpOnly, SameSite=Strict session
cookie (Secure over HTTPS) that every route accepts like a token, and the session's CSRF token
that the console sends back in ``X-CSRF-Token`` on writes. ``POST /api/logout`` ends it.
Repeated failures for a name answer 429 (``Retry-After``) for a while.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from hub.accounts.audit import AuditLog
from hub.accounts.store import AccountError, AccountStore, Busy, LockedOut
from hub.api.auth import SESSION_COOKIE, User, accounts_of, parse_sites, require_caller, resolve
from hub.api.scope import policy, site_query

router = APIRouter(tags=["accounts"])

Admin = Annotated[User, Depends(require_caller("admin"))]


class LoginBody(BaseModel):
    """A user name and password."""

    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=2000)


class NewUser(BaseModel):
    """An account created by an admin (a site admin: only within their sites)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    role: str
    password: str = Field(min_length=1, max_length=1024)
    sites: list[str] | None = None


def source_of(request: Request) -> str | None:
    """Where a request came from (the peer address)."""
    return request.client.host if request.client else None


def audit_of(request: Request) -> AuditLog | None:
    """The app's audit log (None in bare test apps)."""
    return getattr(request.app.state, "audit", None)


def audit(request: Request, actor: str, action: str, **fields: Any) -> None:
    """Record an audit row with the request's source address."""
    log = audit_of(request)
    if log is not None:
        log.record(actor, action, source=source_of(request), **fields)


def _accounts(request: Request) -> AccountStore:
    store = accounts_of(request)
    if store is None:
        raise HTTPException(503, detail={"error": "unavailable",
                                         "message": "accounts are not enabled"})
    return store


def _https(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "")
    return request.url.scheme == "https" or forwarded.split(",")[0].strip() == "https"


@router.post("/api/login")
@policy("public")
def login(request: Request, response: Response, body: LoginBody) -> dict[str, Any]:
    """Sign in: a session cookie and ``{name, role, sites, csrf_token, expires_at}``."""
    store = _accounts(request)
    try:
        user = store.authenticate(body.username, body.password)
    except Busy as exc:
        raise HTTPException(429, headers={"Retry-After": "1"}, detail={
            "error": "busy", "message": f"at most {exc.concurrent} sign-ins are checked at "
                                        "once; try again in a second"}) from None
    except LockedOut as exc:
        audit(request, body.username, "login.locked", target=body.username, ok=False)
        raise HTTPException(429, headers={"Retry-After": str(exc.retry_after_s)}, detail={
            "error": "too_many_attempts",
            "message": f"{exc.max_failures} failed sign-ins lock a name for {exc.lockout_s} s;"
                       f" try again in {exc.retry_after_s} s"}) from None
    if user is None:
        audit(request, body.username, "login.failed", target=body.username, ok=False)
        raise HTTPException(401, detail={"error": "unauthorized",
                                         "message": "wrong user name or password"})
    session = store.start_session(user, source_of(request))
    response.set_cookie(
        SESSION_COOKIE, session.cookie, max_age=int(store.session_ttl_s), path="/",
        httponly=True, samesite="strict", secure=_https(request))
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-CSRF-Token"] = session.csrf
    audit(request, user.name, "login.ok", target=user.name,
          site=None if user.sites is None or len(user.sites) != 1 else next(iter(user.sites)))
    from datetime import UTC, datetime

    return {**user.public(), "csrf_token": session.csrf,
            "expires_at": datetime.fromtimestamp(session.expires_ns / 1e9, UTC).isoformat()}


@router.post("/api/logout")
@policy("public")
def logout(request: Request, response: Response) -> dict[str, Any]:
    """Sign out: the session ends and its cookie is cleared (harmless when not signed in)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    store = accounts_of(request)
    if cookie and store is not None:
        user = store.session_user(cookie)
        store.end_session(cookie)
        if user is not None:
            audit(request, user.name, "logout", target=user.name)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                           secure=_https(request))
    return {"signed_out": True}


@router.get("/api/me")
@policy("caller")
def me(request: Request, response: Response) -> dict[str, Any]:
    """The caller: ``{name, role, sites}`` (sites null for all); a session's CSRF token is in
    the ``X-CSRF-Token`` header."""
    user = resolve(request)
    if user.csrf:
        response.headers["X-CSRF-Token"] = user.csrf
        response.headers["Cache-Control"] = "no-store"
    return user.public()


@router.get("/api/audit")
@policy("sites")
def audit_log(request: Request, user: Admin, action: str | None = None,
              actor: str | None = None, site: str | None = None,
              limit: int = Query(100, ge=1, le=1000),
              offset: int = Query(0, ge=0, le=1_000_000)) -> dict[str, Any]:
    """Audit rows, newest first (admin; an admin of some sites sees those sites' rows)."""
    log = audit_of(request)
    if log is None:
        return {"total": 0, "items": []}
    items, total = log.query(sites=site_query(request, site), action=action, actor=actor,
                             limit=limit, offset=offset)
    return {"total": total, "items": items}


def _within(user: User, sites: frozenset[str] | None) -> bool:
    """True when ``user`` administers every site of ``sites`` (None: all sites)."""
    if user.sites is None:
        return True
    return sites is not None and sites <= user.sites


@router.get("/api/users")
@policy("sites")
def users(request: Request, user: Admin) -> list[dict[str, Any]]:
    """Accounts (admin; an admin of some sites sees the accounts within those sites)."""
    return _accounts(request).list(user.sites)


@router.post("/api/users", status_code=201)
@policy("sites")
def add_user(request: Request, user: Admin, body: NewUser) -> dict[str, Any]:
    """Create an account; an admin of some sites only within those sites."""
    store = _accounts(request)
    try:
        sites = parse_sites(",".join(body.sites or []), "sites") if body.sites else None
        if not _within(user, sites):
            raise HTTPException(403, detail={
                "error": "forbidden",
                "message": f"{user.name} may create accounts of sites "
                           f"{', '.join(sorted(user.sites or ()))} only"})
        store.add(body.name, body.role, body.password, sites)
    except (AccountError, ValueError) as exc:
        raise HTTPException(422, detail={"error": "invalid", "message": str(exc)}) from None
    audit(request, user.name, "user.add", target=body.name,
          site=None if sites is None or len(sites) != 1 else next(iter(sites)),
          detail={"role": body.role, "sites": sorted(sites) if sites else None})
    created = store.get(body.name)
    assert created is not None
    return created


@router.delete("/api/users/{name}")
@policy("sites")
def remove_user(request: Request, user: Admin, name: str) -> dict[str, Any]:
    """Remove an account (an admin of some sites: only accounts within those sites)."""
    store = _accounts(request)
    found = store.get(name)
    target_sites = None if found is None or found["sites"] is None else frozenset(found["sites"])
    if found is None or not _within(user, target_sites):
        raise HTTPException(404, detail={"error": "not_found", "message": f"no user {name!r}"})
    store.remove(name)
    audit(request, user.name, "user.remove", target=name,
          site=None if target_sites is None or len(target_sites) != 1
          else next(iter(target_sites)))
    return {"removed": name}
