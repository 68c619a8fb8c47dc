"""Browser-facing protections: security headers on every answer, and /docs when asked.

Every response carries a Content-Security-Policy (scripts and connections only from the hub,
no framing: ``frame-ancestors 'none'``), ``X-Content-Type-Options: nosniff``,
``Referrer-Policy: same-origin`` and ``X-Frame-Options: DENY``. Swagger UI at ``/docs`` loads
its script from a CDN, so its pages get a policy that allows that script host only.
``HUB_API_DOCS``: ``open`` (default: /docs, /redoc, /openapi.json for anyone), ``token``
(they need a viewer), ``off`` (not served).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Depends, FastAPI, Request, Response
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from hub.api.auth import viewer
from hub.api.scope import policy

CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
DOCS_CDN = "https://cdn.jsdelivr.net"
DOCS_CSP = (f"default-src 'self'; script-src 'self' 'unsafe-inline' {DOCS_CDN}; "
            f"style-src 'self' 'unsafe-inline' {DOCS_CDN}; img-src 'self' data: "
            "https://fastapi.tiangolo.com; connect-src 'self'; object-src 'none'; "
            "base-uri 'none'; frame-ancestors 'none'")
DOCS_PATHS = ("/docs", "/redoc")
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def install(app: FastAPI, docs: str) -> None:
    """Add the header middleware, and the token-guarded docs routes for ``docs == 'token'``."""

    @app.middleware("http")
    async def security_headers(request: Request,
                               call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        path = request.url.path
        csp = DOCS_CSP if path.startswith(DOCS_PATHS) else CSP
        response.headers.setdefault("Content-Security-Policy", csp)
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    if docs != "token":
        return
    read = [Depends(viewer)]

    @app.get("/openapi.json", include_in_schema=False, dependencies=read)
    @policy("caller")
    def openapi() -> JSONResponse:
        """The OpenAPI document (a viewer or more)."""
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=read)
    @policy("caller")
    def swagger() -> HTMLResponse:
        """Swagger UI (a viewer or more; the browser sends its session cookie)."""
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} docs")

    @app.get("/redoc", include_in_schema=False, dependencies=read)
    @policy("caller")
    def redoc() -> HTMLResponse:
        """ReDoc (a viewer or more)."""
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} docs")

