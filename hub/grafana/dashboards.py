"""The hub's Grafana dashboards as code (grafana-foundation-sdk), over the canonical schema.

``build_dashboards(sites, profiles)`` returns the four dashboards (Overview, Road safety, Patrol,
Micro fire stations) with stable UIDs. Every InfluxQL target records the columns its panel
reads, so tests can run each query against a real InfluxDB and check them.

Device positions are site data, not telemetry: the geomap joins the lights' last state from
InfluxDB with a static table of positions generated from the site files into the dashboard
(a TestData ``csv_content`` query), joined in Grafana on ``device_id``. The same is done for the
number of checkpoints per patrol route (coverage). Regenerate the JSON when site files change;
the drift test fails until you do.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from grafana_foundation_sdk.builders import (
    bargauge,
    common,
    geomap,
    stat,
    statetimeline,
    table,
    timeseries,
)
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.common import FrameGeometrySourceMode

from hub.grafana.queries import (
    MIXED,
    CsvQuery,
    InfluxAnnotationQuery,
    InfluxQuery,
    influx_ref,
)
from hub.profiles.schema import Profile
from hub.sites import SiteRegistry

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


# ----------------------------------------------------------------------------- small helpers


def _value_colours(colours: dict[str, str], texts: dict[str, str] | None = None) -> dm.ValueMap:
    return dm.ValueMap(
        options={
            value: dm.ValueMappingResult(color=colour, text=(texts or {}).get(value), index=index)
            for index, (value, colour) in enumerate(colours.items())
        }
    )


def _cell_colour(
    colours: dict[str, str], texts: dict[str, str] | None = None
) -> list[dm.DynamicConfigValue]:
    return [
        dm.DynamicConfigValue(id_val="mappings", value=[_value_colours(colours, texts)]),
        dm.DynamicConfigValue(
            id_val="custom.cellOptions", value={"type": "color-background", "mode": "basic"}
        ),
    ]


def _rename(name: str) -> list[dm.DynamicConfigValue]:
    return [dm.DynamicConfigValue(id_val="displayName", value=name)]


def _thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=value, color=colour) for value, colour in steps])
    )


def _organize(
    exclude: Sequence[str] = ("time",), rename: dict[str, str] | None = None
) -> dm.DataTransformerConfig:
    return dm.DataTransformerConfig(
        id_val="organize",
        options={
            "excludeByName": dict.fromkeys(exclude, True),
            "renameByName": rename or {},
        },
    )


def _csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
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


class _Board:
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


# ----------------------------------------------------------------------------- dashboards


def overview() -> BuiltDashboard:
    """Devices online/offline, active alarms by severity, open alarms, alarm annotations."""
    board = _Board(
        "safety-hub-overview",
        "Safety hub: overview",
        "Devices online and offline, active alarms by severity, open alarms with a link to "
        "the duty console.",
        "device_status",
    )
    board.builder.with_variable(
        dash.TextBoxVariable("hub_url")
        .label("Hub URL")
        .description("Base URL of the hub's duty console (alarm links)")
        .default_value(DEFAULT_HUB_URL)
    )
    board.builder.annotation(
        InfluxAnnotationQuery(
            "Alarms raised",
            'SELECT "message", "severity", "rule", "device_id" FROM "alarm" '
            f"WHERE $timeFilter AND {FILTER} AND \"state\" = 'active_unack'",
            "message",
            ("severity", "rule", "device_id"),
            "red",
        )
    )
    last_status = (
        'SELECT last("online") AS "online", "reason" FROM "device_status" '
        f'WHERE {FILTER} GROUP BY "device_id", "site", "kind", "model"'
    )
    board.add(
        stat.Panel()
        .title("Devices online / offline")
        .description("Last device_status of every device (all time, not the time range)")
        .span(6)
        .height(6)
        .no_value("0")
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
        .override_by_query("A", [*_rename("online"), _fixed("green")])
        .override_by_query("B", [*_rename("offline"), _fixed("red")]),
        InfluxQuery(
            "A",
            f'SELECT count("online") AS "devices" FROM ({last_status}) WHERE "online" = true',
            ("devices",),
        ),
        InfluxQuery(
            "B",
            f'SELECT count("online") AS "devices" FROM ({last_status}) WHERE "online" = false',
            ("devices",),
        ),
    )
    severity_panel = (
        stat.Panel()
        .title("Active alarms by severity")
        .description("Alarms whose latest state is active_unack or active_ack")
        .span(10)
        .height(6)
        .no_value("0")
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
    )
    last_alarm = (
        'SELECT last("state") AS "state", "severity", "alarm_id", "message", "value" '
        f'FROM "alarm" WHERE {FILTER} GROUP BY "device_id", "site", "kind", "rule"'
    )
    severity_targets = []
    for ref, (severity, colour) in zip("ABCDE", SEVERITY_COLOURS.items(), strict=True):
        severity_panel.override_by_query(ref, [*_rename(severity), _fixed(colour)])
        severity_targets.append(
            InfluxQuery(
                ref,
                f'SELECT count("alarm_id") AS "{severity}" FROM ({last_alarm}) '
                f"WHERE {ACTIVE} AND \"severity\" = '{severity}'",
                (severity,),
            )
        )
    board.add(severity_panel, *severity_targets)
    board.add(
        table.Panel()
        .title("Devices by site and kind")
        .description("Devices online and offline per site and kind (last device_status)")
        .span(8)
        .height(6)
        .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(_organize()),
        InfluxQuery(
            "A",
            f'SELECT count("online") AS "online" FROM ({last_status}) WHERE "online" = true '
            'GROUP BY "site", "kind"',
            ("online", "site", "kind"),
            table=True,
        ),
        InfluxQuery(
            "B",
            f'SELECT count("online") AS "offline" FROM ({last_status}) '
            'WHERE "online" = false GROUP BY "site", "kind"',
            ("offline", "site", "kind"),
            table=True,
        ),
    )
    alarm_link = [
        dm.DynamicConfigValue(
            id_val="links",
            value=[
                dm.DashboardLink(
                    title="Open in the duty console",
                    type_val=dm.DashboardLinkType.LINK,
                    url="${hub_url}/alarms/${__value.raw}",
                    target_blank=True,
                    icon="external link",
                    tooltip="",
                    tags=[],
                    as_dropdown=False,
                    include_vars=False,
                    keep_time=False,
                )
            ],
        )
    ]
    board.add(
        table.Panel()
        .title("Open alarms (newest first)")
        .description("Latest state of every alarm that is not cleared and acknowledged")
        .span(24)
        .height(10)
        .sort_by([common.TableSortByFieldState().display_name("changed").desc(True)])
        .override_by_name("severity", _cell_colour(SEVERITY_COLOURS))
        .override_by_name("state", _cell_colour(STATE_COLOURS))
        .override_by_name("alarm_id", alarm_link)
        .override_by_name("time", _rename("changed")),
        InfluxQuery(
            "A",
            'SELECT "state", "severity", "alarm_id", "message", "value" '
            f"FROM ({last_alarm}) WHERE \"state\" <> 'cleared_ack' "
            'GROUP BY "device_id", "site", "kind", "rule" ORDER BY time DESC',
            ("state", "severity", "alarm_id", "message", "device_id", "site", "kind", "rule"),
            table=True,
        ),
    )
    board.add(
        table.Panel()
        .title("Alarm history")
        .description("Every alarm transition in the time range, newest first")
        .span(24)
        .height(10)
        .sort_by([common.TableSortByFieldState().display_name("time").desc(True)])
        .override_by_name("severity", _cell_colour(SEVERITY_COLOURS))
        .override_by_name("state", _cell_colour(STATE_COLOURS))
        .override_by_name("alarm_id", alarm_link),
        InfluxQuery(
            "A",
            'SELECT "alarm_id", "state", "severity", "message", "value", "device_id", "site", '
            f'"kind", "rule" FROM "alarm" WHERE $timeFilter AND {FILTER} '
            "ORDER BY time DESC LIMIT 1000",
            ("alarm_id", "state", "severity", "message", "device_id", "site", "kind", "rule"),
            table=True,
        ),
    )
    board.add(
        table.Panel()
        .title("Offline devices")
        .description("Devices whose last device_status is offline, and why")
        .span(24)
        .height(8)
        .override_by_name("time", _rename("offline since")),
        InfluxQuery(
            "A",
            f'SELECT "reason" FROM ({last_status}) WHERE "online" = false '
            'GROUP BY "device_id", "site", "kind", "model"',
            ("reason", "device_id", "site", "kind"),
            table=True,
        ),
    )
    return board.done()


def _fixed(colour: str) -> dm.DynamicConfigValue:
    return dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": colour})


LAMP_COLOURS = {"ok": "green", "degraded": "orange", "fail": "red"}
MODE_COLOURS = {"flash": "green", "steady": "green", "auto": "green", "off": "red"}


def road_safety(sites: SiteRegistry, kinds: dict[str, str]) -> BuiltDashboard:
    """Flashing lights: table, battery/solar trends, vehicle counts, lights off, geomap."""
    board = _Board(
        "safety-hub-road",
        "Safety hub: road safety",
        "Roadside flashing lights: state, power, vehicles, lights off and a map.",
        "flashing_light",
    )
    board.add(
        table.Panel()
        .title("Flashing lights")
        .description("Last report of every light in the time range")
        .span(24)
        .height(10)
        .override_by_name("time", _rename("last seen"))
        .override_by_name("mode", _cell_colour(MODE_COLOURS))
        .override_by_name("lamp", _cell_colour(LAMP_COLOURS))
        .override_by_name(
            "battery_v",
            [dm.DynamicConfigValue(id_val="unit", value="volt")],
        )
        .override_by_name(
            "tilt_deg",
            [dm.DynamicConfigValue(id_val="unit", value="degree")],
        ),
        InfluxQuery(
            "A",
            'SELECT last("mode") AS "mode", "lamp", "battery_v", "solar_v", "tilt_deg" '
            f'FROM "flashing_light" WHERE $timeFilter AND {FILTER} '
            'GROUP BY "device_id", "site", "community", "model"',
            ("mode", "lamp", "battery_v", "tilt_deg", "device_id", "site"),
            table=True,
        ),
    )
    for title, column in (("Battery voltage", "battery_v"), ("Solar voltage", "solar_v")):
        board.add(
            timeseries.Panel().title(title).unit("volt").span(12).height(8),
            InfluxQuery(
                "A",
                f'SELECT mean("{column}") AS "{column}" FROM "flashing_light" '
                f"WHERE $timeFilter AND {FILTER} "
                'GROUP BY time($__interval), "device_id" fill(none)',
                (column, "device_id"),
                alias="$tag_device_id",
            ),
        )
    board.add(
        timeseries.Panel()
        .title("Vehicles passing")
        .description("Vehicles counted by the lights' radar, per site")
        .draw_style(cm.GraphDrawStyle.BARS)
        .span(12)
        .height(8),
        InfluxQuery(
            "A",
            'SELECT sum("vehicle_count") AS "vehicles" FROM "flashing_light" '
            f'WHERE $timeFilter AND {FILTER} GROUP BY time($__interval), "site" fill(0)',
            ("vehicles", "site"),
            alias="$tag_site",
        ),
    )
    board.add(
        table.Panel()
        .title("Lights off inside active hours")
        .description("Alarms of the rule mode_off_active_hours (the site's active hours)")
        .span(12)
        .height(8)
        .override_by_name("state", _cell_colour(STATE_COLOURS)),
        InfluxQuery(
            "A",
            'SELECT last("state") AS "state", "message", "severity" FROM "alarm" '
            f"WHERE $timeFilter AND {FILTER} AND \"rule\" = 'mode_off_active_hours' "
            'GROUP BY "device_id", "site"',
            ("state", "message", "device_id", "site"),
            table=True,
        ),
    )
    board.add(
        table.Panel()
        .title("Lights reporting mode off")
        .description("Lights whose last report says mode off (normal outside active hours)")
        .span(12)
        .height(8)
        .override_by_name("time", _rename("since")),
        InfluxQuery(
            "A",
            'SELECT "mode", "lamp", "battery_v" FROM (SELECT last("mode") AS "mode", "lamp", '
            f'"battery_v" FROM "flashing_light" WHERE $timeFilter AND {FILTER} '
            'GROUP BY "device_id", "site", "community") WHERE "mode" = \'off\' '
            'GROUP BY "device_id", "site", "community"',
            ("mode", "device_id", "site"),
            table=True,
        ),
    )
    board.add(
        _light_map(sites, kinds),
        InfluxQuery(
            "A",
            'SELECT last("lamp") AS "lamp", "mode", "battery_v", "tilt_deg" '
            f'FROM "flashing_light" WHERE $timeFilter AND {FILTER} GROUP BY "device_id"',
            ("lamp", "mode", "device_id"),
            table=True,
        ),
        CsvQuery("B", light_positions_csv(sites, kinds)),
        mixed=True,
    )
    return board.done()


def light_positions_csv(sites: SiteRegistry, kinds: dict[str, str]) -> str:
    """CSV of every registered flashing light with a position (the geomap's static layer)."""
    rows = [
        (d.id, d.name or "", s.site, d.community or "", d.model, d.lat, d.lon)
        for s in sites.sites.values()
        for d in s.devices
        if kinds.get(d.model) == "flashing_light" and d.lat is not None and d.lon is not None
    ]
    header = ("device_id", "name", "site", "community", "model", "latitude", "longitude")
    return _csv(header, sorted(rows))


def _light_map(sites: SiteRegistry, kinds: dict[str, str]) -> geomap.Panel:
    return (
        geomap.Panel()
        .title("Light map")
        .description(
            "Positions from the site files (static query B) joined on device_id with each "
            "light's last report (A); colour = lamp state, grey = no report in the range"
        )
        .span(24)
        .height(14)
        .with_transformation(
            dm.DataTransformerConfig(
                id_val="joinByField", options={"byField": "device_id", "mode": "outer"}
            )
        )
        .mappings(
            [
                _value_colours(LAMP_COLOURS),
                dm.SpecialValueMap(
                    options=dm.DashboardSpecialValueMapOptions(
                        match=dm.SpecialValueMatch.NULL,
                        result=dm.ValueMappingResult(color="text", text="no report"),
                    )
                ),
            ]
        )
        .view(geomap.MapViewConfig().id("fit").zoom(12))
        .basemap(common.MapLayerOptions().type("default").name("Basemap"))
        .layers(
            [
                common.MapLayerOptions()
                .type("markers")
                .name("Lights")
                .location(
                    common.FrameGeometrySource()
                    .mode(FrameGeometrySourceMode.COORDS)
                    .latitude("latitude")
                    .longitude("longitude")
                )
                .config(
                    {
                        "showLegend": True,
                        "style": {
                            "color": {"field": "lamp", "fixed": "dark-green"},
                            "opacity": 0.8,
                            "size": {"fixed": 6},
                            "symbol": {"fixed": "img/icons/marker/circle.svg", "mode": "fixed"},
                            "text": {"field": "device_id", "mode": "field"},
                        },
                    }
                )
            ]
        )
    )


def patrol(sites: SiteRegistry) -> BuiltDashboard:
    """Cloud patrol: scans per route, coverage today, missed, unknown tags, late uploads."""
    board = _Board(
        "safety-hub-patrol",
        "Safety hub: patrol",
        "Cloud patrol: scans per route, checkpoints covered today, missed checkpoints, "
        "unknown tags and late uploads.",
        "patrol_scan",
    )
    board.add(
        timeseries.Panel()
        .title("Scans per route")
        .draw_style(cm.GraphDrawStyle.BARS)
        .span(24)
        .height(8),
        InfluxQuery(
            "A",
            'SELECT count("tag_uid") AS "scans" FROM "patrol_scan" '
            f'WHERE $timeFilter AND {FILTER} GROUP BY time($__interval), "route_id" fill(0)',
            ("scans", "route_id"),
            alias="$tag_route_id",
        ),
    )
    per_checkpoint = (
        'SELECT count("tag_uid") AS "scans" FROM "patrol_scan" '
        f"WHERE $timeFilter AND {FILTER} AND \"checkpoint_id\" <> 'unknown' "
        'GROUP BY "route_id", "checkpoint_id"'
    )
    board.add(
        bargauge.Panel()
        .title("Route coverage today")
        .description(
            "Distinct checkpoints scanned today / checkpoints on the route (B: route sizes "
            "from the site files)"
        )
        .time_from("now/d")
        .unit("percentunit")
        .min(0)
        .max(1)
        .span(12)
        .height(8)
        .thresholds(_thresholds((None, "red"), (0.8, "orange"), (1.0, "green")))
        .reduce_options(common.ReduceDataOptions().values(True).calcs([]))
        .with_transformation(
            dm.DataTransformerConfig(
                id_val="joinByField", options={"byField": "route_id", "mode": "outer"}
            )
        )
        .with_transformation(
            dm.DataTransformerConfig(
                id_val="calculateField",
                options={
                    "alias": "coverage",
                    "mode": "binary",
                    "binary": {
                        "left": "checkpoints",
                        "operator": "/",
                        "right": "checkpoints_total",
                    },
                    "replaceFields": False,
                },
            )
        )
        .with_transformation(_organize(("time", "checkpoints", "checkpoints_total", "route_name"))),
        InfluxQuery(
            "A",
            f'SELECT count("scans") AS "checkpoints" FROM ({per_checkpoint}) GROUP BY "route_id"',
            ("checkpoints", "route_id"),
            table=True,
        ),
        CsvQuery("B", route_sizes_csv(sites)),
        mixed=True,
    )
    board.add(
        table.Panel()
        .title("Checkpoints scanned today")
        .time_from("now/d")
        .span(12)
        .height(8)
        .override_by_name("time", _rename("last scan")),
        InfluxQuery(
            "A",
            'SELECT last("tag_uid") AS "tag_uid", "late_s" FROM "patrol_scan" '
            f"WHERE $timeFilter AND {FILTER} AND \"checkpoint_id\" <> 'unknown' "
            'GROUP BY "route_id", "checkpoint_id", "patroller_id"',
            ("tag_uid", "route_id", "checkpoint_id", "patroller_id"),
            table=True,
        ),
    )
    board.add(
        table.Panel()
        .title("Missed checkpoints and rounds")
        .description("Alarms of the rules checkpoint_missed and round_not_started")
        .span(24)
        .height(8)
        .override_by_name("severity", _cell_colour(SEVERITY_COLOURS))
        .override_by_name("state", _cell_colour(STATE_COLOURS)),
        InfluxQuery(
            "A",
            'SELECT "state", "severity", "message", "device_id", "rule" FROM "alarm" '
            f"WHERE $timeFilter AND {FILTER} AND "
            "(\"rule\" = 'checkpoint_missed' OR \"rule\" = 'round_not_started') "
            "ORDER BY time DESC",
            ("state", "severity", "message", "device_id", "rule"),
            table=True,
        ),
    )
    board.add(
        table.Panel()
        .title("Unknown-tag scans")
        .description("Scans of tags that no site file lists (checkpoint_id = unknown)")
        .span(12)
        .height(8),
        InfluxQuery(
            "A",
            'SELECT "tag_uid", "patroller_id", "device_id", "route_id", "lat", "lon" '
            f'FROM "patrol_scan" WHERE $timeFilter AND {FILTER} '
            "AND \"checkpoint_id\" = 'unknown' ORDER BY time DESC",
            ("tag_uid", "patroller_id", "device_id"),
            table=True,
        ),
    )
    board.add(
        table.Panel()
        .title("Late uploads")
        .description("Scans uploaded more than 5 minutes after they were made (late_s)")
        .span(12)
        .height(8)
        .override_by_name("late_s", [dm.DynamicConfigValue(id_val="unit", value="s")])
        .override_by_name("time", _rename("scanned")),
        InfluxQuery(
            "A",
            'SELECT "late_s", "checkpoint_id", "route_id", "patroller_id", "device_id" '
            f'FROM "patrol_scan" WHERE $timeFilter AND {FILTER} AND "late_s" > 300 '
            "ORDER BY time DESC",
            ("late_s", "checkpoint_id", "patroller_id", "device_id"),
            table=True,
        ),
    )
    board.add(
        timeseries.Panel().title("Upload delay").unit("s").span(24).height(8),
        InfluxQuery(
            "A",
            'SELECT max("late_s") AS "late_s" FROM "patrol_scan" '
            f'WHERE $timeFilter AND {FILTER} GROUP BY time($__interval), "device_id" fill(none)',
            ("late_s", "device_id"),
            alias="$tag_device_id",
        ),
    )
    return board.done()


def route_sizes_csv(sites: SiteRegistry) -> str:
    """CSV of every patrol route and its number of checkpoints (for coverage)."""
    rows = [
        (r.id, r.name, s.site, len(set(r.checkpoints)))
        for s in sites.sites.values()
        for r in s.routes
    ]
    return _csv(("route_id", "route_name", "site", "checkpoints_total"), sorted(rows))


EXTINGUISHER_GREEN = ((None, "red"), (1.0, "green"), (1.4, "orange"))


def fire_stations() -> BuiltDashboard:
    """Micro fire stations: readiness, extinguishers, hydrant, smoke, temperature, door."""
    board = _Board(
        "safety-hub-fire",
        "Safety hub: micro fire stations",
        "Readiness of the micro fire stations: extinguishers, hydrant pressure, power, door, "
        "smoke and temperature.",
        "fire_station",
    )
    on_off = {"true": "green", "false": "red"}
    board.add(
        table.Panel()
        .title("Station readiness")
        .description("Last report of every station in the time range")
        .span(24)
        .height(8)
        .override_by_name("time", _rename("last seen"))
        .override_by_name("mains_power", _cell_colour(on_off, {"true": "on", "false": "LOST"}))
        .override_by_name(
            "door_open",
            _cell_colour({"true": "orange", "false": "green"}, {"true": "OPEN", "false": "closed"}),
        )
        .override_by_name(
            "hydrant_pressure_mpa",
            [
                dm.DynamicConfigValue(id_val="unit", value="suffix: MPa"),
                dm.DynamicConfigValue(
                    id_val="thresholds",
                    value=_thresholds((None, "red"), (0.1, "orange"), (0.15, "green")).build(),
                ),
                dm.DynamicConfigValue(
                    id_val="custom.cellOptions", value={"type": "color-background"}
                ),
            ],
        ),
        InfluxQuery(
            "A",
            'SELECT last("hydrant_pressure_mpa") AS "hydrant_pressure_mpa", "mains_power", '
            '"door_open", "battery_pct", "smoke_pct_m", "temperature_c" FROM "fire_station" '
            f'WHERE $timeFilter AND {FILTER} GROUP BY "device_id", "site", "community"',
            ("hydrant_pressure_mpa", "mains_power", "door_open", "device_id", "site"),
            table=True,
        ),
    )
    board.add(
        table.Panel()
        .title("Extinguishers")
        .description("Last report per station and slot; healthy pressure 1.0-1.4 MPa")
        .span(12)
        .height(10)
        .override_by_name("present", _cell_colour(on_off, {"true": "present", "false": "MISSING"}))
        .override_by_name(
            "pressure_mpa",
            [
                dm.DynamicConfigValue(
                    id_val="thresholds", value=_thresholds(*EXTINGUISHER_GREEN).build()
                ),
                dm.DynamicConfigValue(
                    id_val="custom.cellOptions", value={"type": "color-background"}
                ),
            ],
        ),
        InfluxQuery(
            "A",
            'SELECT last("present") AS "present", "pressure_mpa" FROM "extinguisher" '
            f'WHERE $timeFilter AND {FILTER} GROUP BY "device_id", "slot"',
            ("present", "pressure_mpa", "device_id", "slot"),
            table=True,
        ),
    )
    board.add(
        bargauge.Panel()
        .title("Extinguishers present per station")
        .span(12)
        .height(10)
        .min(0)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"])),
        InfluxQuery(
            "A",
            'SELECT count("present") AS "present" FROM (SELECT last("present") AS "present" '
            f'FROM "extinguisher" WHERE $timeFilter AND {FILTER} GROUP BY "device_id", "slot") '
            'WHERE "present" = true GROUP BY "device_id"',
            ("present", "device_id"),
            alias="$tag_device_id",
        ),
    )
    for title, column, unit, steps in (
        (
            "Hydrant pressure",
            "hydrant_pressure_mpa",
            "suffix: MPa",
            ((None, "red"), (0.15, "green")),
        ),
        ("Smoke obscuration", "smoke_pct_m", "suffix: %/m", ((None, "green"), (1.5, "red"))),
        ("Temperature", "temperature_c", "celsius", ((None, "green"), (57.0, "red"))),
    ):
        board.add(
            timeseries.Panel()
            .title(title)
            .unit(unit)
            .span(8)
            .height(8)
            .thresholds(_thresholds(*steps))
            .thresholds_style(
                common.GraphThresholdsStyleConfig().mode(cm.GraphTresholdsStyleMode.LINE)
            ),
            InfluxQuery(
                "A",
                f'SELECT mean("{column}") AS "{column}" FROM "fire_station" '
                f"WHERE $timeFilter AND {FILTER} "
                'GROUP BY time($__interval), "device_id" fill(none)',
                (column, "device_id"),
                alias="$tag_device_id",
            ),
        )
    board.add(
        timeseries.Panel()
        .title("Extinguisher pressure")
        .unit("suffix: MPa")
        .span(12)
        .height(8)
        .thresholds(_thresholds(*EXTINGUISHER_GREEN))
        .thresholds_style(
            common.GraphThresholdsStyleConfig().mode(cm.GraphTresholdsStyleMode.LINE)
        ),
        InfluxQuery(
            "A",
            'SELECT mean("pressure_mpa") AS "pressure_mpa" FROM "extinguisher" '
            f"WHERE $timeFilter AND {FILTER} "
            'GROUP BY time($__interval), "device_id", "slot" fill(none)',
            ("pressure_mpa", "device_id", "slot"),
            alias="$tag_device_id slot $tag_slot",
        ),
    )
    board.add(
        statetimeline.Panel()
        .title("Door and mains power")
        .span(12)
        .height(8)
        .mappings(
            [
                _value_colours(
                    {"true": "blue", "false": "transparent"}, {"true": "yes", "false": "no"}
                )
            ]
        ),
        InfluxQuery(
            "A",
            'SELECT last("door_open") AS "door_open" FROM "fire_station" '
            f"WHERE $timeFilter AND {FILTER} "
            'GROUP BY time($__interval), "device_id" fill(previous)',
            ("door_open", "device_id"),
            alias="$tag_device_id door open",
        ),
        InfluxQuery(
            "B",
            'SELECT last("mains_power") AS "mains_power" FROM "fire_station" '
            f"WHERE $timeFilter AND {FILTER} "
            'GROUP BY time($__interval), "device_id" fill(previous)',
            ("mains_power", "device_id"),
            alias="$tag_device_id mains on",
        ),
    )
    return board.done()


def build_dashboards(sites: SiteRegistry, profiles: Sequence[Profile]) -> list[BuiltDashboard]:
    """All dashboards of the hub, generated from code and the site files."""
    kinds = {p.model: p.kind for p in profiles}
    return [overview(), road_safety(sites, kinds), patrol(sites), fire_stations()]
