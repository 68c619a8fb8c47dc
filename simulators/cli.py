"""``hub-sim``: run the seed townships' fleets, list scenarios, or generate benchmark load."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from simulators.scenario import ScenarioError, builtin_scenarios, load_scenario
from simulators.timeutil import parse_start

DEFAULT_URL = "mqtt://127.0.0.1:1883"


def _err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    """Simulate the site files' devices and publish them."""
    from simulators.fleet import Fleet
    from simulators.publisher import run

    scenario = load_scenario(args.scenario) if args.scenario else None
    fleet = Fleet(Path(args.sites), seed=args.seed, start=parse_start(args.start),
                  scenario=scenario, only_sites=args.site or None)
    duration = args.duration
    if duration is None and scenario is not None:
        duration = scenario.duration_s / args.speed if args.speed > 0 else scenario.duration_s
    if args.speed == 0 and duration is None:
        _err("hub-sim run: --speed 0 needs --duration (simulated seconds) or a --scenario")
        return 2
    counts = ", ".join(f"{m} {n}" for m, n in sorted(fleet.device_models().items()))
    _err(f"hub-sim: {len(fleet.devices)} devices ({counts}) from {args.sites}; start "
         f"{fleet.start.isoformat()}; speed {args.speed:g}; seed {args.seed}"
         + (f"; scenario {scenario.name}" if scenario else ""))
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    summary = run(fleet, args.mqtt_url, speed=args.speed, duration=duration, stop_event=stop,
                  lwt_mode=args.lwt_mode, progress=_err, progress_every_s=args.progress)
    for line in summary.lines():
        _err(line)
    if scenario is not None and scenario.expect_alarms:
        _err("expected alarms:")
        for alarm in scenario.expect_alarms:
            _err(f"  {alarm.device:<16} {alarm.rule:<22} {alarm.severity}")
    return 0


def cmd_scenarios(args: argparse.Namespace) -> int:
    """List the built-in scenarios."""
    for sc in builtin_scenarios():
        print(f"{sc.name:<26} {sc.duration_s / 60:>5.0f} min  {sc.description.splitlines()[0]}")
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    """Generate benchmark load."""
    from simulators.load import run_load, write_load_site

    if args.write_site:
        write_load_site(args.write_site, args.devices, args.models)
        _err(f"wrote {args.write_site}")
    result = run_load(devices=args.devices, rate=args.rate, duration=args.duration,
                      mqtt_url=args.mqtt_url, processes=args.processes, qos=args.qos,
                      models=args.models, progress=_err)
    for line in result.lines():
        print(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser."""
    parser = argparse.ArgumentParser(prog="hub-sim", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    run_p = sub.add_parser("run", help="simulate the sites' devices and publish to a broker")
    run_p.add_argument("--sites", default="sites", help="directory of site files")
    run_p.add_argument("--mqtt-url", default=DEFAULT_URL)
    run_p.add_argument("--site", action="append", help="only this site (repeatable)")
    run_p.add_argument("--speed", type=float, default=1.0,
                       help="1 real time, 60 = an hour a minute, 0 as fast as possible")
    run_p.add_argument("--duration", type=float, default=None,
                       help="wall seconds (simulated seconds with --speed 0); default: the "
                            "scenario's duration, else until Ctrl-C")
    run_p.add_argument("--scenario", help="scenario file or built-in name")
    run_p.add_argument("--seed", type=int, default=0)
    run_p.add_argument("--start", help="simulated start, ISO 8601 (naive = Asia/Shanghai); "
                                       "default now (or the scenario's start time today)")
    run_p.add_argument("--lwt-mode", choices=["clients", "simulate"], default="clients",
                       help="clients: own connection per last-will device (real LWT); "
                            "simulate: publish retained offline on one shared connection")
    run_p.add_argument("--progress", type=float, default=5.0, help="seconds between progress")
    run_p.set_defaults(func=cmd_run)

    sc_p = sub.add_parser("scenarios", help="list the built-in scenarios")
    sc_p.set_defaults(func=cmd_scenarios)

    load_p = sub.add_parser("load", help="benchmark load: N devices at R msg/s")
    load_p.add_argument("--devices", type=int, required=True)
    load_p.add_argument("--rate", type=float, required=True, help="messages per second, total")
    load_p.add_argument("--duration", type=float, required=True, help="seconds")
    load_p.add_argument("--mqtt-url", default=DEFAULT_URL)
    load_p.add_argument("--processes", type=int, default=2)
    load_p.add_argument("--qos", type=int, choices=[0, 1], default=0)
    load_p.add_argument("--models", nargs="+", default=None,
                        help="device models to mix (default: all five)")
    load_p.add_argument("--write-site", type=Path, default=None,
                        help="also write a site file registering the load devices")
    load_p.set_defaults(func=cmd_load)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``hub-sim``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except (ScenarioError, ValueError, ConnectionError) as exc:
        _err(f"hub-sim: {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
