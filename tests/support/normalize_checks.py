"""What every normalizer outcome must satisfy: shared by the property tests and the fuzzer."""

from __future__ import annotations

import math
import time
from pathlib import Path

from hub.ingest.normalize import Normalizer
from hub.model import Reading, Refusal
from hub.profiles.loader import load_profiles
from hub.sites import load_sites

REPO = Path(__file__).resolve().parents[2]
NORMALIZER = Normalizer(load_profiles(REPO / "device_profiles"), load_sites(REPO / "sites"))
NOW = time.time_ns()
REASONS = {
    "no_profile",
    "too_large",
    "empty",
    "bad_device_id",
    "bad_json",
    "not_text",
    "bad_csv",
    "bad_status",
    "device_mismatch",
    "missing_field",
    "bad_type",
    "bad_value",
    "out_of_range",
    "no_fields",
    "bad_text",
    "text_too_long",
}


def check_outcome(result: Reading | Refusal) -> None:
    """A refusal has a known reason and a detail; a reading has finite fields on every point."""
    if isinstance(result, Refusal):
        assert result.reason in REASONS, result  # never "internal": no crash, a known reason
        assert result.detail
    else:
        assert result.points
        for point in result.points:
            assert point.fields
            for _name, value in point.fields:
                assert not (isinstance(value, float) and not math.isfinite(value))
