"""An in-process MQTT broker (amqtt) for ``hub demo``: nothing to install, loopback only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from typing import Any

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on host now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedBroker:
    """amqtt running on its own event loop thread (MQTT 3.1.1, anonymous, 127.0.0.1)."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="amqtt", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._broker: Any = None

    @property
    def url(self) -> str:
        """The broker's mqtt:// URL."""
        return f"mqtt://{self.host}:{self.port}"

    def _run(self) -> None:
        from amqtt.broker import Broker

        asyncio.set_event_loop(self._loop)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "sys_interval": 0,
            "auth": {"allow-anonymous": True, "plugins": ["auth_anonymous"]},
            "topic-check": {"enabled": False},
        }
        try:
            self._broker = Broker(config, loop=self._loop)
            self._loop.run_until_complete(self._broker.start())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker and wait until it listens."""
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.ERROR)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("embedded broker did not start")
        if self._error is not None:
            raise RuntimeError(f"embedded broker failed: {self._error}") from self._error
        log.info("embedded MQTT broker (amqtt) on %s", self.url)

    def stop(self) -> None:
        """Shut the broker down."""
        if self._broker is None or not self._loop.is_running():
            return
        future = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
        with contextlib.suppress(Exception):
            future.result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
