"""Torture, short form: the hub SIGKILLed at random points 5 times under load; exactly once.

The long form is ``bench/torture.py kill --kills 20`` (same function, more of everything).
HUB_TORTURE_SEED picks the kill moments (default: a new seed each run, printed on failure).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent.parent / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from torture import kill_loop  # type: ignore[import-not-found]  # noqa: E402


def test_sigkill_five_times_under_load_exactly_once(
    tmp_path: Path, mosquitto: Any, influx_db: Any
) -> None:
    seed = int(os.environ.get("HUB_TORTURE_SEED") or time.time())
    result = kill_loop(tmp_path, mosquitto, influx_db.server, influx_db.name, kills=5,
                       messages=6000, rate=500, devices=200, seed=seed, timeout=90)
    assert result.exactly_once, (
        f"seed {seed}: stored {result.counts}, expected {result.expected}; "
        f"events {result.events}\n{result.extra.get('hub_log_tail')}"
    )
    assert len(result.events) == 5
