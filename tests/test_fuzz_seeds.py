"""The atheris harness's target over its seed corpus, without atheris: the harness stays valid.

The long form (``uv run --group fuzz python bench/fuzz_decoders.py --seconds 600``) is run by
hand; this checks in CI that every seed goes through the target with the property tests'
invariants (no crash, a known refusal reason, points that encode and parse back).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "fuzz_decoders.py"


def test_every_seed_passes_the_fuzz_target(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("fuzz_decoders", BENCH)
    assert spec is not None and spec.loader is not None
    fuzz = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_decoders"] = fuzz
    spec.loader.exec_module(fuzz)
    assert "atheris" not in sys.modules  # the plain target, as CI has no atheris
    count = fuzz.write_seeds(tmp_path)
    seeds = sorted(tmp_path.iterdir())
    assert count == len(seeds) >= 300  # golden cases, simulator messages and their lines
    target = fuzz.make_target()
    for seed in seeds:
        target(seed.read_bytes())  # raises on a broken invariant
