"""The road safety dashboard: flashing lights' state, power, vehicles, lights off, a map."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common, geomap, table, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.common import FrameGeometrySourceMode

from hub.grafana.dashboards.panels import (
    FILTER,
    STATE_COLOURS,
    Board,
    BuiltDashboard,
    cell_colour,
    csv_text,
    rename,
    value_colours,
)
from hub.grafana.queries import CsvQuery, InfluxQuery
from hub.rules import schema as rules_schema
from hub.rules.readiness import ReadinessBook, rules_with
from hub.sites import SiteRegistry

KIND = "flashing_light"


LAMP_COLOURS = {"ok": "green", "degraded": "orange", "fail": "red"}
MODE_COLOURS = {"flash": "green", "steady": "green", "auto": "green", "off": "red"}


def road_safety(sites: SiteRegistry, kinds: dict[str, str], book: ReadinessBook) -> BuiltDashboard:
    """Flashing lights: table, battery/solar trends, vehicle counts, lights off, geomap."""
    light_rules = book.rule_sets[KIND].rules if KIND in book.rule_sets else {}
    # the rules that watch the active hours (a schedule condition), named by the rule file
    hours_rules = rules_with(light_rules, rules_schema.Schedule)
    rule_filter = " OR ".join(f"\"rule\" = '{r}'" for r in hours_rules) or "false"
    if len(hours_rules) > 1:
        rule_filter = f"({rule_filter})"
    board = Board(
        "safety-hub-road",
        "Safety hub: road safety",
        "Roadside flashing lights: state, power, vehicles, lights off and a map.",
        KIND,
    )
    board.add(
        table.Panel()
        .title("Flashing lights")
        .description("Last report of every light in the time range")
        .span(24)
        .height(10)
        .override_by_name("time", rename("last seen"))
        .override_by_name("mode", cell_colour(MODE_COLOURS))
        .override_by_name("lamp", cell_colour(LAMP_COLOURS))
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
        .description(f"Alarms of the rule {' and '.join(hours_rules)} (the site's active hours)")
        .span(12)
        .height(8)
        .override_by_name("state", cell_colour(STATE_COLOURS)),
        InfluxQuery(
            "A",
            'SELECT last("state") AS "state", "message", "severity" FROM "alarm" '
            f"WHERE $timeFilter AND {FILTER} AND {rule_filter} "
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
        .override_by_name("time", rename("since")),
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
    return csv_text(header, sorted(rows))


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
                value_colours(LAMP_COLOURS),
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
