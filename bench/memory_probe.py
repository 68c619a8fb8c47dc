"""In-process memory probe: the hub built on N load devices, one reading each, no services.

    uv run python bench/memory_probe.py --devices 100000 [--trace]

Builds ``hub.runtime.Hub`` (embedded stores in a temp dir, nothing connected) on the bench's
load site file, then runs one message per device through normalize -> device state -> rules ->
patrol, the steps the pipeline runs, and prints VmRSS after each stage. ``--trace`` lists the
largest live allocations of the reporting stage (tracemalloc; slow). Patrol scans are never
flushed here, so their ORM rows stay alive (the real hub writes them per batch).
``--sites-only`` measures loading the site file alone.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path

from _common import REPO, load_messages, write_site

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def rss() -> float:
    """VmRSS of this process in MB."""
    return int(Path("/proc/self/status").read_text().split("VmRSS:")[1].split()[0]) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--trace", action="store_true")
    parser.add_argument("--sites-only", action="store_true",
                        help="only load the site file (load_sites): RSS and time")
    args = parser.parse_args()
    from hub.tuning import tune_process

    tune_process()  # as the hub's entry point does
    import uvicorn  # noqa: F401  (the imports of ``hub run``)

    import hub.api.app
    import hub.runtime
    from hub.model import InboundMessage, Reading
    from hub.settings import Settings

    print(f"imports {rss():.0f} MB", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="memory-probe-"))
    write_site(tmp / "sites", args.devices, None)
    if args.sites_only:
        from hub.sites import load_sites

        gc.collect()
        before, started = rss(), time.monotonic()
        registry = load_sites(tmp / "sites")
        gc.collect()
        print(f"site file of {len(registry.devices)} devices loaded: +{rss() - before:.0f} MB "
              f"in {time.monotonic() - started:.1f} s")
        return 0
    messages = load_messages(args.devices, args.devices).messages
    base = rss()
    print(f"messages built (not the hub's) {base:.0f} MB", flush=True)
    started = time.monotonic()
    built_hub = hub.runtime.Hub(Settings(sites_dir=tmp / "sites", data_dir=tmp / "data"))
    gc.collect()
    built = rss()
    print(f"hub built {built:.0f} MB (+{built - base:.0f}) in {time.monotonic() - started:.1f} s")
    if args.trace:
        tracemalloc.start(3)
    now = time.time_ns()
    for topic, payload in messages:
        result = built_hub.normalizer.process(InboundMessage(topic, payload, 1, False, now))
        if not isinstance(result, Reading):
            print("refused", result)
            return 1
        for status in built_hub.states.observe(result):
            built_hub.rules.on_reading(status)
        built_hub.rules.on_reading(result)
        built_hub.patrol.on_reading(result)
    gc.collect()
    after = rss()
    print(f"all reported {after:.0f} MB (+{after - built:.0f} over built), "
          f"seen {built_hub.states.counts()['seen']}, rule states {len(built_hub.rules.devices)}")
    states = list(built_hub.rules.devices.values())
    print("rule states with a written slot:",
          sum(1 for d in states if isinstance(d.slots, list)), "/", len(states),
          "; values per rule state:", dict(Counter(len(d.values) for d in states)))
    if args.trace:
        snapshot = tracemalloc.take_snapshot()
        stats = snapshot.statistics("lineno")
        print(f"{sum(s.size for s in stats) / 1e6:.1f} MB traced in the reporting stage")
        for stat in stats[:20]:
            print(stat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
