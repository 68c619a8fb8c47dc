"""``hub demo``: the three seed townships living on this machine, with nothing installed.

An in-process broker (unless HUB_MQTT_URL is set), the embedded stores (unless HUB_INFLUX_URL /
HUB_DATABASE_URL are set), the simulators of every device in accelerated time with a scripted
incident timeline, and the API with the duty console.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hub.intake.embedded_broker import EmbeddedBroker
from hub.settings import PACKAGE_ROOT, Settings

log = logging.getLogger(__name__)

DEMO_TOKENS = "admin:admin:demo-admin,duty:officer:demo-officer,screen:viewer:demo-viewer"
DEMO_SCENARIO = PACKAGE_ROOT / "simulators" / "scenarios" / "demo_incidents.yaml"
DEMO_NOTIFY = PACKAGE_ROOT / "deploy" / "notify" / "demo.yaml"
CATCH_UP = timedelta(hours=6)


WATCH_FOR = {  # fault of the scenario -> what the console shows
    "knock_over": "a flashing light knocked over: critical alarm, red on the map",
    "smoke": "smoke at a micro fire station: critical alarm, the station turns not ready",
    "skip_checkpoint": "a checkpoint skipped on a patrol round: it ends up missed",
    "hazard_report": "a hazard reported by a patroller (its photo follows from the phone "
                     "app): dispatch, rectify, verify it",
    "restore": "back to normal: the alarm clears; acknowledge it to close it",
    "garbage": "a reader sends a NUL and 300 characters as patroller: refused with its "
               "reason in /api/refusals, the scans around it kept",
}
ROLE_NOTE = {"admin": "everything", "officer": "acknowledge, clear, comment, move hazards",
             "viewer": "read only"}
# People sign in with accounts: one per role for the whole county and a duty officer per
# township (created at the first start; passwords are the demo's, printed in the banner).
DEMO_ACCOUNTS = (("county-admin", "admin", None, "demo-county-admin"),
                 ("county-duty", "officer", None, "demo-county-duty"),
                 ("screen", "viewer", None, "demo-screen"))


def demo_accounts(site_ids: list[str]) -> list[tuple[str, str, list[str] | None, str]]:
    """The demo's accounts: county-wide ones and ``{site}-duty`` for every site."""
    accounts: list[tuple[str, str, list[str] | None, str]] = list(DEMO_ACCOUNTS)
    accounts += [(f"{site}-duty", "officer", [site], f"demo-{site}-duty") for site in site_ids]
    return accounts


def create_demo_accounts(hub: Any) -> list[tuple[str, str, list[str] | None, str]]:
    """Make the demo accounts that do not exist yet in the hub's state store."""
    from hub.accounts.store import AccountStore

    store = hub.extensions.get("accounts")
    if not isinstance(store, AccountStore):
        store = hub.extensions["accounts"] = AccountStore(
            hub.engine, session_ttl_s=hub.settings.session_ttl_s)
    accounts = demo_accounts(sorted(hub.sites.sites))
    for name, role, sites, password in accounts:
        if store.get(name) is None:
            store.add(name, role, password, frozenset(sites) if sites else None)
    return accounts


def _banner(settings: Settings, broker: EmbeddedBroker | None, speed: float,
            scenario: Any = None, standin: Any = None,
            accounts: list[tuple[str, str, list[str] | None, str]] | None = None) -> str:
    base = f"http://{settings.api_host}:{settings.api_port}"
    people = "\n".join(
        f"    {name:<18} {password:<24} {role:<8} {','.join(sites) if sites else 'all sites'}"
        for name, role, sites, password in accounts or [])
    tokens = "\n".join(
        f"    {token:<14} {role:<8} {name:<7} {ROLE_NOTE.get(role, '')}"
        for name, role, token in (t.split(":") for t in settings.api_tokens.split(",") if t)
    )
    broker_line = f"{broker.url} (embedded amqtt)" if broker else settings.mqtt_url
    data_dir = settings.data_dir.resolve()
    store_line = settings.influx_url or f"{data_dir / 'telemetry.sqlite'} (embedded)"
    notify_line = (f"{settings.notify_file}" if settings.notify_file else "off")
    if standin is not None:
        notify_line += (f"\n                to the STAND-IN robots at {standin.url} (no account "
                        f"needed): console {base}/#duty")
    steps = getattr(scenario, "timeline", [])
    watch = "\n".join(
        f"    {f'~{step.at / speed:.0f} s':<7} {step.device:<11} "
        f"{WATCH_FOR.get(step.fault, step.fault)}"
        for step in steps
    ) or "    a light knocked over, a smoke alarm, a missed checkpoint, a hazard report"
    return f"""
  Safety hub demo: Guoyuan (flashing lights), Fuping (cloud patrol), Longtoupu (fire stations)
  ----------------------------------------------------------------------------------------
  Duty console  {base}/   sign in with an account below (a township's duty officer sees
                only that township; county-admin also onboards devices at {base}/devices)
  API           {base}/api/health   {base}/api/devices   {base}/api/alarms
  Live events   {base}/api/events   Metrics {base}/metrics
  Reports       {base}/reports (monthly and quarterly hazard reports: PDF, XLSX, HTML)
  MQTT broker   {broker_line}
  Telemetry     {store_line}
  Notifications {notify_line}
  Accounts (console sign-in: user name, password, role, sites):
{people}
  API tokens (scripts: Authorization: Bearer <token>):
{tokens}
  Simulated time runs {speed:g}x from {CATCH_UP.total_seconds() / 3600:g} h ago until it meets
  the clock. Watch for (live in the console, no reload):
{watch}
  Ctrl-C stops; data stays in {data_dir}.
"""


def run_demo(settings: Settings, speed: float = 60.0, duration_s: float | None = None) -> int:
    """Run the demo until Ctrl-C (or ``duration_s``); return the exit code."""
    from hub.cli import _serve
    from hub.runtime import Hub
    from simulators.fleet import Fleet
    from simulators.publisher import run as publish_fleet
    from simulators.scenario import load_scenario

    broker: EmbeddedBroker | None = None
    overrides: dict[str, Any] = {}
    if "mqtt_url" not in settings.model_fields_set:
        broker = EmbeddedBroker()
        broker.start()
        overrides.update(mqtt_url=broker.url, mqtt_protocol="3.1.1")
    if "clock" not in settings.model_fields_set:
        overrides["clock"] = "device"  # timers follow the simulated devices' time
    if not settings.api_tokens:
        overrides["api_tokens"] = DEMO_TOKENS
    standin = None
    if "notify_file" not in settings.model_fields_set and DEMO_NOTIFY.exists():
        from hub.notify.standin import DEMO_ENV, StandInRobots

        standin = StandInRobots(secrets=DEMO_ENV).start()
        for name, value in DEMO_ENV.items():
            os.environ.setdefault(name, value)
        os.environ["DEMO_ROBOTS_URL"] = standin.url  # this run's stand-in
        overrides["notify_file"] = DEMO_NOTIFY
    settings = settings.model_copy(update=overrides)
    hub = Hub(settings)
    if standin is not None:
        hub.extensions["notify_standin"] = standin
    accounts = create_demo_accounts(hub)
    hub.start(wait_connected_s=15)

    start = datetime.now(UTC).replace(microsecond=0) - CATCH_UP
    scenario = load_scenario(DEMO_SCENARIO)
    fleet = Fleet(Path(settings.sites_dir), seed=1, start=start, scenario=scenario)
    stop = threading.Event()

    def simulate() -> None:
        try:
            first = settings.mqtt_url.split(",")[0].strip()  # the simulators use one broker
            summary = publish_fleet(fleet, first, speed=speed, stop_event=stop,
                                    progress=lambda line: log.info("simulators: %s", line),
                                    progress_every_s=30)
            log.info("simulators stopped: %s", "; ".join(summary.lines()))
        except Exception:
            log.exception("simulators failed")

    simulator = threading.Thread(target=simulate, name="simulators", daemon=True)
    simulator.start()
    phone = threading.Thread(target=_phone_app, args=(settings, hub, stop), name="phone-app",
                             daemon=True)
    phone.start()
    print(_banner(settings, broker, speed, scenario, standin, accounts), flush=True)
    timer = None
    if duration_s is not None:
        timer = threading.Timer(duration_s, _interrupt_main)
        timer.daemon = True  # a Ctrl-C before the end must not wait for it
        timer.start()
    try:
        _serve(settings, hub)  # blocks until Ctrl-C; stops the hub
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled: the normal way out
        pass
    finally:
        if timer is not None:
            timer.cancel()
        stop.set()
        simulator.join(10)
        if broker is not None:
            broker.stop()
        if standin is not None:
            standin.stop()
    print(f"  demo stopped; data kept in {settings.data_dir.resolve()}", flush=True)
    return 0


def _phone_app(settings: Settings, hub: Any, stop: threading.Event) -> None:
    """The inspectors' phone app: uploads the photos readers' hazards name (simulators)."""
    from simulators.photos import PhoneApp

    writer = next((t.split(":")[2] for t in settings.api_tokens.split(",")
                   if t.count(":") >= 2 and t.split(":")[1] in ("officer", "admin")), None)
    if writer is None:
        return
    app = PhoneApp(f"http://{settings.api_host}:{settings.api_port}", writer)
    places = {c.id: (c.lat, c.lon) for site in hub.sites.sites.values()
              for c in site.checkpoints}
    while not stop.wait(5.0):
        try:
            app.sync(places)
        except Exception as exc:  # the API not up yet, a restart: try again next round
            log.debug("phone app: %s", exc)


def _interrupt_main() -> None:
    import _thread

    _thread.interrupt_main()
    time.sleep(0)
