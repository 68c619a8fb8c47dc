"""The committed Grafana files are exactly what the code generates (a test fails on drift)."""

from __future__ import annotations

from pathlib import Path

import yaml

from hub.cli import main as hub_main
from hub.grafana.export import GRAFANA_DIR, generate, rendered_files

ROOT = Path(__file__).resolve().parent.parent
FIX = "regenerate with `uv run hub grafana export` and commit"


def _generated() -> dict[str, str]:
    return rendered_files(generate(ROOT / "device_profiles", ROOT / "sites"))


def test_committed_grafana_files_equal_the_generated_ones() -> None:
    generated = _generated()
    for relative, text in generated.items():
        path = GRAFANA_DIR / relative
        assert path.is_file(), f"{relative} missing: {FIX}"
        assert path.read_text(encoding="utf-8") == text, f"{relative} drifted: {FIX}"
    committed = {
        str(p.relative_to(GRAFANA_DIR))
        for p in GRAFANA_DIR.rglob("*")
        if p.is_file() and p.suffix in {".json", ".yaml", ".yml"}
    }
    assert committed == set(generated), f"stray files: {committed - set(generated)}"


def test_export_command_writes_the_same_files(tmp_path: Path) -> None:
    assert hub_main(["grafana", "export", "--out", str(tmp_path)]) == 0
    for relative, text in _generated().items():
        assert (tmp_path / relative).read_text(encoding="utf-8") == text


def test_dashboards_have_stable_unique_uids_and_panel_ids() -> None:
    boards = generate(ROOT / "device_profiles", ROOT / "sites")
    assert [b.uid for b in boards] == [
        "safety-hub-overview",
        "safety-hub-road",
        "safety-hub-patrol",
        "safety-hub-fire",
    ]
    for board in boards:
        ids = [p["id"] for p in board.model["panels"]]
        assert ids == list(range(1, len(ids) + 1))
        names = [v["name"] for v in board.model["templating"]["list"]]
        assert {"site", "community", "device"} <= set(names)
        for panel in board.model["panels"]:
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] in {"safety-hub-influxdb", "-- Mixed --"}


def test_datasource_provisioning_commits_no_secret() -> None:
    text = (GRAFANA_DIR / "provisioning/datasources/safety-hub.yaml").read_text()
    document = yaml.safe_load(text)
    influx = next(d for d in document["datasources"] if d["type"] == "influxdb")
    assert influx["uid"] == "safety-hub-influxdb"
    assert influx["url"] == "${HUB_INFLUX_URL}"
    assert influx["jsonData"]["dbName"] == "${HUB_INFLUX_DB}"
    assert influx["secureJsonData"] == {"httpHeaderValue1": "Token ${HUB_INFLUX_TOKEN}"}
    provider = yaml.safe_load((GRAFANA_DIR / "provisioning/dashboards/safety-hub.yaml").read_text())
    assert provider["providers"][0]["folderUid"] == "safety-hub"


def test_deployment_guide_lists_every_panel_and_query() -> None:
    guide = (ROOT / "docs/deployment.md").read_text()
    for board in generate(ROOT / "device_profiles", ROOT / "sites"):
        assert board.uid in guide
        for panel in board.model["panels"]:
            assert f"**{panel['title']}**" in guide, panel["title"]
            for target in panel["targets"]:
                if "query" in target:
                    assert target["query"] in guide, (panel["title"], target["refId"])


def test_patrol_marks_come_from_the_patrol_rules_file() -> None:
    from hub.grafana.dashboards import patrol
    from hub.patrol.config import load_config
    from hub.sites import SiteRegistry

    config = load_config()
    config = config.model_copy(update={"dashboard": config.dashboard.model_copy(
        update={"coverage_fair": 0.55, "late_upload_s": 900})})
    text = patrol(SiteRegistry([]), config).to_json()
    assert 'late_s\\" > 900' in text and 'late_s\\" > 300' not in text
    assert '"value": 0.55' in text and '"value": 0.8' not in text
