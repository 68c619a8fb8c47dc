"""Push the datasources and dashboards into a running Grafana through its HTTP API.

Idempotent and careful: a folder of our own (stable UID), datasources and dashboards by
stable UID, created when missing, updated when different, left alone when equal. A dashboard
with one of our UIDs that lives in another folder is not ours: the push stops instead.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError

from hub.grafana.dashboards import BuiltDashboard

FOLDER_UID = "safety-hub"
FOLDER_TITLE = "Safety hub"
# keys Grafana sets itself on a stored dashboard; ignored when comparing
_VOLATILE = ("id", "version")


class PushError(RuntimeError):
    """The push was refused or Grafana answered with an error."""


@dataclass
class PushReport:
    """What the push did, one line per object (``created``, ``updated``, ``unchanged``)."""

    actions: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, what: str, uid: str, action: str) -> None:
        """Record one action."""
        self.actions.append((what, uid, action))

    def lines(self) -> list[str]:
        """Human-readable lines."""
        return [f"{action:<9} {what:<10} {uid}" for what, uid, action in self.actions]


def _missing(exc: GrafanaClientError) -> bool:
    return bool(exc.status_code == 404)


def with_hub_url(model: dict[str, Any], hub_url: str) -> dict[str, Any]:
    """Return a copy of a dashboard whose ``hub_url`` variable defaults to ``hub_url``."""
    model = copy.deepcopy(model)
    for variable in model.get("templating", {}).get("list", []):
        if variable.get("name") == "hub_url":
            variable["query"] = hub_url
            variable["current"] = {"selected": False, "text": hub_url, "value": hub_url}
            variable["options"] = [{"selected": True, "text": hub_url, "value": hub_url}]
    return model


def _same(stored: dict[str, Any], wanted: dict[str, Any]) -> bool:
    def clean(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if k not in _VOLATILE}

    return clean(stored) == clean(wanted)


class GrafanaPusher:
    """Creates or updates the hub's folder, datasources and dashboards in one Grafana."""

    def __init__(
        self, api: GrafanaApi, folder_uid: str = FOLDER_UID, folder_title: str = FOLDER_TITLE
    ) -> None:
        self.api: Any = api  # grafana-client is untyped
        self.folder_uid = folder_uid
        self.folder_title = folder_title

    @classmethod
    def connect(cls, url: str, token: str, **kwargs: Any) -> GrafanaPusher:
        """A pusher for the Grafana at ``url`` with a service-account token."""
        return cls(GrafanaApi.from_url(url, credential=token), **kwargs)

    def push(
        self,
        datasources: list[dict[str, Any]],
        dashboards: list[BuiltDashboard],
        hub_url: str | None = None,
    ) -> PushReport:
        """Make Grafana hold exactly these datasources and dashboards (ours only)."""
        report = PushReport()
        try:
            self._folder(report)
            for source in datasources:
                self._datasource(source, report)
            for board in dashboards:
                model = with_hub_url(board.model, hub_url) if hub_url else board.model
                self._dashboard(model, report)
        except GrafanaClientError as exc:
            raise PushError(f"Grafana refused: {exc}") from exc
        return report

    def _folder(self, report: PushReport) -> None:
        try:
            self.api.folder.get_folder(self.folder_uid)
        except GrafanaClientError as exc:
            if not _missing(exc):
                raise
            self.api.folder.create_folder(self.folder_title, uid=self.folder_uid)
            report.add("folder", self.folder_uid, "created")
            return
        report.add("folder", self.folder_uid, "unchanged")

    def _datasource(self, source: dict[str, Any], report: PushReport) -> None:
        uid = source["uid"]
        try:
            self.api.datasource.get_datasource_by_uid(uid)
        except GrafanaClientError as exc:
            if not _missing(exc):
                raise
            self.api.datasource.create_datasource(source)
            report.add("datasource", uid, "created")
            return
        # always PUT: Grafana never returns secureJsonData, so equality cannot be checked
        self.api.datasource.update_datasource_by_uid(uid, source)
        report.add("datasource", uid, "updated")

    def _dashboard(self, model: dict[str, Any], report: PushReport) -> None:
        uid = model["uid"]
        try:
            stored = self.api.dashboard.get_dashboard(uid)
        except GrafanaClientError as exc:
            if not _missing(exc):
                raise
            stored = None
        if stored is not None:
            folder = stored.get("meta", {}).get("folderUid") or ""
            if folder != self.folder_uid:
                raise PushError(
                    f"dashboard {uid!r} exists in folder {folder or 'General'!r}, not in "
                    f"{self.folder_uid!r}: not ours, left alone (delete or move it first)"
                )
            if _same(stored.get("dashboard", {}), model):
                report.add("dashboard", uid, "unchanged")
                return
        body = {
            "dashboard": {**model, "id": None},
            "folderUid": self.folder_uid,
            "overwrite": True,
            "message": "hub grafana push",
        }
        self.api.dashboard.update_dashboard(body)
        report.add("dashboard", uid, "updated" if stored is not None else "created")
