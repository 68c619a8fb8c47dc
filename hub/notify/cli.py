"""``hub notify check`` and ``hub notify test --channel ID``: the notify file from a shell.

``check`` validates HUB_NOTIFY_FILE (every error with its path) and prints who is on duty now
per roster. ``test`` sends one test message on one channel, mentioning the people on duty at
``--site`` (or ``--mention`` person ids), and prints the platform's answer; it writes nothing
to the state store. Exit code 0 only when the platform accepted the message.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

from hub.settings import Settings


def _load(settings: Settings) -> object:
    from hub.notify.config import NotifyConfigError, load_config

    if settings.notify_file is None:
        print("HUB_NOTIFY_FILE is not set: notifications are off", file=sys.stderr)
        return None
    try:
        return load_config(Path(settings.notify_file))
    except NotifyConfigError as exc:
        for error in exc.errors:
            print(f"{exc.source}: {error}", file=sys.stderr)
        return None


def _cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    from zoneinfo import ZoneInfo

    from hub.notify.config import NotifyConfig
    from hub.notify.roster import on_duty
    from hub.sites import load_sites

    config = _load(settings)
    if not isinstance(config, NotifyConfig):
        return 1
    sites = load_sites(settings.sites_dir)
    problems = [f"rosters: unknown site {r.site!r}" for r in config.rosters
                if r.site not in sites.sites]
    for problem in problems:
        print(f"{settings.notify_file}: {problem}", file=sys.stderr)
    now = datetime.now(UTC)
    print(f"ok  {len(config.channels)} channel(s), {len(config.people)} people, "
          f"{len(config.rosters)} roster(s), {len(config.policies)} policies")
    for roster in config.rosters:
        site = sites.sites.get(roster.site)
        zone = ZoneInfo(site.timezone if site is not None else "Asia/Shanghai")
        people = [config.person(p) for p in on_duty(roster, now, zone)]
        names = [p.name for p in people if p is not None]
        print(f"    on duty at {roster.site}: {', '.join(names) or 'nobody'}")
    return 1 if problems else 0


def _cmd_test(args: argparse.Namespace, settings: Settings) -> int:
    from hub.notify.channels import driver
    from hub.notify.channels.base import Recipients
    from hub.notify.config import NotifyConfig
    from hub.notify.message import Notice
    from hub.notify.roster import on_duty

    config = _load(settings)
    if not isinstance(config, NotifyConfig):
        return 1
    channel = config.channel(args.channel)
    if channel is None:
        known = ", ".join(c.id for c in config.channels) or "none"
        print(f"unknown channel {args.channel!r}; channels: {known}", file=sys.stderr)
        return 2
    ids = list(args.mention or [])
    if args.site:
        from zoneinfo import ZoneInfo

        from hub.sites import load_sites

        site = load_sites(settings.sites_dir).sites.get(args.site)
        zone = ZoneInfo(site.timezone if site is not None else "Asia/Shanghai")
        ids += on_duty(config.roster(args.site), datetime.now(UTC), zone)
    people = [p for p in (config.person(i) for i in ids) if p is not None]
    to = Recipients(names=tuple(p.name for p in people),
                    mobiles=tuple(p.mobile for p in people if p.mobile),
                    feishu_ids=tuple(p.feishu_open_id for p in people if p.feishu_open_id),
                    wecom_ids=tuple(p.wecom_userid for p in people if p.wecom_userid))
    lang = config.language_of(args.site) if args.site else config.language
    notice = Notice("test", lang, ())
    with httpx.Client() as client:
        answer = driver(channel).send(client, notice, to, time.time())
    print(f"{channel.id} ({channel.type}): {answer.outcome}: {answer.detail}")
    return 0 if answer.outcome == "sent" else 1


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    add_settings_flags: Callable[[argparse.ArgumentParser], None],
    settings_of: Callable[[argparse.Namespace], Settings],
) -> None:
    """Add ``hub notify check`` and ``hub notify test`` to the ``hub`` command."""
    notify = sub.add_parser("notify", help="notifications: check the file, send a test")
    kinds = notify.add_subparsers(dest="notify", required=True)
    check = kinds.add_parser("check", help="validate HUB_NOTIFY_FILE, show who is on duty")
    add_settings_flags(check)
    check.set_defaults(func=lambda args: _cmd_check(args, settings_of(args)))
    test = kinds.add_parser("test", help="send a test message on one channel")
    add_settings_flags(test)
    test.add_argument("--channel", required=True, help="channel id from the notify file")
    test.add_argument("--site", default=None, help="mention who is on duty at this site")
    test.add_argument("--mention", action="append", help="person id to mention (repeatable)")
    test.set_defaults(func=lambda args: _cmd_test(args, settings_of(args)))
