"""The atheris harnesses' targets over their seed corpora, without atheris: they stay valid.

The long forms (``uv run --group fuzz python bench/fuzz_decoders.py --seconds 600``, and
``bench/fuzz_mqtt.py`` for the lean MQTT client's parser) are run by hand; this checks in CI
that every seed goes through its target with the invariants (no crash, a known refusal reason,
points that encode and parse back; packets that parse the same cut or whole).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _harness(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    fuzz = importlib.util.module_from_spec(spec)
    sys.modules[name] = fuzz
    spec.loader.exec_module(fuzz)
    return fuzz


def test_every_seed_passes_the_fuzz_target(tmp_path: Path) -> None:
    fuzz = _harness("fuzz_decoders")
    assert "atheris" not in sys.modules  # the plain target, as CI has no atheris
    count = fuzz.write_seeds(tmp_path)
    seeds = sorted(tmp_path.iterdir())
    assert count == len(seeds) >= 300  # golden cases, simulator messages and their lines
    target = fuzz.make_target()
    for seed in seeds:
        target(seed.read_bytes())  # raises on a broken invariant


def test_every_seed_passes_the_mqtt_parser_fuzz_target(tmp_path: Path) -> None:
    fuzz = _harness("fuzz_mqtt")
    assert "atheris" not in sys.modules
    count = fuzz.write_seeds(tmp_path)
    seeds = sorted(tmp_path.iterdir())
    assert count == len(seeds) >= 60  # valid packets, streams, malformed ones, kept corpus
    target = fuzz.make_target()
    for seed in seeds:
        target(seed.read_bytes())  # raises on a broken invariant
