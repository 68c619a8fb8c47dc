"""The hub clock: wall, or the newest plausible device time (for demos and replays)."""

from __future__ import annotations

import pytest

from hub.clock import HubClock


def test_wall_mode_ignores_device_times() -> None:
    clock = HubClock("wall", wall=lambda: 1_000)
    clock.observe(500)
    assert clock() == 1_000


def test_device_mode_follows_newest_device_time_never_past_wall() -> None:
    clock = HubClock("device", wall=lambda: 1_000)
    assert clock() == 1_000  # nothing seen yet
    clock.observe(400)
    clock.observe(300)  # older: no effect
    assert clock() == 400
    clock.observe(5_000)  # a device clock ahead of the wall: capped
    assert clock() == 1_000


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="wall or device"):
        HubClock("sundial")
