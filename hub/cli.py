"""The ``hub`` command: run, demo, check-profiles."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hub.settings import Settings, holds_secret
from hub.tuning import tune_process


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per setting (``--mqtt-url`` for HUB_MQTT_URL); a flag beats the environment."""
    group = parser.add_argument_group("settings (each also from the HUB_* environment)")
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        env = "HUB_" + name.upper()
        group.add_argument(
            flag,
            dest=f"setting_{name}",
            default=None,
            metavar=name.split("_")[-1].upper(),
            help=f"{field.description or ''} [{env}, default {field.default!r}]".strip(),
        )


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {
        key.removeprefix("setting_"): value
        for key, value in vars(args).items()
        if key.startswith("setting_") and value is not None
    }
    for name, value in overrides.items():
        if holds_secret(name, value):
            flag, env = "--" + name.replace("_", "-"), "HUB_" + name.upper()
            print(f"warning: {flag} puts a secret on the command line, where ps shows it to "
                  f"every user of this machine; give {env} in the environment or as a file "
                  f"in HUB_SECRETS_DIR instead (docs/security.md)", file=sys.stderr)
    secrets_dir = os.environ.get("HUB_SECRETS_DIR")
    if secrets_dir:  # one file per setting, named like its variable (Docker/Kubernetes secrets)
        return Settings(_secrets_dir=secrets_dir, **overrides)
    return Settings(**overrides)


def _cmd_check_profiles(args: argparse.Namespace) -> int:
    from hub.ingest.router import TopicRouter
    from hub.profiles.loader import ProfileLoadError, load_profiles

    settings = _settings(args)
    directory = Path(settings.profiles_dir)
    try:
        profiles = load_profiles(directory)
        TopicRouter(profiles)
    except ProfileLoadError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        print(f"{len(exc.errors)} error(s) in {directory}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"{directory}: {exc}", file=sys.stderr)
        return 1
    for profile in profiles:
        topics = ", ".join(m.topic for m in profile.messages.values())
        print(f"ok  {profile.model:<10} {profile.kind:<15} {topics}")
    print(f"{len(profiles)} profile(s) valid in {directory}")
    return _check_rules_and_sites(settings, profiles)


def _check_rules_and_sites(settings: Settings, profiles: list[Any]) -> int:
    """Validate rule files and site files (with their rule overrides) against the profiles."""
    from pydantic import ValidationError

    from hub.rules.engine import RuleEngine
    from hub.rules.schema import RuleError, load_rule_set
    from hub.sites import SiteRegistry, load_site_file

    failures = 0
    for path in sorted(Path(settings.rules_dir).glob("*.yaml")):
        try:
            rule_set = load_rule_set(path)
            print(f"ok  rules {rule_set.kind:<15} {len(rule_set.rules)} rule(s)  {path.name}")
        except RuleError as exc:
            failures += 1
            print(f"{exc}", file=sys.stderr)
    sites = []
    for path in sorted(Path(settings.sites_dir).glob("*.yaml")):
        try:
            site = load_site_file(path)
        except (ValidationError, ValueError, OSError) as exc:
            failures += 1
            print(f"{path}: {exc}", file=sys.stderr)
            continue
        sites.append(site)
        unknown = sorted({d.model for d in site.devices} - {p.model for p in profiles})
        if unknown:
            failures += 1
            print(f"{path}: devices of models without a profile: {unknown}", file=sys.stderr)
        print(f"ok  site  {site.site:<15} {len(site.devices)} device(s)  {path.name}")
    if failures == 0:
        try:  # overrides in site files are checked against the rules when the engine compiles
            RuleEngine(
                _NoAlarms(), rules_dir=Path(settings.rules_dir), sites=SiteRegistry(sites),
                model_kinds={p.model: p.kind for p in profiles},
                report_intervals={p.model: p.report_interval_s for p in profiles},
                background_save=False,
            )
        except (RuleError, ValueError) as exc:
            failures += 1
            print(f"rule overrides: {exc}", file=sys.stderr)
    if failures:
        print(f"{failures} problem(s) in rules or sites", file=sys.stderr)
        return 1
    return 0


class _NoAlarms:
    """Alarm sink for validation only: compiling rules raises no alarm."""

    def raise_or_update(self, *args: Any, **kwargs: Any) -> str:
        """Never called while only compiling."""
        raise RuntimeError("validation raises no alarms")

    def auto_clear(self, *args: Any, **kwargs: Any) -> None:
        """Never called while only compiling."""
        raise RuntimeError("validation clears no alarms")


def _serve(settings: Settings, hub: Any) -> None:
    import uvicorn

    from hub.api.app import create_app

    config = uvicorn.Config(
        create_app(hub, stop_hub_on_shutdown=True),
        host=settings.api_host,
        port=settings.api_port,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    try:
        server.run()
    finally:
        hub.stop()


def _cmd_run(args: argparse.Namespace) -> int:
    from hub.runtime import Hub

    settings = _settings(args)
    hub = Hub(settings)
    hub.start()
    logging.getLogger("hub").info(
        "hub running: MQTT %s, store %s, API http://%s:%s",
        hub.health()["broker"]["url"],
        hub.store.name,
        settings.api_host,
        settings.api_port,
    )
    _serve(settings, hub)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from hub.demo import run_demo

    return run_demo(_settings(args), speed=args.speed, duration_s=args.duration)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``hub`` command."""
    parser = argparse.ArgumentParser(prog="hub", description="MQTT hub for township safety offices")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="ingest MQTT telemetry and serve the API")
    _add_settings_flags(run)
    run.set_defaults(func=_cmd_run)
    demo = sub.add_parser("demo", help="a living township on this machine, nothing else needed")
    _add_settings_flags(demo)
    demo.add_argument("--speed", type=float, default=60.0, help="simulated seconds per second")
    demo.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    demo.set_defaults(func=_cmd_demo)
    check = sub.add_parser("check-profiles", help="validate device profiles, with file:line")
    _add_settings_flags(check)
    check.set_defaults(func=_cmd_check_profiles)
    from hub.grafana import cli as grafana_cli
    from hub.intake import broker_acl

    grafana_cli.register(sub, _add_settings_flags, _settings)
    broker_acl.register(sub, _add_settings_flags, _settings)
    from hub.patrol import cli as patrol_cli

    patrol_cli.register(sub, _add_settings_flags, _settings)  # hub report daily
    from hub.notify import cli as notify_cli

    notify_cli.register(sub, _add_settings_flags, _settings)  # hub notify check|test
    from hub.accounts import cli as accounts_cli

    accounts_cli.register(sub, _add_settings_flags, _settings)  # hub users ...
    from hub.onboarding import cli as onboarding_cli

    onboarding_cli.register(sub, _add_settings_flags, _settings)  # hub sites export
    from hub.intake import broker_cli

    broker_cli.register(sub, _add_settings_flags, _settings)  # hub broker setup
    from hub.cluster import cli as cluster_cli

    cluster_cli.register(sub, _add_settings_flags, _settings)  # hub cluster nats-config, init
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hub`` console script."""
    tune_process()
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from hub.notify.config import NotifyConfigError

    try:
        result: int = args.func(args)
    except ValidationError as exc:
        print(f"invalid settings:\n{exc}", file=sys.stderr)
        return 2
    except NotifyConfigError as exc:
        print(f"invalid notify file {exc.source}:", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
