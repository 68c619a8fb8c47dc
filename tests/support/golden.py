"""The golden machinery: case folders of hand-written files in, the hub's line protocol out.

A case is a folder ``<root>/<profile>/<case>/`` (``<profile>`` is a device profile's file name
without ``.yaml``) holding ``payload`` (the bytes a device sends), ``case.json`` (topic, qos,
received time, what to expect: ``stored`` with the number of points, or ``refused`` with the
reason) and ``expected.lp`` (the exact line protocol the hub writes, or
``# refused <reason>: <detail>``). ``<root>/_sites/`` holds the site files the cases assume.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from hub.ingest.lineproto import encode_point
from hub.ingest.normalize import Normalizer
from hub.model import InboundMessage, Refusal
from hub.profiles.loader import load_profiles
from hub.sites import load_sites

ROOT = Path(__file__).resolve().parents[1] / "golden"
REPO = Path(__file__).resolve().parents[2]
PROFILES = REPO / "device_profiles"


@dataclass(frozen=True)
class GoldenCase:
    """One case folder, read."""

    folder: Path
    topic: str
    qos: int
    received_ns: int
    expect: str
    reason: str | None
    points: int | None
    payload: bytes

    @property
    def profile(self) -> str:
        """The profile the case belongs to (its parent folder's name)."""
        return self.folder.parent.name

    @property
    def name(self) -> str:
        """The case's name (its folder's name)."""
        return self.folder.name


def read_case(folder: Path) -> GoldenCase:
    """Read a case folder; KeyError / ValueError name what is missing or wrong."""
    spec: dict[str, Any] = json.loads((folder / "case.json").read_text(encoding="utf-8"))
    if spec["expect"] not in ("stored", "refused"):
        raise ValueError(f"{folder}: expect must be stored or refused, not {spec['expect']!r}")
    received = datetime.fromisoformat(spec["received"])
    return GoldenCase(
        folder=folder,
        topic=spec["topic"],
        qos=int(spec.get("qos", 1)),
        received_ns=int(received.timestamp()) * 1_000_000_000,
        expect=spec["expect"],
        reason=spec.get("reason"),
        points=spec.get("points"),
        payload=(folder / "payload").read_bytes(),
    )


def case_folders(root: Path = ROOT) -> list[Path]:
    """Every case folder under ``root``, sorted (``_sites`` and other ``_`` folders skipped)."""
    return sorted(p for p in root.glob("*/*")
                  if not p.parent.name.startswith("_") and (p / "case.json").exists())


def profile_names(profiles_dir: Path = PROFILES) -> set[str]:
    """The device profiles' names, as the golden folders are named: file names without .yaml."""
    return {p.stem for p in profiles_dir.glob("*.yaml")}


def make_normalizer(profiles_dir: Path = PROFILES, root: Path = ROOT) -> Normalizer:
    """The hub's normalizer over the given profiles and the cases' own site files."""
    return Normalizer(load_profiles(profiles_dir), load_sites(root / "_sites"))


def render(normalizer: Normalizer, case: GoldenCase) -> str:
    """What the hub makes of the case: line protocol, or ``# refused <reason>: <detail>``."""
    message = InboundMessage(case.topic, case.payload, case.qos, False, case.received_ns)
    result = normalizer.process(message)
    if isinstance(result, Refusal):
        return f"# refused {result.reason}: {result.detail}\n"
    return "".join(encode_point(p).decode() + "\n" for p in result.points)


def check(normalizer: Normalizer, case: GoldenCase, update: bool = False) -> None:
    """Assert the hub does what ``case.json`` says and writes exactly ``expected.lp``.

    With ``update`` the expected file is rewritten first (review the diff).
    """
    actual = render(normalizer, case)
    expected_path = case.folder / "expected.lp"
    if update:
        expected_path.write_text(actual)
    if case.expect == "refused":
        assert actual.startswith(f"# refused {case.reason}: "), (case.folder, actual)
    else:
        assert not actual.startswith("# refused"), (case.folder, actual)
        if case.points is not None:
            assert len(actual.splitlines()) == case.points, (case.folder, actual)
    assert expected_path.exists(), f"no expected.lp in {case.folder}: run with GOLDEN_UPDATE=1"
    assert actual == expected_path.read_text(), case.folder
