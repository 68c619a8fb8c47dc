"""Grafana query targets the foundation SDK has no builder for: InfluxQL and TestData CSV.

Every InfluxQL target also carries the columns its panel reads (``columns``, never written to
the JSON): the panel test runs each query against a real InfluxDB and checks those columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard

INFLUX_UID = "safety-hub-influxdb"
INFLUX_TYPE = "influxdb"
STATIC_UID = "safety-hub-static"
STATIC_TYPE = "grafana-testdata-datasource"
MIXED = dashboard.DataSourceRef(type_val="datasource", uid="-- Mixed --")


def influx_ref() -> dashboard.DataSourceRef:
    """The provisioned InfluxDB datasource, referenced by its stable uid."""
    return dashboard.DataSourceRef(type_val=INFLUX_TYPE, uid=INFLUX_UID)


def static_ref() -> dashboard.DataSourceRef:
    """The provisioned TestData datasource that serves CSV embedded in a dashboard."""
    return dashboard.DataSourceRef(type_val=STATIC_TYPE, uid=STATIC_UID)


@dataclass
class InfluxTarget(cogvariants.Dataquery):
    """A raw InfluxQL target (Grafana's InfluxDB datasource in InfluxQL mode)."""

    ref_id: str
    query: str
    result_format: str = "time_series"
    alias: str | None = None
    columns: tuple[str, ...] = field(default=(), compare=False)

    def to_json(self) -> dict[str, object]:
        """The target as Grafana stores it in the dashboard JSON."""
        payload: dict[str, object] = {
            "datasource": influx_ref(),
            "query": self.query,
            "rawQuery": True,
            "refId": self.ref_id,
            "resultFormat": self.result_format,
        }
        if self.alias is not None:
            payload["alias"] = self.alias
        return payload


class InfluxQuery(cogbuilder.Builder[cogvariants.Dataquery]):
    """Builds an InfluxTarget; ``columns`` are what the panel reads from its result."""

    def __init__(
        self,
        ref_id: str,
        query: str,
        columns: tuple[str, ...],
        *,
        table: bool = False,
        alias: str | None = None,
    ) -> None:
        self._internal = InfluxTarget(
            ref_id, " ".join(query.split()), "table" if table else "time_series", alias, columns
        )

    def build(self) -> InfluxTarget:
        """The target."""
        return self._internal


@dataclass
class CsvTarget(cogvariants.Dataquery):
    """A TestData ``csv_content`` target: a static table carried inside the dashboard."""

    ref_id: str
    csv: str

    def to_json(self) -> dict[str, object]:
        """The target as Grafana stores it in the dashboard JSON."""
        return {
            "csvContent": self.csv,
            "datasource": static_ref(),
            "refId": self.ref_id,
            "scenarioId": "csv_content",
        }


class CsvQuery(cogbuilder.Builder[cogvariants.Dataquery]):
    """Builds a CsvTarget."""

    def __init__(self, ref_id: str, csv: str) -> None:
        self._internal = CsvTarget(ref_id, csv)

    def build(self) -> CsvTarget:
        """The target."""
        return self._internal


class InfluxAnnotation(dashboard.AnnotationQuery):
    """An InfluxQL annotation query: time from the rows, text and tags from named columns."""

    def __init__(
        self, name: str, query: str, text_column: str, tags: tuple[str, ...], color: str
    ) -> None:
        super().__init__(name=name, datasource=influx_ref(), enable=True, icon_color=color)
        self.query = " ".join(query.split())
        self.text_column = text_column
        self.tags_column = ",".join(tags)
        self.columns = (text_column, *tags)

    def to_json(self) -> dict[str, object]:
        """Grafana's InfluxDB annotation shape (legacy top-level keys plus ``target``)."""
        payload = super().to_json()
        payload.update(
            {
                "query": self.query,
                "textColumn": self.text_column,
                "tagsColumn": self.tags_column,
                "target": {
                    "fromAnnotations": True,
                    "query": self.query,
                    "rawQuery": True,
                    "refId": "Anno",
                    "resultFormat": "table",
                    "tagsColumn": self.tags_column,
                    "textColumn": self.text_column,
                },
            }
        )
        return payload


class InfluxAnnotationQuery(cogbuilder.Builder[dashboard.AnnotationQuery]):
    """Builds an InfluxAnnotation."""

    def __init__(
        self, name: str, query: str, text_column: str, tags: tuple[str, ...], color: str
    ) -> None:
        self._internal = InfluxAnnotation(name, query, text_column, tags, color)

    def build(self) -> InfluxAnnotation:
        """The annotation query."""
        return self._internal
