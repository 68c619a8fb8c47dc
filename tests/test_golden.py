"""Golden folders: tests/golden/<profile>/<case>/ holds payload in, line protocol out.

Each folder: ``case.json`` (topic, received time), ``payload`` (raw bytes), ``expected.lp``
(the exact line protocol the hub writes, or ``# refused <reason>: <detail>``). Set
GOLDEN_UPDATE=1 to rewrite the expected files after a deliberate change, then review the diff.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import pytest

from hub.ingest.lineproto import encode_point
from hub.ingest.normalize import Normalizer
from hub.model import InboundMessage, Refusal
from hub.profiles.loader import load_profiles
from hub.sites import load_sites

ROOT = Path(__file__).parent / "golden"
REPO = Path(__file__).parent.parent
CASES = sorted(p for p in ROOT.glob("*/*") if (p / "case.json").exists())


@pytest.fixture(scope="module")
def normalizer() -> Normalizer:
    return Normalizer(load_profiles(REPO / "device_profiles"), load_sites(ROOT / "_sites"))


def render(normalizer: Normalizer, folder: Path) -> str:
    case = json.loads((folder / "case.json").read_text())
    received = int(datetime.fromisoformat(case["received"]).timestamp()) * 1_000_000_000
    message = InboundMessage(case["topic"], (folder / "payload").read_bytes(), 1, False, received)
    result = normalizer.process(message)
    if isinstance(result, Refusal):
        return f"# refused {result.reason}: {result.detail}\n"
    return "".join(encode_point(p).decode() + "\n" for p in result.points)


def test_every_profile_has_golden_cases() -> None:
    profiles = {p.name for p in ROOT.iterdir() if not p.name.startswith("_")}
    assert profiles == {"xs-fl200", "hn-bsd3", "pt-nfc1", "mfs-gw1", "yk-fs8"}


@pytest.mark.parametrize("folder", CASES, ids=[f"{p.parent.name}/{p.name}" for p in CASES])
def test_golden(normalizer: Normalizer, folder: Path) -> None:
    actual = render(normalizer, folder)
    expected_path = folder / "expected.lp"
    if os.environ.get("GOLDEN_UPDATE") == "1":
        expected_path.write_text(actual)
    assert expected_path.exists(), f"no expected.lp in {folder}: run with GOLDEN_UPDATE=1"
    assert actual == expected_path.read_text()
