"""`hub check-profiles`: the catalogue loads, and every problem names its file and line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hub.cli import main
from hub.ingest.normalize import Normalizer
from hub.profiles.loader import load_profiles
from hub.sites import load_sites

REPO = Path(__file__).parent.parent


def test_catalogue_every_profile_loads_and_routes() -> None:
    profiles = load_profiles(REPO / "device_profiles")
    assert {p.model for p in profiles} == {"XS-FL200", "HN-BSD3", "PT-NFC1", "MFS-GW1", "YK-FS8"}
    normalizer = Normalizer(profiles, load_sites(REPO / "sites"))
    assert len(normalizer.router.subscriptions()) == 10  # 2 + 1 + 3 + 3 + 1 topics
    assert all(qos == 1 for _topic, qos in normalizer.router.subscriptions())


def test_repo_catalogue_rules_and_sites_are_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-profiles"]) == 0
    out = capsys.readouterr().out
    assert "5 profile(s) valid" in out and "ok  site  fuping" in out


def test_broken_profile_is_reported_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profiles = tmp_path / "profiles"
    shutil.copytree(REPO / "device_profiles", profiles)
    text = (profiles / "yk-fs8.yaml").read_text()
    text = text.replace("scale: 0.1, min: -50", "scale: 0.1, mni: -50")
    text = text.replace("converter: nonzero", "converter: no_such_converter")
    (profiles / "yk-fs8.yaml").write_text(text)
    assert main(["check-profiles", "--profiles-dir", str(profiles)]) == 1
    err = capsys.readouterr().err
    lines = text.splitlines()
    typo = next(i for i, line in enumerate(lines, 1) if "mni:" in line)
    bad = next(i for i, line in enumerate(lines, 1) if "no_such_converter" in line)
    assert f"yk-fs8.yaml:{typo}:" in err and "Extra inputs are not permitted" in err
    assert f"yk-fs8.yaml:{bad}:" in err and "unknown converter 'no_such_converter'" in err


def test_bad_site_rule_override_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sites = tmp_path / "sites"
    sites.mkdir()
    (sites / "x.yaml").write_text(
        "site: x\nname: X\ndevices:\n"
        "  - {id: L1, model: XS-FL200, rules: {knocked_overr: {enabled: false}}}\n"
    )
    assert main(["check-profiles", "--sites-dir", str(sites)]) == 1
    assert "knocked_overr" in capsys.readouterr().err
