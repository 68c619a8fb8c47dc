"""The dispatcher never sends a row twice when a send finishes while a poll reads the outbox.

The poll reads the due rows, then skips channels with a request in flight. A sender that
finished (row marked sent, channel no longer busy) between those two steps left the poll with
a stale "pending" copy of its row, sent again at once: the duplicate that made
tests/test_notify_handover.py flake. The test holds the poll's read until the send is over,
on SQLite and PostgreSQL (``state_url``), against the FAKE WeCom robot.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from hub.db import make_engine
from hub.notify.config import parse_config
from hub.notify.outbox import Due
from hub.notify.service import NotifyService
from hub.settings import PACKAGE_ROOT
from hub.sites import load_sites
from tests.support.fake_robots import FakeRobots

SITES = load_sites(PACKAGE_ROOT / "sites")


def test_a_send_that_ends_during_a_poll_is_not_sent_again(state_url: str, fake: FakeRobots,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    robot, url = fake.wecom("gy-leader")
    config = {"channels": [{"id": "gy-leader", "type": "wecom", "url": url}]}
    engine = make_engine(state_url)
    notify = NotifyService(parse_config(config, env={}), engine, SITES, clock=time.time_ns,
                           console_url="http://duty.example", poll_s=0.02)
    dispatcher = notify.dispatcher
    in_flight, stale_read = threading.Event(), threading.Event()
    driver = notify.driver("gy-leader")
    assert driver is not None
    real_send, real_due = driver.send, notify.outbox.due

    def send(*args: Any) -> Any:
        in_flight.set()
        assert stale_read.wait(10), "no poll read the outbox while the send was in flight"
        return real_send(*args)

    def due(now_ns: int, limit: int = 1000) -> list[Due]:
        rows = real_due(now_ns, limit)
        if in_flight.is_set() and not stale_read.is_set():
            stale_read.set()  # this copy still says "pending": hold it until the send is over
            deadline = time.monotonic() + 10
            while not dispatcher.idle() and time.monotonic() < deadline:
                time.sleep(0.01)
        return rows

    monkeypatch.setattr(driver, "send", send)
    monkeypatch.setattr(notify.outbox, "due", due)
    notify.start()
    try:
        assert notify.outbox.handover("hazard:H1", "guoyuan", 1, "gy-leader", "交办", 0)
        dispatcher.wake()
        deadline = time.monotonic() + 15
        while not (stale_read.is_set() and dispatcher.idle()) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert stale_read.is_set()
        time.sleep(0.2)  # ten more polls: a second send would have gone by now
        while not dispatcher.idle() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [m["text"] for m in robot.messages] == ["交办"]
    finally:
        notify.close()
        engine.dispose()
