"""The notification file (``HUB_NOTIFY_FILE``): channels, people, rosters, policies.

Checked by pydantic models with ``extra="forbid"``; every error names its path in the file
(``policies[0].steps[1].channels[0]: unknown channel 'gy-leadr'``). String values may be
``${ENV_NAME}`` references, resolved before validation, so secrets stay out of the file.
"""

from __future__ import annotations

import os
import re
from datetime import date, time
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hub.rules.schema import SEVERITIES

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
LANGUAGES: tuple[str, ...] = ("zh-CN", "en")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class NotifyConfigError(ValueError):
    """The notification file is invalid; ``errors`` lists ``path: message`` lines."""

    def __init__(self, source: str, errors: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(errors))
        self.source = source
        self.errors = errors


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rate(_Strict):
    """How many messages a channel may send: per minute and (optionally) per second."""

    per_minute: int = Field(ge=1)
    per_second: int | None = Field(default=None, ge=1)


class _Channel(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    rate: Rate | None = Field(default=None, description="default: the platform's own limit")
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    max_attempts: int = Field(default=8, ge=1, le=50)
    backoff_s: float = Field(default=2.0, gt=0)
    max_backoff_s: float = Field(default=300.0, gt=0)
    rate_limited_wait_s: float | None = Field(
        default=None, gt=0, description="wait after a rate-limit answer (default: platform's)")


class DingTalkChannel(_Channel):
    """DingTalk custom robot (自定义机器人), optionally with 加签 (``secret``: ``SEC...``)."""

    type: Literal["dingtalk"]
    url: str = Field(pattern=r"^https?://")
    secret: str | None = None
    format: Literal["text", "markdown"] = "markdown"


class WeComChannel(_Channel):
    """WeCom group robot (群机器人); the key is in the URL."""

    type: Literal["wecom"]
    url: str = Field(pattern=r"^https?://")
    format: Literal["text", "markdown"] = "text"


class FeishuChannel(_Channel):
    """Feishu / Lark custom bot (自定义机器人), optionally with signature verification."""

    type: Literal["feishu"]
    url: str = Field(pattern=r"^https?://")
    secret: str | None = None
    format: Literal["text", "card"] = "card"


class WebhookChannel(_Channel):
    """Signed JSON POST (HMAC-SHA256 over ``<timestamp>.<body>``)."""

    type: Literal["webhook"]
    url: str = Field(pattern=r"^https?://")
    secret: str | None = None


class SmsChannel(_Channel):
    """SMS through Aliyun SMS (短信服务 SendSms, RPC signature v1) to the mentioned people."""

    type: Literal["sms"]
    provider: Literal["aliyun"] = "aliyun"
    access_key_id: str
    access_key_secret: str
    sign_name: str = Field(description="the approved SMS signature (短信签名)")
    template_code: str = Field(description="the approved template, e.g. SMS_123456789")
    template_params: dict[str, str] = Field(
        description="template variable -> message field: severity, site, device, place, "
                    "message, time, count, link, id")
    endpoint: str = Field(default="https://dysmsapi.aliyuncs.com/", pattern=r"^https?://")
    region: str = "cn-hangzhou"
    phone_numbers: list[str] = Field(
        default_factory=list, description="always sent to (besides the mentioned people)")
    param_max_chars: int = Field(default=35, ge=1, le=500)


Channel = Annotated[
    DingTalkChannel | WeComChannel | FeishuChannel | WebhookChannel | SmsChannel,
    Field(discriminator="type"),
]
MESSAGE_FIELDS = frozenset({"severity", "site", "device", "place", "message", "time",
                            "count", "link", "id", "rule", "kind"})


class Person(_Strict):
    """Someone who can be on duty or mentioned."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    name: str
    mobile: str | None = Field(default=None, pattern=r"^\+?[0-9]{5,20}$")
    feishu_open_id: str | None = Field(default=None, description="for Feishu <at> mentions")
    wecom_userid: str | None = None


class Shift(_Strict):
    """People on duty on some weekdays between two local times (end before start: overnight)."""

    days: list[Day] = Field(
        default_factory=lambda: list(DAYS))
    start: str = Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    end: str = Field(pattern=r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")
    people: list[str] = Field(min_length=1)

    def start_time(self) -> time:
        """The start as a time of day."""
        return time.fromisoformat(self.start)

    def end_minutes(self) -> int:
        """The end in minutes after midnight (24:00 is 1440)."""
        hours, minutes = self.end.split(":")
        return int(hours) * 60 + int(minutes)


class Override(_Strict):
    """A dated exception (holiday, swap): these shifts replace the weekly ones on that date."""

    date: date
    shifts: list[Shift] = Field(default_factory=list)
    comment: str | None = None


class Roster(_Strict):
    """Who is on duty at one site, in the site's local time."""

    site: str
    shifts: list[Shift] = Field(default_factory=list)
    overrides: list[Override] = Field(default_factory=list)
    leaders: list[str] = Field(default_factory=list, description="mention: leaders")


class Match(_Strict):
    """Which alarms a policy or a silence applies to (every given field must match)."""

    site: str | list[str] | None = None
    severity: str | list[str] | None = None
    kind: str | list[str] | None = None
    rule: str | list[str] | None = None
    device_id: str | list[str] | None = None

    @field_validator("severity")
    @classmethod
    def _known_severity(cls, value: str | list[str] | None) -> str | list[str] | None:
        for item in [value] if isinstance(value, str) else value or []:
            if item not in SEVERITIES:
                raise ValueError(f"unknown severity {item!r}: use {', '.join(SEVERITIES)}")
        return value

    def matches(self, fields: dict[str, Any]) -> bool:
        """True when every given field equals (or is one of) the alarm's value."""
        for name in ("site", "severity", "kind", "rule", "device_id"):
            wanted = getattr(self, name)
            if wanted is None:
                continue
            value = fields.get(name)
            if isinstance(wanted, str):
                if value != wanted:
                    return False
            elif value not in wanted:
                return False
        return True


Mention = Literal["on_duty", "leaders", "all"] | str


class Step(_Strict):
    """One escalation step: after ``after_s`` seconds, these channels, mentioning these people."""

    after_s: float = Field(default=0, ge=0)
    channels: list[str] = Field(min_length=1)
    mention: Mention | list[Mention] = Field(
        default_factory=list, description="on_duty, leaders, all, or person ids")

    def mentions(self) -> list[str]:
        """The mention spec as a list."""
        return [self.mention] if isinstance(self.mention, str) else list(self.mention)


class Policy(_Strict):
    """The escalation chain of the alarms it matches (the first matching policy applies)."""

    name: str | None = None
    match: Match = Field(default_factory=Match)
    steps: list[Step] = Field(min_length=1)
    repeat_s: float | None = Field(default=None, gt=0, description="reminder while unacked")
    max_repeats: int = Field(default=24, ge=0)
    notify_clear: bool = Field(default=False, description="tell the channels when it clears")


class NotifyConfig(_Strict):
    """The whole notification file."""

    language: Literal["zh-CN", "en"] = "zh-CN"
    site_language: dict[str, Literal["zh-CN", "en"]] = Field(default_factory=dict)
    channels: list[Channel] = Field(default_factory=list)
    people: list[Person] = Field(default_factory=list)
    rosters: list[Roster] = Field(default_factory=list)
    policies: list[Policy] = Field(default_factory=list)

    def channel(self, channel_id: str) -> Any:
        """Return the channel with that id, or None."""
        for channel in self.channels:
            if channel.id == channel_id:
                return channel
        return None

    def person(self, person_id: str) -> Person | None:
        """Return the person with that id, or None."""
        for person in self.people:
            if person.id == person_id:
                return person
        return None

    def roster(self, site: str) -> Roster | None:
        """Return the roster of a site, or None."""
        for roster in self.rosters:
            if roster.site == site:
                return roster
        return None

    def policy_for(self, fields: dict[str, Any]) -> tuple[int, Policy] | None:
        """Return (index, policy) of the first policy matching an alarm's fields."""
        for index, policy in enumerate(self.policies):
            if policy.match.matches(fields):
                return index, policy
        return None

    def language_of(self, site: str) -> str:
        """The language messages of a site are written in."""
        return self.site_language.get(site, self.language)


def _expand(value: Any, path: str, env: dict[str, str], errors: list[str]) -> Any:
    if isinstance(value, str):
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                errors.append(f"{path}: environment variable {name} is not set")
                return ""
            return env[name]

        return _ENV_REF.sub(replace, value)
    if isinstance(value, dict):
        return {k: _expand(v, f"{path}.{k}" if path else str(k), env, errors)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{path}[{i}]", env, errors) for i, v in enumerate(value)]
    return value


def _loc(loc: tuple[int | str, ...], data: Any) -> str:
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
            node = node[item] if isinstance(node, list) and item < len(node) else None
        elif isinstance(node, dict) and item not in node and item == node.get("type"):
            continue  # the discriminator's tag (e.g. 'dingtalk'), not a key of the file
        else:
            parts.append(f".{item}" if parts else str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return "".join(parts) or "(top)"


def _references(config: NotifyConfig) -> list[str]:
    errors: list[str] = []
    channels = {c.id for c in config.channels}
    people = {p.id for p in config.people}
    for kind, ids in (("channel", [c.id for c in config.channels]),
                      ("person", [p.id for p in config.people]),
                      ("roster site", [r.site for r in config.rosters])):
        seen: set[str] = set()
        for ident in ids:
            if ident in seen:
                errors.append(f"duplicate {kind} {ident!r}")
            seen.add(ident)
    for c_index, channel in enumerate(config.channels):
        if isinstance(channel, SmsChannel):
            for name, source in channel.template_params.items():
                if source not in MESSAGE_FIELDS:
                    errors.append(f"channels[{c_index}].template_params.{name}: unknown field "
                                  f"{source!r}, use {', '.join(sorted(MESSAGE_FIELDS))}")
    for r_index, roster in enumerate(config.rosters):
        shifts = [(f"rosters[{r_index}].shifts[{i}]", s) for i, s in enumerate(roster.shifts)]
        for o_index, override in enumerate(roster.overrides):
            shifts += [(f"rosters[{r_index}].overrides[{o_index}].shifts[{i}]", s)
                       for i, s in enumerate(override.shifts)]
        for path, shift in shifts:
            for p_index, person in enumerate(shift.people):
                if person not in people:
                    errors.append(f"{path}.people[{p_index}]: unknown person {person!r}")
            if shift.end_minutes() == shift.start_time().hour * 60 + shift.start_time().minute:
                errors.append(f"{path}: start and end are the same time")
        for l_index, person in enumerate(roster.leaders):
            if person not in people:
                errors.append(f"rosters[{r_index}].leaders[{l_index}]: unknown person {person!r}")
    for p_index, policy in enumerate(config.policies):
        previous = -1.0
        for s_index, step in enumerate(policy.steps):
            path = f"policies[{p_index}].steps[{s_index}]"
            if step.after_s < previous:
                errors.append(f"{path}.after_s: steps must be in order of after_s")
            previous = step.after_s
            for c_index, channel_id in enumerate(step.channels):
                if channel_id not in channels:
                    errors.append(f"{path}.channels[{c_index}]: unknown channel {channel_id!r}")
            for m_index, mention in enumerate(step.mentions()):
                if mention not in ("on_duty", "leaders", "all") and mention not in people:
                    errors.append(f"{path}.mention[{m_index}]: unknown person {mention!r} "
                                  "(or use on_duty, leaders, all)")
    return errors


def parse_config(data: Any, source: str = "notify file",
                 env: dict[str, str] | None = None) -> NotifyConfig:
    """Validate parsed YAML (``${ENV}`` resolved from ``env``); raise NotifyConfigError."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise NotifyConfigError(source, ["(top): expected a mapping"])
    errors: list[str] = []
    expanded = _expand(data, "", dict(os.environ) if env is None else env, errors)
    if errors:
        raise NotifyConfigError(source, errors)
    try:
        config = NotifyConfig.model_validate(expanded)
    except ValidationError as exc:
        raise NotifyConfigError(source, [
            f"{_loc(e['loc'], expanded)}: {e['msg']}" for e in exc.errors()]) from None
    problems = _references(config)
    if problems:
        raise NotifyConfigError(source, problems)
    return config


def load_config(path: Path, env: dict[str, str] | None = None) -> NotifyConfig:
    """Read and validate a notification file; raise NotifyConfigError with the file name."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise NotifyConfigError(str(path), [f"cannot read: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise NotifyConfigError(str(path), [f"not YAML: {exc}"]) from None
    return parse_config(data, str(path), env)
