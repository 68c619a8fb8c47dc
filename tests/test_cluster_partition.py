"""Device ids the NATS MQTT layer refuses in cluster mode: found and named at start."""

from __future__ import annotations

import logging

import pytest

from hub.cluster.partition import refused_by_nats
from hub.cluster.wiring import NAMED_MAX, unpublishable


@pytest.mark.parametrize(("device_id", "refused"), [
    ("LD-FL-000000", False), ("XS_07", False), ("站点-3", False),
    ("XS.07", True), ("XS 07", True), (".", True)])
def test_ids_with_a_dot_or_a_space_are_refused(device_id: str, refused: bool) -> None:
    assert refused_by_nats(device_id) is refused


def test_the_hub_names_each_unpublishable_device(caplog: pytest.LogCaptureFixture) -> None:
    ids = ["A-1", "B.2", "C 3", "D-4"]
    with caplog.at_level(logging.ERROR, logger="hub.cluster.wiring"):
        assert unpublishable(ids) == ["B.2", "C 3"]
    named = [r.getMessage() for r in caplog.records]
    assert len(named) == 2 and "'B.2'" in named[0] and "'C 3'" in named[1], named
    assert all("rename the device" in m for m in named)


def test_at_most_named_max_are_named(caplog: pytest.LogCaptureFixture) -> None:
    ids = [f"X.{i:04d}" for i in range(NAMED_MAX + 5)]
    with caplog.at_level(logging.ERROR, logger="hub.cluster.wiring"):
        assert len(unpublishable(ids)) == NAMED_MAX
    assert len(caplog.records) == NAMED_MAX
