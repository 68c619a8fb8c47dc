"""The hub's pipeline alone, in process: normalize -> state -> rules -> batch -> encode.

    uv run python bench/pipeline_micro.py --messages 100000 [--profile out.txt]

No broker and no InfluxDB: the writer is a stub that calls ``on_durable`` at once, acks go
nowhere. It shows what one pipeline thread costs per message (the CPU the hub needs on top of
paho and the HTTP writes) and is the quick before/after check for hot-path changes.
``cpu_us_per_msg`` is the thread's CPU time per message of each run (``time.thread_time``):
unlike the rate it hardly moves when other work shares the machine. With as many messages as
devices, the first run is every device's first message, the later runs second messages.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import emit, load_messages, machine, mix_models, write_site

from hub.model import InboundMessage
from hub.runtime import Hub
from hub.settings import Settings


class StubWriter:
    """Counts lines; durable at once."""

    def __init__(self) -> None:
        self.lines = 0

    def submit(self, lines: list[bytes], on_durable: Callable[[], None]) -> None:
        self.lines += len(lines)
        on_durable()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--mix", choices=["fleet", "uniform"], default="fleet")
    parser.add_argument("--model", help="one model only, e.g. XS-FL200 (bench/peers.py's load)")
    parser.add_argument("--profile", help="write cProfile stats (cumulative) to this file")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rates = []
    cpu_us: list[float] = []  # this thread's CPU per message: hardly moves under others' load
    with tempfile.TemporaryDirectory(prefix="bench-micro-") as tmp:
        work = Path(tmp)
        models = [args.model] if args.model else mix_models(args.mix)
        write_site(work / "sites", args.devices, models)
        settings = Settings(data_dir=work / "data", sites_dir=work / "sites",
                            mqtt_url="mqtt://127.0.0.1:1")
        hub = Hub(settings)
        stub = StubWriter()
        pipeline = hub.pipeline
        pipeline.writer = stub
        pipeline.ack = lambda token: None
        for r in range(args.repeat):
            batch = load_messages(args.messages, args.devices,
                                  start=time.time() - 86400 + r * 3600, models=models)
            now = time.time_ns()
            inbound = [InboundMessage(t, p, 1, False, now, None) for t, p in batch.messages]
            prof = cProfile.Profile() if args.profile and r == args.repeat - 1 else None
            started = time.perf_counter()
            cpu_started = time.thread_time()
            if prof:
                prof.enable()
            handle = pipeline._handle
            for i, message in enumerate(inbound):
                handle(message)
                if i % 5000 == 4999:
                    pipeline._flush()
                if i % 25000 == 24999:
                    pipeline._tick()
                    pipeline._save_states()
            pipeline._flush()
            if prof:
                prof.disable()
            elapsed = time.perf_counter() - started
            rates.append(args.messages / elapsed)
            cpu_us.append((time.thread_time() - cpu_started) / args.messages * 1e6)
            if prof:
                with open(args.profile, "w") as out:
                    stats = pstats.Stats(prof, stream=out)
                    stats.sort_stats("tottime").print_stats(40)
                    stats.sort_stats("cumulative").print_stats(40)
        hub.states.save()
        hub.rules.stop()
    result: dict[str, Any] = {"messages": args.messages, "mix": args.mix,
                              "rates": [round(x) for x in rates],
                              "best_rate": round(max(rates)), "lines": stub.lines,
                              "cpu_us_per_msg": [round(x, 1) for x in cpu_us],
                              "machine": machine()}
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
