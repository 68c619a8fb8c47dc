"""``hub users add|list|passwd|disable|enable|remove``: accounts in the state store.

Passwords are read from stdin (the first line) or, on a terminal, from a prompt asked twice:
never from the command line, where ``ps`` and shell history would show them.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable

from hub.accounts.audit import AuditLog
from hub.accounts.store import AccountError, AccountStore
from hub.api.auth import ROLES, parse_sites
from hub.db import make_engine
from hub.settings import Settings

SettingsOf = Callable[[argparse.Namespace], Settings]


def read_password(prompt: str = "password: ") -> str:
    """A password from a prompt (twice, on a terminal) or the first line of stdin."""
    if sys.stdin.isatty():
        first = getpass.getpass(prompt)
        if getpass.getpass("again: ") != first:
            raise AccountError("the two passwords differ")
        return first
    line = sys.stdin.readline()
    return line.rstrip("\r\n")


def _store(settings: Settings) -> tuple[AccountStore, AuditLog]:
    engine = make_engine(settings.resolved_database_url())
    return AccountStore(engine), AuditLog(engine)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _cmd(args: argparse.Namespace, settings_of: SettingsOf) -> int:
    settings = settings_of(args)
    store, audit = _store(settings)
    try:
        return _run(args, store, audit, settings)
    except AccountError as exc:
        print(f"hub users {args.users_command}: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"hub users {args.users_command}: {exc}", file=sys.stderr)
        return 2
    finally:
        store.engine.dispose()


def _run(args: argparse.Namespace, store: AccountStore, audit: AuditLog,
         settings: Settings) -> int:
    command = args.users_command
    if command == "list":
        for user in store.list():
            shown = ",".join(user["sites"]) if user["sites"] is not None else "*"
            state = "disabled" if user["disabled"] else "enabled"
            print(f"{user['name']:<24} {user['role']:<8} {shown:<30} {state}")
        return 0
    name = args.name
    site: str | None = None
    if command == "add":
        sites = parse_sites(args.sites or "", "--sites")
        _check_known_sites(sites, settings)
        store.add(name, args.role, read_password(), sites)
        site = next(iter(sites)) if sites and len(sites) == 1 else None
        print(f"added {name} ({args.role}, sites: {','.join(sorted(sites)) if sites else 'all'})")
    elif command == "passwd":
        store.set_password(name, read_password("new password: "))
        print(f"new password for {name}; their sessions ended")
    elif command in ("disable", "enable"):
        store.set_disabled(name, command == "disable")
        print(f"{command}d {name}")
    elif command == "remove":
        store.remove(name)
        print(f"removed {name}")
    audit.record(_actor(), f"user.{command}", target=name, site=site, source="cli")
    return 0


def _check_known_sites(sites: frozenset[str] | None, settings: Settings) -> None:
    """Refuse sites that no site file defines (a typo would lock the account out of all)."""
    if sites is None:
        return
    from hub.sites import load_sites

    known = set(load_sites(settings.sites_dir).sites)
    unknown = sorted(sites - known)
    if unknown and known:
        raise ValueError(f"unknown sites {', '.join(unknown)} (known: {', '.join(sorted(known))})")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser],
             add_settings_flags: Callable[[argparse.ArgumentParser], None],
             settings_of: SettingsOf) -> None:
    """Add ``hub users ...`` to the ``hub`` command."""
    users = sub.add_parser("users", help="accounts that sign in to the console")
    commands = users.add_subparsers(dest="users_command", required=True)
    add = commands.add_parser("add", help="create an account (password from stdin or prompt)")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--sites", default=None,
                     help="comma list of site ids the account is limited to (default: all)")
    listing = commands.add_parser("list", help="every account with role, sites, state")
    passwd = commands.add_parser("passwd", help="new password (stdin or prompt); sessions end")
    passwd.add_argument("name")
    for verb, text in (("disable", "refuse sign-in, end sessions"), ("enable", "allow again"),
                       ("remove", "delete the account and its sessions")):
        parser = commands.add_parser(verb, help=text)
        parser.add_argument("name")
    for parser in (add, listing, passwd, *commands.choices.values()):
        if not any(a.dest.startswith("setting_") for a in parser._actions):
            add_settings_flags(parser)
    users.set_defaults(func=lambda args: _cmd(args, settings_of))
