"""Write the generated Grafana files: dashboards JSON and provisioning YAML under ``grafana/``."""

from __future__ import annotations

from pathlib import Path

from hub.grafana.dashboards import BuiltDashboard, build_dashboards
from hub.grafana.datasource import dashboard_provider_yaml, provisioning_yaml
from hub.profiles.loader import load_profiles
from hub.rules.schema import load_rule_dir
from hub.settings import PACKAGE_ROOT
from hub.sites import load_sites

GRAFANA_DIR = PACKAGE_ROOT / "grafana"
DASHBOARD_DIR = GRAFANA_DIR / "dashboards"


def generate(profiles_dir: Path, sites_dir: Path,
             rules_dir: Path | None = None) -> list[BuiltDashboard]:
    """Build every dashboard from code, the device profiles, their rules and the site files."""
    rule_sets = load_rule_dir(rules_dir or profiles_dir / "rules")
    return build_dashboards(load_sites(sites_dir), load_profiles(profiles_dir), rule_sets)


def rendered_files(dashboards: list[BuiltDashboard]) -> dict[str, str]:
    """Every generated file, relative to ``grafana/``, with its text."""
    files = {f"dashboards/{board.filename}": board.to_json() for board in dashboards}
    files["provisioning/datasources/safety-hub.yaml"] = provisioning_yaml()
    files["provisioning/dashboards/safety-hub.yaml"] = dashboard_provider_yaml()
    return files


def export(dashboards: list[BuiltDashboard], root: Path = GRAFANA_DIR) -> list[Path]:
    """Write the generated files under ``root``; return the paths written."""
    written = []
    for relative, text in rendered_files(dashboards).items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
