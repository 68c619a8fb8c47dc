"""The three seed townships' site files: counts from the 2021 article, formats, determinism."""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

import pytest

from hub.sites import SiteRegistry, load_sites

ROOT = Path(__file__).resolve().parent.parent
SITES = ROOT / "sites"


@pytest.fixture(scope="module")
def registry() -> SiteRegistry:
    return load_sites(SITES)


def test_three_sites_load(registry: SiteRegistry) -> None:
    assert set(registry.sites) == {"guoyuan", "fuping", "longtoupu"}
    for site in registry.sites.values():
        assert site.rules == {}
        assert site.timezone == "Asia/Shanghai"


def test_guoyuan_lights(registry: SiteRegistry) -> None:
    site = registry.sites["guoyuan"]
    assert len(site.communities) == 7
    assert 290 <= len(site.devices) <= 310
    models = Counter(d.model for d in site.devices)
    assert set(models) == {"XS-FL200", "HN-BSD3"}
    assert 0.55 <= models["XS-FL200"] / len(site.devices) <= 0.65
    for d in site.devices:
        assert d.place in {"sharp_bend", "school_gate", "junction", "work_zone"}
        assert d.active_hours is not None
        assert abs(d.lat - 28.36) < 0.1 and abs(d.lon - 113.17) < 0.1
        if d.model == "XS-FL200":
            assert re.fullmatch(r"GY-FL-\d{4}", d.id)
        else:
            assert re.fullmatch(r"8612345678\d{5}", d.id)
        if d.place == "school_gate":
            assert d.active_hours.start.hour in (6, 7) and d.active_hours.end.hour == 18
    assert {d.place for d in site.devices} == {"sharp_bend", "school_gate", "junction", "work_zone"}


def test_fuping_patrol(registry: SiteRegistry) -> None:
    site = registry.sites["fuping"]
    assert len(site.communities) == 9
    assert len(site.routes) == 9
    assert len(site.checkpoints) == 107
    assert len(site.inspectors) == 52
    readers = [d for d in site.devices if d.model == "PT-NFC1"]
    assert sorted(d.id for d in readers) == [f"FP-R{i:02d}" for i in range(1, 10)]
    assert {d.community for d in readers} == {c.id for c in site.communities}
    uids = [c.tag_uid for c in site.checkpoints]
    assert len(set(uids)) == 107
    assert all(re.fullmatch(r"[0-9A-F]{14}", u) for u in uids)
    covered = [cp for r in site.routes for cp in r.checkpoints]
    assert sorted(covered) == sorted(c.id for c in site.checkpoints)  # each on one route
    assert {r.order for r in site.routes} == {"strict", "any"}
    assert sum(len(r.inspectors) for r in site.routes) == 52
    for route in site.routes:
        assert len(route.readers) == 1 and len(route.rounds) == 3
        assert all(60 <= rnd.window_min <= 120 for rnd in route.rounds)
    assert all(abs(c.lat - 29.04) < 0.05 and abs(c.lon - 111.69) < 0.05 for c in site.checkpoints)


def test_longtoupu_stations(registry: SiteRegistry) -> None:
    site = registry.sites["longtoupu"]
    assert len(site.communities) == 7
    assert len(site.devices) == 7
    assert {d.community for d in site.devices} == {c.id for c in site.communities}
    models = Counter(d.model for d in site.devices)
    assert set(models) == {"MFS-GW1", "YK-FS8"}
    for d in site.devices:
        pattern = r"LTP-MFS-\d{2}" if d.model == "MFS-GW1" else r"YK8-\d{6}"
        assert re.fullmatch(pattern, d.id)
        assert abs(d.lat - 27.88) < 0.1 and abs(d.lon - 113.16) < 0.1


def test_generator_is_deterministic_and_matches_files() -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import make_sites
    finally:
        sys.path.pop(0)
    for name, doc in make_sites.build().items():
        assert make_sites.dump(doc) == (SITES / f"{name}.yaml").read_text(encoding="utf-8"), (
            f"sites/{name}.yaml is stale: run uv run python tools/make_sites.py"
        )


YAML_CASES = [
    "",
    "site: x\nname: X\n",
    "site: x\nname: 'X'\ndevices:\n  - {id: '0123', model: XS-FL200, lat: 28.1, lon: 112}\n"
    "  - id: 869000000000026\n    model: HN-BSD3\n    active_hours: {start: '18:00', end: 06:00}\n",
    "a: &anchor {b: 1, c: [1, 2.5, true, null, 2026-10-01, 2026-10-01T08:00:00Z, 18:00]}\n"
    "d: *anchor\n",
    "base: &b {x: 1}\nmerged:\n  <<: *b\n  y: 2\n",  # merge key: the general path
    "tagged: !!set {a, b}\n",  # explicit collection tag: the general path
    "k: !!str 12\nempty:\nlist: []\nmap: {}\nmulti: |\n  two\n  lines\n",
    "1: one\n2.5: two\ntrue: three\nnull: four\n",
    "dup: 1\ndup: 2\n",
]


@pytest.mark.parametrize("text", YAML_CASES)
def test_site_yaml_loader_matches_safe_load(text: str, tmp_path: Path) -> None:
    import yaml

    from hub.sites.loader import _load_yaml

    path = tmp_path / "x.yaml"
    path.write_text(text, encoding="utf-8")
    assert _load_yaml(path) == yaml.safe_load(text)


def test_site_yaml_loader_errors_like_safe_load(tmp_path: Path) -> None:
    import yaml

    from hub.sites.loader import _load_yaml

    for text in ("a: [1, 2\n", "a: *nowhere\n", "---\na: 1\n---\nb: 2\n"):
        path = tmp_path / "x.yaml"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(yaml.YAMLError) as ours:
            _load_yaml(path)
        with pytest.raises(yaml.YAMLError) as theirs, path.open(encoding="utf-8") as handle:
            yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        assert str(ours.value) == str(theirs.value)


def test_device_is_compact_read_only_and_validated_like_a_model() -> None:
    from pydantic import ValidationError

    from hub.sites import Device, Site

    site = Site.model_validate({"site": "x", "name": "X", "devices": [
        {"id": "L1", "model": "XS-FL200", "active_hours": {"start": "18:00", "end": "06:00"}},
        {"id": "L2", "model": "XS-FL200", "rules": {"battery_low": {"enabled": False}}},
    ]})
    one, two = site.devices
    assert isinstance(one, Device) and one.rules == {} and one.active_hours is not None
    assert two.rules == {"battery_low": {"enabled": False}} and two.community is None
    assert one.model is two.model  # shared strings
    assert Site(site="y", name="Y", devices=[one]).devices[0] is one
    assert Device(id="L1", model="XS-FL200", active_hours={"start": "18:00", "end": "06:00"}) == one
    with pytest.raises(AttributeError):
        one.model = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError) as bad:
        Site.model_validate({"site": "x", "name": "X", "devices": [
            {"id": "L1", "model": "XS-FL200"}, {"id": "L2", "modle": "XS-FL200"}]})
    text = str(bad.value)
    assert "devices.1.model\n  Field required" in text
    assert "devices.1.modle\n  Extra inputs are not permitted" in text


def test_checkpoint_is_a_compact_record_and_pickles() -> None:
    import pickle

    from hub.sites import Checkpoint, Device, Site

    site = Site.model_validate({"site": "x", "name": "X", "checkpoints": [
        {"id": "C1", "tag_uid": "04A1", "name": "Gate", "lat": 28.1}]})
    (cp,) = site.checkpoints
    assert isinstance(cp, Checkpoint) and (cp.id, cp.tag_uid, cp.lat, cp.lon) == ("C1", "04A1",
                                                                                28.1, None)
    assert pickle.loads(pickle.dumps(cp)) == cp
    device = Device(id="L1", model="XS-FL200", rules={"battery_low": {"enabled": False}})
    assert pickle.loads(pickle.dumps(device)) == device


def test_site_file_items_become_records_as_parsed_with_the_same_result_and_errors(
        tmp_path: Path) -> None:
    import yaml
    from pydantic import ValidationError

    from hub.sites import Site, load_site_file

    good = ("site: x\nname: X\ncommunities: [{id: c1, name: C}]\ndevices:\n"
            "  - {id: L1, model: XS-FL200, community: c1, lat: 28.1, lon: 112}\n"
            "  - id: L2\n    model: HN-BSD3\n    active_hours: {start: '18:00', end: 06:00}\n"
            "    rules: {battery_low: {enabled: false}}\n"
            "checkpoints: [{id: CP1, tag_uid: 04A1, name: gate, community: c1}]\n")
    bad = good.replace("model: HN-BSD3", "modle: HN-BSD3").replace("tag_uid: 04A1, ", "")
    path = tmp_path / "x.yaml"
    path.write_text(good, encoding="utf-8")
    assert load_site_file(path) == Site.model_validate(yaml.safe_load(good))
    path.write_text(bad, encoding="utf-8")
    with pytest.raises(ValidationError) as ours:
        load_site_file(path)
    with pytest.raises(ValidationError) as theirs:
        Site.model_validate(yaml.safe_load(bad))
    assert str(ours.value) == str(theirs.value)
    assert "devices.1.model" in str(ours.value) and "checkpoints.0.tag_uid" in str(ours.value)
