"""What a notification says about an alarm, in the site's language and local time.

``describe`` turns an alarm's JSON and the site registry into ``AlarmText`` fields (severity,
message, site, device, place, raised time in the site's zone, count, link); the channel
modules lay those fields out in their platform's format. Labels are data (``LABELS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from hub.sites import SiteRegistry

# key: (English, 简体中文)
LABELS: dict[str, tuple[str, str]] = {
    "critical": ("CRITICAL", "紧急"),
    "major": ("MAJOR", "重要"),
    "minor": ("MINOR", "次要"),
    "warning": ("WARNING", "警告"),
    "info": ("INFO", "提示"),
    "alarm": ("Alarm", "告警"),
    "cleared": ("Cleared", "已恢复"),
    "reminder": ("Reminder: not yet acknowledged", "提醒：尚未确认"),
    "test": ("Test message from the safety hub", "安全监测中心测试消息"),
    "device": ("Device", "设备"),
    "place": ("Place", "位置"),
    "site": ("Site", "单位"),
    "time": ("Raised", "时间"),
    "count": ("Count", "次数"),
    "open": ("Open and acknowledge", "查看并确认"),
    "group": ("{n} alarms", "{n} 条告警"),
    "duty": ("On duty", "值班"),
    "step": ("step {n}", "第 {n} 级"),
    "console": ("Console", "控制台"),
    "report_pdf": ("Download (PDF)", "下载报告 (PDF)"),
}


def label(key: str, lang: str) -> str:
    """A label in a language (``en`` or ``zh-CN``)."""
    english, chinese = LABELS[key]
    return english if lang == "en" else chinese


@dataclass(frozen=True, slots=True)
class AlarmText:
    """The fields of one alarm as a message shows them."""

    id: str
    lang: str
    severity: str
    severity_label: str
    message: str
    site: str
    device: str
    place: str
    time: str
    count: int
    link: str
    rule: str
    kind: str
    state: str

    def field(self, name: str) -> str:
        """One field by the names SMS templates use."""
        values = {"severity": self.severity_label, "site": self.site, "device": self.device,
                  "place": self.place, "message": self.message, "time": self.time,
                  "count": str(self.count), "link": self.link, "id": self.id,
                  "rule": self.rule, "kind": self.kind}
        return values[name]

    def headline(self) -> str:
        """One line: ``[紧急] 灯具倾倒 · 浔龙河 S207省道 K18+670 路口``."""
        return f"[{self.severity_label}] {self.message} · {self.device}"


def _parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def describe(alarm: dict[str, Any], sites: SiteRegistry, lang: str,
             console_url: str) -> AlarmText:
    """Build the message fields of an alarm (its JSON) from the site registry."""
    english = lang == "en"
    site = sites.sites.get(alarm.get("site") or "")
    device_id = str(alarm.get("device_id") or "")
    device = sites.devices.get(device_id)
    zone = ZoneInfo(site.timezone if site is not None else "Asia/Shanghai")
    site_name = alarm.get("site") or ""
    place = ""
    if site is not None:
        site_name = (site.name_en or site.name) if english else site.name
        community_id = device.community if device is not None else None
        for community in site.communities:
            if community.id == community_id:
                place = (community.name_en or community.name) if english else community.name
    device_label = device_id
    if device is not None and device.name:
        device_label = f"{device.name} ({device_id})"
    raised = _parse_iso(alarm.get("raised_at")) or datetime.now(UTC)
    local = raised.astimezone(zone)
    message = alarm.get("message") if english else alarm.get("message_zh")
    severity = str(alarm.get("severity") or "info")
    return AlarmText(
        id=str(alarm["id"]), lang=lang, severity=severity,
        severity_label=label(severity, lang) if severity in LABELS else severity,
        message=str(message or alarm.get("message") or alarm.get("rule") or ""),
        site=site_name, device=device_label, place=place,
        time=local.strftime("%Y-%m-%d %H:%M:%S") + f" ({zone.key})",
        count=int(alarm.get("count") or 1), link=f"{console_url.rstrip('/')}/alarms/{alarm['id']}",
        rule=str(alarm.get("rule") or ""), kind=str(alarm.get("kind") or ""),
        state=str(alarm.get("state") or ""))


@dataclass(frozen=True, slots=True)
class Notice:
    """One message to send: what it is about and the alarms in it (one, or a group)."""

    kind: str  # step, reminder, clear, test
    lang: str
    alarms: tuple[AlarmText, ...]
    step: int = 1
    key: str = ""  # the outbox rows it carries: one delivery id per notification
    body: str = ""  # a hazard hand-over's own text (kind handover, no alarm)
    def title(self) -> str:
        """The message's title line."""
        lang = self.lang
        if self.body:
            return self.body.split("\n", 1)[0]
        if self.kind == "test":
            return label("test", lang)
        if len(self.alarms) > 1:
            title = label("group", lang).format(n=len(self.alarms))
        else:
            first = self.alarms[0]
            title = f"{label('alarm', lang)} [{first.severity_label}] {first.message}"
        if self.kind == "clear":
            return f"{label('cleared', lang)}: {title}"
        if self.kind == "reminder":
            return f"{label('reminder', lang)}: {title}"
        return title

    def detail_lines(self, alarm: AlarmText) -> list[tuple[str, str]]:
        """(label, value) lines of one alarm."""
        lang = self.lang
        lines = [(label("site", lang), alarm.site), (label("device", lang), alarm.device)]
        if alarm.place:
            lines.append((label("place", lang), alarm.place))
        lines.append((label("time", lang), alarm.time))
        if alarm.count > 1:
            lines.append((label("count", lang), str(alarm.count)))
        return lines

    def text(self, max_bytes: int | None = None) -> str:
        """The plain-text form (one alarm in full, a group one line per alarm)."""
        if self.body:
            return self.body
        lines = [self.title()]
        if self.kind == "test":
            return lines[0]
        if len(self.alarms) == 1:
            alarm = self.alarms[0]
            lines += [f"{name}: {value}" for name, value in self.detail_lines(alarm)]
            lines.append(f"{label('open', self.lang)}: {alarm.link}")
        else:
            lines += [f"{a.headline()} {a.time[11:19]} {a.link}" for a in self.alarms]
        return "\n".join(lines)

    def markdown(self) -> str:
        """The markdown form (DingTalk, WeCom)."""
        if self.body:
            return "\n".join([f"### {self.title()}", *self.body.split("\n")[1:]])
        if self.kind == "test":
            return f"### {self.title()}"
        lines = [f"### {self.title()}"]
        if len(self.alarms) == 1:
            alarm = self.alarms[0]
            lines += [f"- **{name}**: {value}" for name, value in self.detail_lines(alarm)]
            lines.append(f"\n[{label('open', self.lang)}]({alarm.link})")
        else:
            lines += [f"- {a.headline()} {a.time[11:19]} [{label('open', self.lang)}]({a.link})"
                      for a in self.alarms]
        return "\n".join(lines)
