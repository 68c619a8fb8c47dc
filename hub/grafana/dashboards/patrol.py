"""The patrol dashboard: scans per route, coverage today, missed rounds, unknown tags, delays."""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, common, table, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from hub.grafana.dashboards.panels import (
    FILTER,
    SEVERITY_COLOURS,
    STATE_COLOURS,
    Board,
    BuiltDashboard,
    cell_colour,
    csv_text,
    organize,
    rename,
    thresholds,
)
from hub.grafana.queries import CsvQuery, InfluxQuery
from hub.patrol.config import MISSED_RULES, PatrolConfig, load_config
from hub.sites import SiteRegistry


def patrol(sites: SiteRegistry, config: PatrolConfig | None = None) -> BuiltDashboard:
    """Cloud patrol: scans per route, coverage today, missed, unknown tags, late uploads."""
    marks = (config or load_config()).dashboard
    missed = " OR ".join(f"\"rule\" = '{r}'" for r in MISSED_RULES)
    board = Board(
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
        .thresholds(thresholds((None, "red"), (marks.coverage_fair, "orange"),
                               (marks.coverage_good, "green")))
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
        .with_transformation(organize(("time", "checkpoints", "checkpoints_total", "route_name"))),
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
        .override_by_name("time", rename("last scan")),
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
        .description(f"Alarms of the rules {' and '.join(MISSED_RULES)}")
        .span(24)
        .height(8)
        .override_by_name("severity", cell_colour(SEVERITY_COLOURS))
        .override_by_name("state", cell_colour(STATE_COLOURS)),
        InfluxQuery(
            "A",
            'SELECT "state", "severity", "message", "device_id", "rule" FROM "alarm" '
            f"WHERE $timeFilter AND {FILTER} AND "
            f"({missed}) "
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
        .description(f"Scans uploaded more than {marks.late_upload_s} s after they were made "
                     "(late_s)")
        .span(12)
        .height(8)
        .override_by_name("late_s", [dm.DynamicConfigValue(id_val="unit", value="s")])
        .override_by_name("time", rename("scanned")),
        InfluxQuery(
            "A",
            'SELECT "late_s", "checkpoint_id", "route_id", "patroller_id", "device_id" '
            f'FROM "patrol_scan" WHERE $timeFilter AND {FILTER} '
            f'AND "late_s" > {marks.late_upload_s} '
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
    return csv_text(("route_id", "route_name", "site", "checkpoints_total"), sorted(rows))
