"""Run the real ``hub run`` command as a child process, for tests that kill or restart it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.services import free_port, log_tail


class HubProcess:
    """``hub run`` in a subprocess with HUB_* settings; SIGKILL-able, restartable."""

    def __init__(self, workdir: Path, **settings: Any) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.log_path = workdir / "hub.log"
        self.settings = {
            "HUB_DATA_DIR": str(workdir / "data"),
            "HUB_API_HOST": "127.0.0.1",
            "HUB_API_PORT": str(self.port),
            **{f"HUB_{k.upper()}": str(v) for k, v in settings.items()},
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.token: str | None = None  # sent as a bearer token by get and post

    def add_user(self, name: str, role: str, password: str,
                 sites: list[str] | None = None) -> None:
        """``hub users add`` against this hub's state store (password on stdin)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        env.update(self.settings)
        command = [sys.executable, "-m", "hub.cli", "users", "add", name, "--role", role]
        if sites:
            command += ["--sites", ",".join(sites)]
        subprocess.run(command, env=env, input=(password + "\n").encode(), check=True,
                       capture_output=True, cwd=self.workdir)

    @property
    def api(self) -> str:
        """Base URL of the hub's API."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0, wait_connected: bool = True) -> None:
        """Start and wait until the API answers (and the broker is connected).

        The deadline is generous: on a loaded machine start-up alone took 25 s. When the API
        port was taken meanwhile (the hub exits with "address already in use"), start again
        on a new port (``api`` follows).
        """
        for attempt in range(3):
            offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            try:
                self._start_once(timeout, wait_connected)
                return
            except RuntimeError:
                self._reap()
                log = self.log_path.read_bytes()[offset:]
                if b"address already in use" not in log or attempt == 2:
                    raise
                self.port = free_port()
                self.settings["HUB_API_PORT"] = str(self.port)

    def _reap(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def _start_once(self, timeout: float, wait_connected: bool) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        env.update(self.settings)
        handle = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "run"],
            env=env,
            stdout=handle,
            stderr=handle,
            cwd=self.workdir,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited {self.proc.returncode}:\n{log_tail(self.log_path)}")
            try:
                health = httpx.get(f"{self.api}/api/health", timeout=1).json()
                if not wait_connected or health["broker"]["connected"]:
                    return
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"hub did not come up:\n{log_tail(self.log_path)}")

    def health(self) -> dict[str, Any]:
        """GET /api/health."""
        result: dict[str, Any] = httpx.get(f"{self.api}/api/health", timeout=5).json()
        return result

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def get(self, path: str, **params: Any) -> Any:
        """GET an API path and return the JSON."""
        response = httpx.get(f"{self.api}{path}", params=params, headers=self._headers(),
                             timeout=10)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: Any = None) -> Any:
        """POST JSON to an API path and return the JSON answer."""
        response = httpx.post(f"{self.api}{path}", json=body, headers=self._headers(),
                              timeout=10)
        response.raise_for_status()
        return response.json()

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM and wait for a clean exit."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def log(self) -> str:
        """The tail of the hub's log."""
        return log_tail(self.log_path, 80)
