"""Notify file, message text, rosters and every channel type against the FAKE platforms."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
import pytest

from hub.notify.channels import driver
from hub.notify.channels.base import Recipients
from hub.notify.config import NotifyConfigError, Roster, parse_config
from hub.notify.message import Notice, describe
from hub.notify.roster import next_change, on_duty
from hub.settings import PACKAGE_ROOT
from hub.sites import load_sites
from tests.support.fake_robots import FakeRobots

SITES = load_sites(PACKAGE_ROOT / "sites")
ALARM = {"id": "a1b2", "device_id": "GY-FL-0001", "site": "guoyuan", "kind": "flashing_light",
         "rule": "knocked_over", "severity": "critical", "state": "active_unack",
         "message": "light knocked over (tilt 80 deg)", "message_zh": "灯具倾倒（倾角 80°）",
         "raised_at": "2026-12-01T18:05:00.000Z", "count": 3}
ZONE = ZoneInfo("Asia/Shanghai")


def notice(lang: str = "zh-CN", alarms: list[dict[str, Any]] | None = None) -> Notice:
    texts = tuple(describe(a, SITES, lang, "http://duty.example") for a in alarms or [ALARM])
    return Notice("step", lang, texts)


def channel(data: dict[str, Any]) -> Any:
    config = parse_config({"channels": [data]}, env={})
    return driver(config.channels[0])


# -- the file ----------------------------------------------------------------------------------

def test_config_errors_name_their_path() -> None:
    with pytest.raises(NotifyConfigError) as info:
        parse_config({
            "channels": [{"id": "gy", "type": "dingtalk", "url": "https://x", "colour": 1},
                         {"id": "w", "type": "wecom"}],
            "policies": [{"match": {"severity": ["urgent"]}, "steps": [{"channels": ["gy"]}]}],
        }, env={})
    errors = "\n".join(info.value.errors)
    assert "channels[0].colour: Extra inputs are not permitted" in errors
    assert "channels[1].url: Field required" in errors
    assert "policies[0].match.severity" in errors and "urgent" in errors

    with pytest.raises(NotifyConfigError) as info:
        parse_config({
            "channels": [{"id": "gy", "type": "dingtalk", "url": "https://x"}],
            "people": [{"id": "zhang", "name": "张伟"}],
            "rosters": [{"site": "guoyuan", "shifts": [{"start": "08:00", "end": "20:00",
                                                        "people": ["li"]}]}],
            "policies": [{"steps": [{"channels": ["gy"]},
                                    {"after_s": 60, "channels": ["gy-leadr"],
                                     "mention": ["on_duty", "wang"]}]}],
        }, env={})
    assert info.value.errors == [
        "rosters[0].shifts[0].people[0]: unknown person 'li'",
        "policies[0].steps[1].channels[0]: unknown channel 'gy-leadr'",
        "policies[0].steps[1].mention[1]: unknown person 'wang' (or use on_duty, leaders, all)",
    ]


def test_env_references_resolve_and_missing_ones_are_errors() -> None:
    data = {"channels": [{"id": "gy", "type": "dingtalk", "url": "https://x",
                          "secret": "${GY_SECRET}"}]}
    config = parse_config(data, env={"GY_SECRET": "SECabc"})
    assert config.channels[0].secret == "SECabc"
    with pytest.raises(NotifyConfigError) as info:
        parse_config(data, env={})
    assert info.value.errors == ["channels[0].secret: environment variable GY_SECRET is not set"]


def test_demo_file_is_valid() -> None:
    from hub.notify.config import load_config
    from hub.notify.standin import DEMO_ENV

    config = load_config(PACKAGE_ROOT / "deploy" / "notify" / "demo.yaml",
                         env={**DEMO_ENV, "DEMO_ROBOTS_URL": "http://127.0.0.1:1"})
    assert {r.site for r in config.rosters} == {"guoyuan", "fuping", "longtoupu"}


# -- message text ------------------------------------------------------------------------------

def test_message_in_site_language_with_registry_names_and_local_time() -> None:
    zh = notice("zh-CN").text()
    assert "紧急" in zh and "灯具倾倒（倾角 80°）" in zh
    assert "浔龙河 S207省道 K18+670 路口 (GY-FL-0001)" in zh and "浔龙河片区" in zh
    assert "长沙县果园镇" in zh
    assert "2026-12-02 02:05:00 (Asia/Shanghai)" in zh  # 18:05 UTC is 02:05 the next day
    assert "次数: 3" in zh and "http://duty.example/alarms/a1b2" in zh
    en = notice("en").text()
    assert "CRITICAL" in en and "light knocked over" in en and "Xunlonghe district" in en
    assert "Guoyuan Town" in en


def test_group_lists_every_alarm() -> None:
    alarms = [{**ALARM, "id": f"id-{i}", "device_id": f"GY-FL-{i:04d}"} for i in range(1, 41)]
    text = notice(alarms=alarms).text()
    assert text.startswith("40 条告警")
    for i in range(1, 41):
        assert f"/alarms/id-{i}" in text


# -- rosters -----------------------------------------------------------------------------------

def test_roster_day_night_overnight_and_holiday_override() -> None:
    roster = Roster.model_validate({
        "site": "guoyuan",
        "shifts": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:30",
                    "end": "17:30", "people": ["day"]},
                   {"days": ["fri"], "start": "20:00", "end": "08:00", "people": ["night"]}],
        "overrides": [{"date": "2026-12-07", "shifts": [{"start": "00:00", "end": "24:00",
                                                          "people": ["holiday"]}]}]})

    def at(text: str) -> datetime:
        return datetime.fromisoformat(text).replace(tzinfo=ZONE)

    assert on_duty(roster, at("2026-12-04T09:00"), ZONE) == ["day"]  # Friday
    assert on_duty(roster, at("2026-12-04T19:00"), ZONE) == []
    assert on_duty(roster, at("2026-12-04T23:00"), ZONE) == ["night"]
    assert on_duty(roster, at("2026-12-05T07:59"), ZONE) == ["night"]  # Saturday morning
    assert on_duty(roster, at("2026-12-05T08:00"), ZONE) == []
    assert on_duty(roster, at("2026-12-07T09:00"), ZONE) == ["holiday"]  # a Monday off
    upcoming = next_change(roster, at("2026-12-04T19:00"), ZONE)
    assert upcoming is not None and upcoming.people == ("night",)
    assert upcoming.start == at("2026-12-04T20:00")


# -- channels against the fakes ----------------------------------------------------------------

def send(drv: Any, to: Recipients | None = None, lang: str = "zh-CN",
         now: float | None = None) -> Any:
    with httpx.Client() as client:
        return drv.send(client, notice(lang), to or Recipients(), now or time.time())


def test_dingtalk_signed_markdown_mentions_and_errors(fake: FakeRobots) -> None:
    robot, url = fake.dingtalk("T1", "SECgood")
    ding = channel({"id": "gy", "type": "dingtalk", "url": url, "secret": "SECgood"})
    answer = send(ding, Recipients(names=("张伟",), mobiles=("13800000001",)))
    assert answer.outcome == "sent", answer
    payload = robot.messages[0]["payload"]
    assert payload["msgtype"] == "markdown" and payload["at"]["atMobiles"] == ["13800000001"]
    assert "@13800000001" in payload["markdown"]["text"]

    wrong = channel({"id": "gy", "type": "dingtalk", "url": url, "secret": "SECbad"})
    answer = send(wrong)
    assert (answer.outcome, answer.detail) == ("config", "errcode 310000: sign not match")
    stale = send(ding, now=time.time() - 7200)
    assert (stale.outcome, stale.detail) == ("config", "errcode 310000: invalid timestamp")
    gone = channel({"id": "x", "type": "dingtalk",
                    "url": fake.base + "/robot/send?access_token=NO"})
    assert send(gone).outcome == "config"

    for _ in range(19):
        assert send(ding).outcome == "sent"
    limited = send(ding)
    assert limited.outcome == "retry" and "130101" in limited.detail
    assert limited.retry_after_s == 60.0


def test_wecom_text_mentions_size_and_rate(fake: FakeRobots) -> None:
    robot, url = fake.wecom("K1")
    wecom = channel({"id": "w", "type": "wecom", "url": url})
    assert send(wecom, Recipients(mobiles=("13800000002",))).outcome == "sent"
    text = robot.messages[0]["payload"]["text"]
    assert text["mentioned_mobile_list"] == ["13800000002"]
    big = [{**ALARM, "id": f"id-{i}"} for i in range(60)]
    assert not wecom.fits(notice(alarms=big))  # the dispatcher splits such a group
    bad = channel({"id": "w", "type": "wecom", "url": fake.base + "/cgi-bin/webhook/send?key=X"})
    assert send(bad).outcome == "config"
    for _ in range(19):
        send(wecom)
    limited = send(wecom)
    assert limited.outcome == "retry" and "45009" in limited.detail


def test_feishu_signed_card_and_frequency_limit(fake: FakeRobots) -> None:
    robot, url = fake.feishu("H1", "fsecret")
    bot = channel({"id": "f", "type": "feishu", "url": url, "secret": "fsecret"})
    assert send(bot, Recipients(names=("赵敏",))).outcome == "sent"
    payload = robot.messages[0]["payload"]
    assert payload["msg_type"] == "interactive" and payload["card"]["header"]["template"] == "red"
    wrong = channel({"id": "f", "type": "feishu", "url": url, "secret": "nope"})
    answer = send(wrong)
    assert answer.outcome == "config" and answer.detail.startswith("code 19021")
    for _ in range(3):
        send(bot)
    limited = send(bot)  # the fifth in a second: 5 a second is the limit
    assert limited.outcome in ("sent", "retry")
    sixth = send(bot)
    assert sixth.outcome == "retry" and "11232" in sixth.detail


def test_sms_aliyun_signature_template_and_limits(fake: FakeRobots) -> None:
    robot, url = fake.sms("AKID", "AKSECRET", {"SMS_1": ["level", "what", "where"]})
    base = {"id": "sms", "type": "sms", "access_key_id": "AKID", "access_key_secret": "AKSECRET",
            "sign_name": "果园镇应急办", "template_code": "SMS_1", "endpoint": url,
            "template_params": {"level": "severity", "what": "message", "where": "device"}}
    sms = channel(base)
    answer = send(sms, Recipients(mobiles=("13800000003",)))
    assert answer.outcome == "sent", answer
    params = robot.messages[0]["payload"]["params"]
    assert params["level"] == "紧急" and params["what"].startswith("灯具倾倒")
    assert all(len(v) <= 35 for v in params.values())
    again = send(sms, Recipients(mobiles=("13800000003",)))
    assert again.outcome == "retry" and "isv.BUSINESS_LIMIT_CONTROL" in again.detail
    wrong = channel({**base, "access_key_secret": "WRONG"})
    answer = send(wrong, Recipients(mobiles=("13800000004",)))
    assert (answer.outcome, answer.detail.split(":")[0]) == ("config", "SignatureDoesNotMatch")
    missing = channel({**base, "template_params": {"level": "severity"}})
    answer = send(missing, Recipients(mobiles=("13800000005",)))
    assert answer.outcome == "config" and "TEMPLATE_MISSING" in answer.detail
    assert send(sms).outcome == "failed"  # nobody to text


def test_webhook_signature_covers_timestamp_and_replays_are_refused(fake: FakeRobots) -> None:
    from hub.notify.channels.webhook import sign, verify

    robot, url = fake.webhook("ops", "whsecret")
    hook = channel({"id": "ops", "type": "webhook", "url": url, "secret": "whsecret"})
    assert send(hook).outcome == "sent"
    assert robot.messages[0]["payload"]["alarms"][0]["id"] == "a1b2"
    request = hook.build(notice(), Recipients(), time.time(), delivery="d-1")
    headers = dict(request.headers)
    assert verify("whsecret", headers, request.content, time.time()) is None
    assert verify("whsecret", headers, request.content, time.time() + 600) == (
        "timestamp outside the replay window")
    moved = {**headers, "X-Hub-Timestamp": str(int(time.time()) + 1)}
    assert verify("whsecret", moved, request.content, time.time()) == "signature mismatch"
    assert headers["X-Hub-Signature-256"] == sign(
        "whsecret", int(headers["X-Hub-Timestamp"]), request.content)
    first = httpx.post(url, content=request.content, headers=headers)
    replay = httpx.post(url, content=request.content, headers=headers)
    assert (first.status_code, replay.status_code) == (200, 409)
    stale = channel({"id": "ops", "type": "webhook", "url": url, "secret": "other"})
    assert send(stale).outcome == "config"


def test_legacy_webhook_sender_signs_the_timestamp(fake: FakeRobots) -> None:
    from hub.alarms.webhooks import WebhookSender

    robot, url = fake.webhook("legacy", "legacysecret")
    sender = WebhookSender([url], "legacysecret", max_attempts=1)
    sender.submit("alarm.raise", {"alarm": {"id": "x"}})
    sender.close(timeout_s=10)
    assert sender.sent == 1 and robot.messages[0]["payload"]["event"] == "alarm.raise"


def test_messages_bodies_are_utf8_json(fake: FakeRobots) -> None:
    _robot, url = fake.dingtalk("T9")
    ding = channel({"id": "gy", "type": "dingtalk", "url": url, "format": "text"})
    request = ding.build(notice(), Recipients(), time.time())
    assert "charset=utf-8" in request.headers["Content-Type"]
    assert orjson.loads(request.content)["text"]["content"].startswith("告警 [紧急]")


def test_notify_file_path_is_a_setting(tmp_path: Path) -> None:
    from hub.settings import Settings

    assert Settings(notify_file=tmp_path / "n.yaml").notify_file == tmp_path / "n.yaml"
    assert Settings().notify_file is None


def test_describe_unknown_device_falls_back_to_ids() -> None:
    alarm = {**ALARM, "device_id": "ZZ-1", "site": "nowhere"}
    text = describe(alarm, SITES, "zh-CN", "http://x")
    assert (text.device, text.site, text.place) == ("ZZ-1", "nowhere", "")
    assert text.time.endswith("(Asia/Shanghai)")


def test_hub_notify_test_prints_the_platform_answer(tmp_path: Path, fake: FakeRobots,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from hub.cli import main

    robot, url = fake.dingtalk("T-cli", "SECcli")
    path = tmp_path / "notify.yaml"
    path.write_text(
        "channels:\n"
        f"  - {{id: gy, type: dingtalk, url: '{url}', secret: '${{CLI_SECRET}}'}}\n"
        "people: [{id: zhang, name: 张伟, mobile: '13800000001'}]\n"
        "rosters: [{site: guoyuan, shifts: [{start: '00:00', end: '24:00', people: [zhang]}]}]\n",
        encoding="utf-8")
    monkeypatch.setenv("HUB_NOTIFY_FILE", str(path))
    monkeypatch.setenv("CLI_SECRET", "SECcli")
    assert main(["notify", "test", "--channel", "gy", "--site", "guoyuan"]) == 0
    assert capsys.readouterr().out.strip() == "gy (dingtalk): sent: errcode 0: ok"
    assert robot.messages[0]["payload"]["at"]["atMobiles"] == ["13800000001"]
    monkeypatch.setenv("CLI_SECRET", "SECwrong")
    assert main(["notify", "test", "--channel", "gy"]) == 1
    assert "config: errcode 310000: sign not match" in capsys.readouterr().out
    assert main(["notify", "check"]) == 0
    assert "on duty at guoyuan: 张伟" in capsys.readouterr().out
    path.write_text("channels: [{id: gy, type: dingtalk}]\n", encoding="utf-8")
    assert main(["notify", "check"]) == 1
    assert "channels[0].url: Field required" in capsys.readouterr().err
