"""Headless Debian Chromium driven by Playwright for Python (never Playwright's own browsers).

``chromium()`` yields a fresh persistent context (its own user-data-dir) of ``/usr/bin/chromium``.
A missing chromium skips the test, or fails it under HUB_REQUIRE_SERVICES=1 (CI), like the real
Mosquitto and InfluxDB. ``screenshot()`` writes ``docs/screenshots/<name>.png`` only when
HUB_SCREENSHOTS=1, so the README's pictures can be remade with
``HUB_SCREENSHOTS=1 uv run pytest tests/test_demo.py`` (it photographs the living demo).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
DESKTOP = {"width": 1600, "height": 1000}
PHONE = {"width": 390, "height": 844}


def _required() -> bool:
    return os.environ.get("HUB_REQUIRE_SERVICES", "").strip().lower() in {"1", "true", "yes"}


def chromium_path() -> str:
    """Return Debian's chromium; skip the test when missing (fail under HUB_REQUIRE_SERVICES=1)."""
    for candidate in (os.environ.get("HUB_CHROMIUM"), *CHROMIUM_CANDIDATES):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("chromium")
    if found:
        return found
    message = "Debian's chromium is not installed (apt-get install chromium)"
    if _required():
        pytest.fail(f"real browser required: {message}", pytrace=False)
    pytest.skip(f"{message}; HUB_REQUIRE_SERVICES=1 fails")
    raise AssertionError("unreachable")


def playwright_module() -> Any:
    """Import playwright's sync API (skip, or fail under HUB_REQUIRE_SERVICES=1, if missing)."""
    try:
        from playwright import sync_api
    except ImportError:
        if _required():
            pytest.fail("playwright (dev dependency) is not installed: uv sync", pytrace=False)
        pytest.skip("playwright is not installed")
    return sync_api


@contextmanager
def chromium(viewport: dict[str, int] | None = None, *, locale: str = "en-US") -> Iterator[Any]:
    """Yield a Playwright BrowserContext of Debian's headless chromium with a fresh profile."""
    executable = chromium_path()
    sync_api = playwright_module()
    profile = tempfile.mkdtemp(prefix="hub-chromium-")
    try:
        with sync_api.sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=executable,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport=viewport or DESKTOP,
                locale=locale,
            )
            context.set_default_timeout(15_000)
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def screenshots_enabled() -> bool:
    """True when HUB_SCREENSHOTS=1 asks the tests to (re)write docs/screenshots."""
    return os.environ.get("HUB_SCREENSHOTS", "").strip().lower() in {"1", "true", "yes"}


def screenshot(page: Any, name: str, *, full_page: bool = False) -> Path | None:
    """Write docs/screenshots/<name>.png when screenshots are enabled; return its path."""
    if not screenshots_enabled():
        return None
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.mouse.move(0, 0)  # no hover effects in the picture
    page.screenshot(path=str(path), full_page=full_page, animations="disabled")
    return path


def sign_in(page: Any, base_url: str, username: str, password: str) -> None:
    """Open the console and sign in with an account through the sign-in form."""
    page.goto(f"{base_url}/")
    # end an earlier session (the cookie is HttpOnly: only the hub can clear it)
    page.evaluate("fetch('/api/logout', {method: 'POST', credentials: 'same-origin'})")
    page.reload()
    page.locator("#login-username").fill(username)
    page.locator("#login-password").fill(password)
    page.locator("#login-form button[type=submit]").click()
    page.locator("#main").wait_for(state="visible")
