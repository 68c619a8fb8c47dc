"""Golden folders: tests/golden/<profile>/<case>/ holds payload in, line protocol out.

Each folder is written by hand: ``payload`` (raw bytes), ``case.json`` (topic, qos, received
time, ``expect``: stored with its number of points, or refused with the reason) and
``expected.lp`` (the exact line protocol the hub writes, or ``# refused <reason>: <detail>``).
The profiles come from ``device_profiles/*.yaml``, so a new vendor is one profile plus its
golden folders, no Python (tests/support/golden.py is the machinery). Set GOLDEN_UPDATE=1 to
rewrite the expected files after a deliberate change, then review the diff.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from hub.ingest.normalize import Normalizer
from tests.support.golden import (
    PROFILES,
    ROOT,
    case_folders,
    check,
    make_normalizer,
    profile_names,
    read_case,
)

CASES = case_folders(ROOT)


@pytest.fixture(scope="module")
def normalizer() -> Normalizer:
    return make_normalizer()


def test_every_profile_has_golden_cases() -> None:
    profiles = {p.name for p in ROOT.iterdir() if not p.name.startswith("_")}
    assert profiles == profile_names(PROFILES)
    assert all(any(ROOT.joinpath(p).iterdir()) for p in profiles)


@pytest.mark.parametrize("folder", CASES, ids=[f"{p.parent.name}/{p.name}" for p in CASES])
def test_golden(normalizer: Normalizer, folder: Path) -> None:
    check(normalizer, read_case(folder), update=os.environ.get("GOLDEN_UPDATE") == "1")


SIXTH_PROFILE = """\
# ZX-FS2 micro fire station gateway: flat JSON, UTC epoch seconds (exists only in this test).
model: ZX-FS2
vendor: ZX
kind: fire_station
description: A sixth vendor, to show that adding one needs no Python
report_interval_s: 60
last_will: false
messages:
  up:
    topic: zx/{device_id}/up
    decoder: json
    device_id_path: id
    time: {path: t, format: epoch_s}
    points:
      - measurement: fire_station
        fields:
          temperature_c: {path: temp, type: float, min: -50, max: 1000}
          hydrant_pressure_mpa: {path: wp_kpa, type: float, scale: 0.001, min: 0, max: 5}
          door_open: {path: door, type: bool}
"""


def _write_case(folder: Path, case: dict[str, object], payload: bytes, expected: str) -> None:
    folder.mkdir(parents=True)
    (folder / "case.json").write_text(json.dumps(case, indent=1) + "\n")
    (folder / "payload").write_bytes(payload)
    (folder / "expected.lp").write_text(expected)


def test_a_sixth_vendor_is_one_profile_and_golden_folders(tmp_path: Path) -> None:
    """A throwaway sixth profile and its golden folders, all files, through the same machinery."""
    profiles, golden = tmp_path / "device_profiles", tmp_path / "golden"
    shutil.copytree(PROFILES, profiles)
    (profiles / "zx-fs2.yaml").write_text(SIXTH_PROFILE)
    shutil.copytree(ROOT, golden)
    (golden / "_sites" / "zx.yaml").write_text(
        "site: zxtown\nname: ZX test town\ntimezone: Asia/Shanghai\n"
        "devices:\n  - {id: ZX-0001, model: ZX-FS2}\n")
    received = "2026-11-28T00:05:00+00:00"
    _write_case(
        golden / "zx-fs2" / "datasheet",
        {"description": "the datasheet's example", "topic": "zx/ZX-0001/up", "qos": 1,
         "received": received, "expect": "stored", "points": 1},
        b'{"id": "ZX-0001", "t": 1795824000, "temp": 19.5, "wp_kpa": 310, "door": false}',
        "fire_station,device_id=ZX-0001,model=ZX-FS2,site=zxtown temperature_c=19.5,"
        "hydrant_pressure_mpa=0.31,door_open=false 1795824000000000000\n",
    )
    _write_case(
        golden / "zx-fs2" / "id_mismatch",
        {"description": "the id in the payload is not the topic's", "topic": "zx/ZX-0001/up",
         "qos": 1, "received": received, "expect": "refused", "reason": "device_mismatch"},
        b'{"id": "ZX-0002", "t": 1795824000, "temp": 19.5}',
        "# refused device_mismatch: payload says device 'ZX-0002', topic says 'ZX-0001'\n",
    )
    normalizer = make_normalizer(profiles, golden)
    assert {p.name for p in golden.iterdir() if not p.name.startswith("_")} == profile_names(
        profiles)
    folders = case_folders(golden)
    assert len(folders) == len(CASES) + 2
    for folder in folders:  # the five vendors' cases still hold beside the sixth
        check(normalizer, read_case(folder))
