"""Site scopes: every route declares how it treats a caller limited to some sites.

A route's endpoint carries one policy (``@policy("sites")`` under the route decorator):

- ``public``: no caller needed, nothing site-bound (health, metrics, sign-in, page shells);
- ``caller``: any caller, nothing site-bound (``/api/me``, logout);
- ``sites``: the route shows only the caller's sites (lists and counts filtered, another
  site's object by id 404, writes there refused) through the helpers below;
- ``all_sites``: only callers of every site (a scoped caller gets 403).

``tests/test_scopes.py`` walks the app's route table: a route without a policy fails it, and
every ``sites`` route is called by a caller of one site against another site's objects. The
check is API-only: the ingest path never calls it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from fastapi import HTTPException, Request

from hub.api.auth import User, caller_of

POLICIES = ("public", "caller", "sites", "all_sites")
F = TypeVar("F", bound=Callable[..., Any])


def policy(name: str) -> Callable[[F], F]:
    """Declare an endpoint's scope policy (put it under ``@router.get(...)`` and the like)."""
    if name not in POLICIES:
        raise ValueError(f"unknown scope policy {name!r}: use {', '.join(POLICIES)}")

    def mark(endpoint: F) -> F:
        endpoint.__scope__ = name  # type: ignore[attr-defined]
        return endpoint

    return mark


def policy_of(endpoint: Any) -> str | None:
    """The declared policy of an endpoint, or None."""
    value = getattr(endpoint, "__scope__", None)
    return value if isinstance(value, str) else None


def sites_of(request: Request) -> frozenset[str] | None:
    """The caller's sites (None: all)."""
    return caller_of(request).sites


def visible(request: Request, site: str | None) -> bool:
    """True when the caller may see objects of ``site``."""
    return caller_of(request).sees(site)


def not_found(what: str, ident: str) -> HTTPException:
    """The 404 of an object the caller may not see (same as one that does not exist)."""
    return HTTPException(404, detail={"error": "not_found", "message": f"no {what} {ident!r}"})


def require_site(request: Request, site: str | None, what: str = "site",
                 ident: str | None = None) -> None:
    """404 unless the caller sees ``site`` (``what``/``ident`` name the object in the 404)."""
    if not visible(request, site):
        raise not_found(what, ident if ident is not None else str(site))


def refuse_write(request: Request, site: str) -> None:
    """403 when the caller may not write into ``site`` (e.g. a create naming another site)."""
    user = caller_of(request)
    if not user.sees(site):
        raise HTTPException(403, detail={
            "error": "forbidden",
            "message": f"{user.name} may act on sites {', '.join(sorted(user.sites or ()))} "
                       f"only, not {site!r}"})


def site_query(request: Request, site: str | None) -> list[str] | None:
    """The sites a list should query: None for all, else a list (empty: nothing visible).

    A requested ``site`` outside the caller's scope gives an empty list, not an error: the
    list is simply empty, as for a site without objects.
    """
    sites = sites_of(request)
    if sites is None:
        return None if site is None else [site]
    if site is None:
        return sorted(sites)
    return [site] if site in sites else []


def filter_sites(request: Request, items: Iterable[dict[str, Any]],
                 key: str = "site") -> list[dict[str, Any]]:
    """The items whose ``key`` is one of the caller's sites (all items for an unscoped one)."""
    user = caller_of(request)
    if user.sites is None:
        return list(items)
    return [item for item in items if item.get(key) in user.sites]


def scoped(user: User) -> bool:
    """True when the caller is limited to some sites."""
    return user.sites is not None
