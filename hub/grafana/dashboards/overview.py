"""The overview dashboard: devices online and offline, active and open alarms, history."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common, stat, table
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import dashboard as dm

from hub.grafana.dashboards.panels import (
    ACTIVE,
    DEFAULT_HUB_URL,
    FILTER,
    SEVERITY_COLOURS,
    STATE_COLOURS,
    Board,
    BuiltDashboard,
    cell_colour,
    fixed_colour,
    organize,
    rename,
)
from hub.grafana.queries import InfluxAnnotationQuery, InfluxQuery


def overview() -> BuiltDashboard:
    """Devices online/offline, active alarms by severity, open alarms, alarm annotations."""
    board = Board(
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
        .override_by_query("A", [*rename("online"), fixed_colour("green")])
        .override_by_query("B", [*rename("offline"), fixed_colour("red")]),
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
        severity_panel.override_by_query(ref, [*rename(severity), fixed_colour(colour)])
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
        .with_transformation(organize()),
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
        .override_by_name("severity", cell_colour(SEVERITY_COLOURS))
        .override_by_name("state", cell_colour(STATE_COLOURS))
        .override_by_name("alarm_id", alarm_link)
        .override_by_name("time", rename("changed")),
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
        .override_by_name("severity", cell_colour(SEVERITY_COLOURS))
        .override_by_name("state", cell_colour(STATE_COLOURS))
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
        .override_by_name("time", rename("offline since")),
        InfluxQuery(
            "A",
            f'SELECT "reason" FROM ({last_status}) WHERE "online" = false '
            'GROUP BY "device_id", "site", "kind", "model"',
            ("reason", "device_id", "site", "kind"),
            table=True,
        ),
    )
    return board.done()
