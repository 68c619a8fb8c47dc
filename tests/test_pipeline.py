"""The pipeline thread in process: one message it cannot handle never stops ingest."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import hub.ingest.pipeline
from hub.ingest.lineproto import encode_point
from hub.model import InboundMessage, Point
from hub.runtime import Hub
from hub.settings import Settings
from tests.support.payloads import generate

GOLDEN_SITES = Path(__file__).parent / "golden" / "_sites"


class RecordingWriter:
    """Keeps each submitted batch; durable at once (the real writer is tested elsewhere)."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def submit(self, lines: list[bytes], on_durable: Callable[[], None]) -> None:
        self.lines += lines
        on_durable()


def test_a_message_that_breaks_the_pipeline_is_refused_and_the_rest_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    by_device = {c.points[0].device_id: c for c in generate("XS-FL200", 30, seed=11)}
    cases = list(by_device.values())[:3]  # three devices
    poisoned = cases[1].points[0].device_id

    def encode_or_fail(point: Point) -> bytes:
        if ("device_id", poisoned) in point.tags:  # stands in for any bug on the ingest path
            raise ValueError("injected fault")
        return encode_point(point)

    monkeypatch.setattr(hub.ingest.pipeline, "encode_point", encode_or_fail)
    hub_ = Hub(Settings(data_dir=tmp_path / "data", sites_dir=GOLDEN_SITES,
                        mqtt_url="mqtt://127.0.0.1:1", mqtt_intake="thread"))
    writer = RecordingWriter()
    acked: list[Any] = []
    pipeline = hub_.pipeline
    pipeline.writer = writer
    pipeline.ack = acked.extend
    pipeline.start()
    assert pipeline.running
    try:
        for i, case in enumerate(cases):
            pipeline.submit(InboundMessage(case.topic, case.payload, 1, False, time.time_ns(), i))
        deadline = time.monotonic() + 10
        while len(acked) < len(cases) and time.monotonic() < deadline:
            time.sleep(0.02)
        alive_after_fault = pipeline.running
    finally:
        pipeline.stop()
        hub_.rules.stop()
    assert acked == [0, 1, 2]  # all acknowledged, in order, the broken one with its neighbours
    assert pipeline.processed == 3
    assert alive_after_fault
    assert not pipeline.running  # stopped
    devices = [c.points[0].device_id for c in cases]
    written = b"\n".join(writer.lines)
    assert f"device_id={devices[0]}".encode() in written
    assert f"device_id={devices[2]}".encode() in written  # the message after it went on
    assert f"device_id={poisoned}".encode() not in written
    refused = hub_.refusals.recent(10)
    assert [(r["reason"], r["device_id"]) for r in refused] == [("internal", poisoned)]
    assert "injected fault" in refused[0]["detail"]
