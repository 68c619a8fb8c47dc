"""What every dashboard shares: colours, the variable filter, the board builder, panel helpers.

A ``Board`` numbers its panels and records, for each InfluxQL target, the columns its panel
reads (``TargetCheck``), so tests can run every query against a real InfluxDB.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dm

from hub.grafana.queries import MIXED, influx_ref

TAG = "safety-hub"
DEFAULT_HUB_URL = "http://localhost:8080"
SEVERITY_COLOURS = {
    "critical": "dark-red",
    "major": "red",
    "minor": "orange",
    "warning": "yellow",
    "info": "blue",
}
STATE_COLOURS = {
    "active_unack": "red",
    "active_ack": "orange",
    "cleared_unack": "blue",
    "cleared_ack": "green",
}
# InfluxQL fragment every panel query carries: the site / community / device variables.
FILTER = '"site" =~ /^$site$/ AND "community" =~ /^$community$/ AND "device_id" =~ /^$device$/'
ACTIVE = "(\"state\" = 'active_unack' OR \"state\" = 'active_ack')"


@dataclass(frozen=True)
class TargetCheck:
    """One InfluxQL query of a panel and the columns the panel reads from its result."""

    panel: str
    ref_id: str
    query: str
    columns: tuple[str, ...]
    result_format: str


@dataclass
class BuiltDashboard:
    """A generated dashboard: its stable UID, file name, JSON model and query checks."""

    uid: str
    title: str
    model: dict[str, Any]
    checks: list[TargetCheck] = field(default_factory=list)

    @property
    def filename(self) -> str:
        """File name under ``grafana/dashboards/``."""
        return f"{self.uid}.json"

    def to_json(self) -> str:
        """Stable, reviewable JSON text (sorted keys, two-space indent, final newline)."""
        return json.dumps(self.model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"




def value_colours(colours: dict[str, str], texts: dict[str, str] | None = None) -> dm.ValueMap:
    """A value mapping: each value its colour (and display text)."""
    return dm.ValueMap(
        options={
            value: dm.ValueMappingResult(color=colour, text=(texts or {}).get(value), index=index)
            for index, (value, colour) in enumerate(colours.items())
        }
    )


def cell_colour(
    colours: dict[str, str], texts: dict[str, str] | None = None
) -> list[dm.DynamicConfigValue]:
    """Override values colouring a table cell's background by its value."""
    return [
        dm.DynamicConfigValue(id_val="mappings", value=[value_colours(colours, texts)]),
        dm.DynamicConfigValue(
            id_val="custom.cellOptions", value={"type": "color-background", "mode": "basic"}
        ),
    ]


def rename(name: str) -> list[dm.DynamicConfigValue]:
    """Override values showing a field under another name."""
    return [dm.DynamicConfigValue(id_val="displayName", value=name)]


def thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    """Absolute colour steps: (from value, colour), the first from None."""
    return (
        dash.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=value, color=colour) for value, colour in steps])
    )


def organize(
    exclude: Sequence[str] = ("time",), rename: dict[str, str] | None = None
) -> dm.DataTransformerConfig:
    """An organize transformation: hide some fields, rename others."""
    return dm.DataTransformerConfig(
        id_val="organize",
        options={
            "excludeByName": dict.fromkeys(exclude, True),
            "renameByName": rename or {},
        },
    )


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """CSV text with a header row (for static TestData queries)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def _query_variable(name: str, label: str, query: str) -> dash.QueryVariable:
    return (
        dash.QueryVariable(name)
        .label(label)
        .datasource(influx_ref())
        .query(query)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(dm.VariableOption(selected=True, text="All", value="$__all"))
        .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
    )


class Board:
    """Collects panels (with ids and query checks) into one dashboard."""

    def __init__(self, uid: str, title: str, description: str, device_from: str) -> None:
        self.uid = uid
        self.checks: list[TargetCheck] = []
        self._next_id = 1
        self.builder = (
            dash.Dashboard(title)
            .uid(uid)
            .description(description)
            .tags([TAG])
            .editable()
            .time("now-6h", "now")
            .refresh("1m")
            .timezone("browser")
            .tooltip(dm.DashboardCursorSync.CROSSHAIR)
            .link(
                dash.DashboardLink("Safety hub")
                .type(dm.DashboardLinkType.DASHBOARDS)
                .tags([TAG])
                .as_dropdown(True)
                .include_vars(True)
                .keep_time(True)
            )
            .with_variable(_query_variable("site", "Site", 'SHOW TAG VALUES WITH KEY = "site"'))
            .with_variable(
                _query_variable(
                    "community",
                    "Community",
                    'SHOW TAG VALUES WITH KEY = "community" WHERE "site" =~ /^$site$/',
                )
            )
            .with_variable(
                _query_variable(
                    "device",
                    "Device",
                    f'SHOW TAG VALUES FROM "{device_from}" WITH KEY = "device_id" '
                    'WHERE "site" =~ /^$site$/ AND "community" =~ /^$community$/',
                )
            )
        )

    def add(self, panel: Any, *targets: cogbuilder.Builder[Any], mixed: bool = False) -> None:
        """Add a panel with its targets; InfluxQL targets are recorded for the panel test."""
        built = panel.build()
        panel.id(self._next_id)
        self._next_id += 1
        panel.datasource(MIXED if mixed else influx_ref())
        for target in targets:
            panel.with_target(target)
            result = target.build()
            columns = getattr(result, "columns", None)
            if columns is not None:
                self.checks.append(
                    TargetCheck(
                        built.title, result.ref_id, result.query, columns, result.result_format
                    )
                )
        self.builder.with_panel(panel)

    def done(self) -> BuiltDashboard:
        """Serialize into a JSON model (plain dicts and lists)."""
        model = self.builder.build()
        data: dict[str, Any] = json.loads(json.dumps(model, cls=JSONEncoder))
        return BuiltDashboard(self.uid, data["title"], data, self.checks)


def fixed_colour(colour: str) -> dm.DynamicConfigValue:
    """Override value giving a field one fixed colour."""
    return dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": colour})
