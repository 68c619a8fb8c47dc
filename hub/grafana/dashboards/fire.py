"""The micro fire stations dashboard: readiness, extinguishers, hydrant, smoke, heat, door."""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, common, statetimeline, table, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from hub.grafana.dashboards.panels import (
    FILTER,
    Board,
    BuiltDashboard,
    cell_colour,
    rename,
    thresholds,
    value_colours,
)
from hub.grafana.queries import InfluxQuery
from hub.rules.readiness import KindReadiness, ReadinessBook

KIND = "fire_station"
READINESS_COLOURS = {"not_ready": "red", "degraded": "orange", "ready": "green"}
Steps = tuple[tuple[float | None, str], ...]


def readiness_steps(readiness: KindReadiness, field_name: str) -> Steps:
    """Colour steps of a field graded by its value: red not ready, orange degraded, green."""
    bands = readiness.value_bands(field_name)
    if not bands:
        return ((None, "green"),)
    if bands[0].op in ("<", "<="):  # low is bad: worst band first, green above the last
        steps: list[tuple[float | None, str]] = [(None, READINESS_COLOURS[bands[0].state])]
        states = [b.state for b in bands[1:]] + ["ready"]
        steps += [(b.at, READINESS_COLOURS[st]) for b, st in zip(bands, states, strict=True)]
        return tuple(steps)
    ordered = sorted(bands, key=lambda b: b.at)  # high is bad: green below the first
    return ((None, "green"), *((b.at, READINESS_COLOURS[b.state]) for b in ordered))


def ready_line(readiness: KindReadiness, field_name: str) -> Steps:
    """Two steps for a trend: red where the field costs readiness, green where it does not."""
    bands = readiness.value_bands(field_name)
    if not bands:
        return ((None, "green"),)
    if bands[0].op in ("<", "<="):
        return ((None, "red"), (bands[-1].at, "green"))
    return ((None, "green"), (min(b.at for b in bands), "red"))


def alarm_line(readiness: KindReadiness, field_name: str) -> Steps:
    """Two steps for a trend: green, then red from the lowest upper alarm threshold."""
    upper = [at for op, at in readiness.alarm_lines(field_name) if op in (">", ">=")]
    return ((None, "green"), (min(upper), "red")) if upper else ((None, "green"),)


def green_zone_steps(readiness: KindReadiness, measurement: str, field_name: str) -> Steps:
    """Red below the healthy range, green in it, orange above (from an ``outside`` alarm)."""
    zone = readiness.green_zone(measurement, field_name)
    if zone is None:
        return ((None, "green"),)
    return ((None, "red"), (zone[0], "green"), (zone[1], "orange"))


def fire_stations(book: ReadinessBook) -> BuiltDashboard:
    """Micro fire stations: readiness, extinguishers, hydrant, smoke, temperature, door."""
    readiness, differ = book.across_sites(KIND)
    if readiness is None:
        raise ValueError(f"the {KIND} rule file declares no readiness")
    note = (f" Sites {', '.join(differ)} override these limits: the console grades them by "
            "their own." if differ else "")
    extinguisher_green = green_zone_steps(readiness, "extinguisher", "pressure_mpa")
    board = Board(
        "safety-hub-fire",
        "Safety hub: micro fire stations",
        "Readiness of the micro fire stations: extinguishers, hydrant pressure, power, door, "
        "smoke and temperature." + note,
        KIND,
    )
    on_off = {"true": "green", "false": "red"}
    board.add(
        table.Panel()
        .title("Station readiness")
        .description("Last report of every station in the time range")
        .span(24)
        .height(8)
        .override_by_name("time", rename("last seen"))
        .override_by_name("mains_power", cell_colour(on_off, {"true": "on", "false": "LOST"}))
        .override_by_name(
            "door_open",
            cell_colour({"true": "orange", "false": "green"}, {"true": "OPEN", "false": "closed"}),
        )
        .override_by_name(
            "hydrant_pressure_mpa",
            [
                dm.DynamicConfigValue(id_val="unit", value="suffix: MPa"),
                dm.DynamicConfigValue(
                    id_val="thresholds",
                    value=thresholds(
                        *readiness_steps(readiness, "hydrant_pressure_mpa")).build(),
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
        .override_by_name("present", cell_colour(on_off, {"true": "present", "false": "MISSING"}))
        .override_by_name(
            "pressure_mpa",
            [
                dm.DynamicConfigValue(
                    id_val="thresholds", value=thresholds(*extinguisher_green).build()
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
            ready_line(readiness, "hydrant_pressure_mpa"),
        ),
        ("Smoke obscuration", "smoke_pct_m", "suffix: %/m", alarm_line(readiness, "smoke_pct_m")),
        ("Temperature", "temperature_c", "celsius", alarm_line(readiness, "temperature_c")),
    ):
        board.add(
            timeseries.Panel()
            .title(title)
            .unit(unit)
            .span(8)
            .height(8)
            .thresholds(thresholds(*steps))
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
        .thresholds(thresholds(*extinguisher_green))
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
                value_colours(
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
