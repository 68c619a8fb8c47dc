"""The monthly report sent to a channel: once a month, on the register's day and local time.

A site's departments file may name ``monthly_report: {channel, day, at}``. On each advance of
the site's patrol clock (the wall tick, or device time with HUB_CLOCK=device) the sender
checks whether this month's moment has passed; the first time it has, it hands the
previous month's totals (the report's own ``hazard_counts``) and the report's download path to
a ``ReportHook`` (the notification service queues it in its outbox under the key
``report:<site>:<YYYY-MM>``, so a month is never sent twice, restarts included). A hub that
was down at the moment sends on its next tick within 24 hours of it; later, that month's
notice is skipped (a hub installed mid-month does not send an old month).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from hub.patrol.departments import DepartmentRegister
from hub.patrol.hazards import HazardService
from hub.patrol.kpi import hazard_counts
from hub.patrol.schedule import to_ns
from hub.sites import SiteRegistry

log = logging.getLogger(__name__)
KEY_MAX = 36  # notify_outbox.alarm_id


@dataclass(frozen=True, slots=True)
class ReportMessage:
    """A previous-month report notice for one site's channel."""

    site: str
    month: str  # YYYY-MM, the month reported on
    channel: str
    text_zh: str
    text_en: str
    path: str  # the PDF's path on the hub's API (the console URL goes in front)

    @property
    def key(self) -> str:
        """The outbox key: one message per site and month (36 characters at most)."""
        key = f"report:{self.site}:{self.month}"
        if len(key) <= KEY_MAX:
            return key
        digest = hashlib.blake2b(self.site.encode(), digest_size=10).hexdigest()
        return f"report:{digest}:{self.month}"  # a long site name: the outbox key is 36 wide


class ReportHook(Protocol):
    """Where monthly report notices go (the notification service)."""

    def __call__(self, message: ReportMessage) -> None:
        """Queue one notice (a repeat of the same key must not send again)."""
        ...


def log_report(message: ReportMessage) -> None:
    """The default hook: log the notice (notifications are off)."""
    log.info("monthly report %s %s -> channel %s (notifications off): %s", message.site,
             message.month, message.channel, message.text_en)


def _pct(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%"


class MonthlySender:
    """Decides, per site and month, when the previous month's report notice is due."""

    def __init__(self, sites: SiteRegistry, departments: DepartmentRegister,
                 hazards: HazardService, hook: ReportHook | None = None) -> None:
        self.sites = sites
        self.departments = departments
        self.hazards = hazards
        self.hook: ReportHook = hook or log_report
        self._done: set[tuple[str, str]] = set()  # (site, this month) handed to the hook

    def advance(self, site: str, now: int) -> ReportMessage | None:
        """Hand over the notice when this month's moment has passed; return it, else None."""
        schedule = self.departments.monthly_report(site)
        registered = self.sites.sites.get(site)
        if schedule is None or registered is None:
            return None
        tz = ZoneInfo(registered.timezone)
        local = datetime.fromtimestamp(now / 1e9, UTC).astimezone(tz)
        this_month = f"{local.year:04d}-{local.month:02d}"
        if (site, this_month) in self._done:
            return None
        hour, minute = (int(part) for part in schedule.at.split(":"))
        moment = datetime.combine(local.date().replace(day=schedule.day),
                                  time(hour, minute), tzinfo=tz)
        if not to_ns(moment) <= now < to_ns(moment + timedelta(days=1)):
            return None  # before the moment, or its day is over (a new hub sends no old month)
        first = local.date().replace(day=1)
        last = first - timedelta(days=1)
        start = datetime.combine(last.replace(day=1), time(), tzinfo=tz)
        end = datetime.combine(first, time(), tzinfo=tz)
        since, until = to_ns(start), to_ns(end)
        rows = [h for h in self.hazards.rows(site) if since <= h.reported_ns < until]
        totals = hazard_counts(rows, now)
        month = f"{last.year:04d}-{last.month:02d}"
        rate = _pct(totals["rectification_rate"])
        name_en = registered.name_en or registered.site
        message = ReportMessage(
            site=site, month=month, channel=schedule.channel,
            text_zh=(f"【月度报告】{registered.name} {month}\n"
                     f"发现隐患 {totals['found']}，已整改 {totals['rectified']}，"
                     f"整改率 {rate}，逾期 {totals['overdue']}，督办 {totals['supervised']}"),
            text_en=(f"[Monthly report] {name_en} {month}\n"
                     f"found {totals['found']}, rectified {totals['rectified']}, "
                     f"rate {rate}, overdue {totals['overdue']}, "
                     f"supervised (督办) {totals['supervised']}"),
            path=f"/api/reports/monthly?site={site}&month={month}&format=pdf")
        self._done.add((site, this_month))
        self.hook(message)
        return message
