"""The bounded one-producer, one-consumer hand-off of the ingest path."""

from __future__ import annotations

import threading
import time

from hub.intake.handoff import Handoff


def test_consumer_sleeps_until_an_item_arrives() -> None:
    handoff: Handoff[int] = Handoff(10)
    threading.Timer(0.1, handoff.put, args=(1,)).start()
    started = time.monotonic()
    handoff.wait(5)
    assert list(handoff.items) == [1]
    assert time.monotonic() - started < 2  # woken by the put, not by the timeout


def test_wait_returns_at_once_when_items_wait() -> None:
    handoff: Handoff[int] = Handoff(10)
    handoff.put(1)
    started = time.monotonic()
    handoff.wait(5)
    assert time.monotonic() - started < 0.5


def test_producer_waits_while_full_and_resumes_when_consumed() -> None:
    handoff: Handoff[int] = Handoff(2)
    handoff.put(1)
    handoff.put(2)
    done = threading.Event()

    def produce() -> None:
        handoff.put(3)
        done.set()

    threading.Thread(target=produce, daemon=True).start()
    assert not done.wait(0.2)  # full: the producer waits (back-pressure)
    assert handoff.items.popleft() == 1
    assert done.wait(2)
    assert list(handoff.items) == [2, 3]


def test_a_set_stop_lets_the_producer_through() -> None:
    handoff: Handoff[int] = Handoff(1)
    stop = threading.Event()
    handoff.put(1)
    stop.set()
    handoff.put(2, stop)  # does not wait: the pipeline is stopping and drains what it has
    assert list(handoff.items) == [1, 2]
