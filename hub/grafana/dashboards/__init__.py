"""The hub's Grafana dashboards as code (grafana-foundation-sdk), over the canonical schema.

``build_dashboards(sites, profiles, rule_sets)`` returns the four dashboards (Overview, Road
safety, Patrol, Micro fire stations) with stable UIDs, one module each; ``panels`` holds what
they share. Every InfluxQL target records the columns its panel reads, so tests can run each
query against a real InfluxDB and check them.

Device positions are site data, not telemetry: the geomap joins the lights' last state from
InfluxDB with a static table of positions generated from the site files into the dashboard
(a TestData ``csv_content`` query), joined in Grafana on ``device_id``. The same is done for the
number of checkpoints per patrol route (coverage). Limits and colour steps come from the rule
files (hub/rules/readiness.py), never from here. Regenerate the JSON when site or rule files
change; the drift test fails until you do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hub.grafana.dashboards.fire import fire_stations
from hub.grafana.dashboards.overview import overview
from hub.grafana.dashboards.panels import BuiltDashboard, TargetCheck
from hub.grafana.dashboards.patrol import patrol, route_sizes_csv
from hub.grafana.dashboards.road import light_positions_csv, road_safety
from hub.profiles.schema import Profile
from hub.rules import schema as rules_schema
from hub.rules.readiness import ReadinessBook
from hub.settings import PACKAGE_ROOT
from hub.sites import SiteRegistry

DEFAULT_RULES_DIR = PACKAGE_ROOT / "device_profiles" / "rules"

__all__ = [
    "BuiltDashboard",
    "TargetCheck",
    "build_dashboards",
    "fire_stations",
    "light_positions_csv",
    "overview",
    "patrol",
    "road_safety",
    "route_sizes_csv",
]


def build_dashboards(
    sites: SiteRegistry,
    profiles: Sequence[Profile],
    rule_sets: Mapping[str, rules_schema.RuleSet] | None = None,
) -> list[BuiltDashboard]:
    """All dashboards of the hub, generated from code, the site files and the rule files."""
    kinds = {p.model: p.kind for p in profiles}
    if rule_sets is None:
        rule_sets = rules_schema.load_rule_dir(DEFAULT_RULES_DIR)
    book = ReadinessBook(rule_sets, sites)
    return [overview(), road_safety(sites, kinds, book), patrol(sites), fire_stations(book)]
