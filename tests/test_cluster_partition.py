"""Device ids the NATS MQTT layer refuses in cluster mode: found and named on connecting."""

from __future__ import annotations

import logging

import pytest

from hub.cluster.partition import NAMED_MAX, unpublishable

OLD, CURRENT = (2, 9), (2, 15)  # Debian's nats-server 2.9.10; the current release


@pytest.mark.parametrize(("device_id", "server", "refused"), [
    ("LD-FL-000000", OLD, False), ("站点-3", OLD, False), ("XS.07", OLD, True),
    ("XS 07", OLD, True), ("XS.07", CURRENT, False), ("XS 07", CURRENT, True),
    ("XS.07", (2, 10), False)])
def test_a_dot_before_2_10_and_a_space_always(device_id: str, server: tuple[int, int],
                                              refused: bool) -> None:
    assert (unpublishable([device_id], server) == [device_id]) is refused


def test_the_hub_names_each_unpublishable_device(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="hub.cluster.partition"):
        assert unpublishable(["A-1", "B.2", "C 3", "D-4"], OLD) == ["B.2", "C 3"]
    named = [r.getMessage() for r in caplog.records]
    assert len(named) == 2 and "'B.2'" in named[0] and "'C 3'" in named[1], named
    assert all("nats-server 2.9" in m and "rename the device" in m for m in named), named
    assert "2.10 or later" in named[0]


def test_at_most_named_max_are_named(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="hub.cluster.partition"):
        assert len(unpublishable([f"X.{i:04d}" for i in range(NAMED_MAX + 5)], OLD)) == NAMED_MAX
    assert len(caplog.records) == NAMED_MAX
