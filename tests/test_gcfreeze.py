"""The GC freezer moves survivors out of the collector's reach, on its interval only."""

from __future__ import annotations

import gc

from hub.tuning.gcfreeze import GcFreezer


def test_freeze_moves_live_objects_to_the_permanent_generation() -> None:
    gc.unfreeze()
    keep = [[i] for i in range(1000)]  # long-lived, tracked objects
    freezer = GcFreezer(interval_s=3600)
    freezer.freeze()
    try:
        assert gc.get_freeze_count() >= len(keep)
        frozen = gc.get_freeze_count()
        freezer.on_tick(0)  # not due for an hour: nothing more is frozen
        more = [[i] for i in range(1000)]
        freezer.on_tick(0)
        # frozen objects that die leave the count, so it may shrink; the new ones are not in it
        assert gc.get_freeze_count() < frozen + len(more)
    finally:
        gc.unfreeze()


def test_interval_zero_turns_it_off() -> None:
    gc.unfreeze()
    freezer = GcFreezer(interval_s=0)
    freezer.freeze()
    freezer.on_tick(0)
    assert gc.get_freeze_count() == 0
