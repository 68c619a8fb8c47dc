"""Coverage-guided fuzzing (atheris) of every decoder and of the line-protocol parser.

Long form, by hand (atheris is in the ``fuzz`` dependency group, not in CI)::

    nice -n 19 uv run --group fuzz python bench/fuzz_decoders.py --seconds 600 --json

Targets, picked by the first input byte:

- every route of every profile in ``device_profiles/``: the next byte is the length of the
  device id, then the device id (UTF-8), the rest is the payload, run through
  ``Normalizer.process``;
- ``parse_line`` (lines the spool replays and the embedded store parses) and ``series_key``:
  the rest of the input is the line.

Invariants: those of ``tests/support/normalize_checks.py`` (``check_outcome``: nothing
escapes ``process``, a refusal has a known reason, never ``internal``, and a detail; a reading
has points with fields and finite floats), and every point of a reading encodes with
``encode_point`` and parses back to itself. A line ``parse_line`` accepts either is refused by
``encode_point`` with ``ValueError`` or round-trips to the same point (tags sorted, empty tag
values dropped). The corpus is seeded with ``tests/golden`` and the simulators' messages (the
built-in scenarios, garbage faults included); it lives in a temp dir unless ``--corpus`` is
given. A crash keeps the work dir and its ``crash-*`` file; replay one with ``--reproduce``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

WORKER = "--worker"
MAX_LEN = 4096


def encode_input(route_index: int, device_id: str, payload: bytes) -> bytes:
    """The fuzz input that sends ``payload`` from ``device_id`` on route ``route_index``."""
    raw_id = device_id.encode()[:255]
    return bytes([route_index, len(raw_id)]) + raw_id + payload


def make_target() -> Callable[[bytes], None]:
    """Import the hub (instrumented when atheris is loaded) and return the fuzz target."""
    if "atheris" in sys.modules:
        import atheris

        # No enabled_hooks: the "str" hook turns endswith("\\") into an unescaped regex (an
        # re.error inside the target) and "RegEx" fails on other libraries' verbose patterns;
        # comparisons (==, in) are traced anyway, and the seeds hold valid device ids.
        with atheris.instrument_imports(include=["hub"]):
            import hub.ingest.lineproto
            import hub.ingest.normalize  # noqa: F401
    from hub.ingest.lineproto import encode_point, parse_line, series_key
    from hub.model import InboundMessage, Point, Reading
    from tests.support.normalize_checks import NORMALIZER, NOW, check_outcome

    routes = NORMALIZER.router.routes
    line_target = len(routes)

    def canonical(p: Point) -> Point:
        # what encode_point writes: tags sorted by key, empty tag values left out
        return Point(p.measurement, tuple(sorted(t for t in p.tags if t[1])), p.fields, p.time_ns)

    def round_trip(p: Point, line: bytes) -> None:
        assert b"\n" not in line, line
        assert line.startswith(series_key(line) + b" "), line
        assert parse_line(line) == canonical(p), (p, line)

    def check_line(line: bytes) -> None:
        try:
            key = series_key(line)
        except ValueError:
            pass
        else:
            assert key and line.startswith(key)
        try:
            point = parse_line(line)  # UnicodeDecodeError is a ValueError too
        except ValueError:
            return
        try:
            encoded = encode_point(point)
        except ValueError:
            return  # parsable but not storable (an int outside int64, a NUL in a key...)
        round_trip(point, encoded)

    def one_input(data: bytes) -> None:
        if not data:
            return
        target = data[0] % (line_target + 1)
        if target == line_target:
            check_line(data[1:])
            return
        n = data[1] if len(data) > 1 else 0
        device_id = data[2 : 2 + n].decode("utf-8", "replace")
        topic = routes[target].spec.topic.replace("{device_id}", device_id)
        result = NORMALIZER.process(InboundMessage(topic, data[2 + n :], 1, False, NOW))
        check_outcome(result)
        if isinstance(result, Reading):
            for point in result.points:
                round_trip(point, encode_point(point))

    return one_input


# ---------------------------------------------------------------- seed corpus


def _golden_messages() -> Iterator[tuple[str, bytes]]:
    for folder in sorted((REPO / "tests" / "golden").glob("*/*")):
        if (folder / "case.json").exists():
            topic = json.loads((folder / "case.json").read_text())["topic"]
            yield topic, (folder / "payload").read_bytes()


def _simulated_messages(per_kind: int = 4) -> Iterator[tuple[str, bytes]]:
    """A few messages of every (topic shape, fault) the built-in scenarios produce."""
    from simulators.fleet import Fleet
    from simulators.load import LOAD_MODELS, _stamp, template
    from simulators.scenario import builtin_scenarios

    for i, model in enumerate(LOAD_MODELS):
        topic, before, after, style = template(model, f"LOAD-{i}", i)
        if model == "HN-BSD3":
            topic, before, after, style = template(model, f"8690000000000{i:02d}", i)
        yield topic, before + _stamp(style, 1_764_316_800) + after
    start = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)  # fixed: the same seeds every run
    for scenario in builtin_scenarios():
        fleet = Fleet(REPO / "sites", seed=0, start=start, scenario=scenario)
        seen: dict[tuple[str, str | None, str | None], int] = {}
        for msg in fleet.run_for(min(scenario.duration_s, 1800)):
            kind = (msg.topic.replace(msg.device, "{device_id}"), msg.action, msg.fault)
            if seen.get(kind, 0) < per_kind:
                seen[kind] = seen.get(kind, 0) + 1
                yield msg.topic, msg.payload


def write_seeds(seed_dir: Path) -> int:
    """Write the seed corpus (golden cases, simulator messages, their encoded lines)."""
    from hub.ingest.lineproto import encode_point
    from hub.ingest.normalize import Normalizer
    from hub.model import InboundMessage, Reading
    from hub.profiles.loader import load_profiles
    from hub.sites import load_sites

    normalizer = Normalizer(load_profiles(REPO / "device_profiles"), load_sites(REPO / "sites"))
    index = {id(route): i for i, route in enumerate(normalizer.router.routes)}
    line_target = len(index)
    seeds: set[bytes] = set()
    for topic, payload in [*_golden_messages(), *_simulated_messages()]:
        matched = normalizer.router.match(topic)
        if matched is None:
            continue
        route, device_id = matched
        seed = encode_input(index[id(route)], device_id, payload)
        if len(seed) > MAX_LEN:
            continue  # the oversized garbage: beyond -max_len, libFuzzer would cut it anyway
        seeds.add(seed)
        result = normalizer.process(InboundMessage(topic, payload, 1, False, time.time_ns()))
        if isinstance(result, Reading):
            seeds.update(bytes([line_target]) + encode_point(p) for p in result.points)
    for lp in (REPO / "tests" / "golden").glob("*/*/expected.lp"):
        for line in lp.read_bytes().splitlines():
            if line and not line.startswith(b"#"):
                seeds.add(bytes([line_target]) + line)
    seed_dir.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        (seed_dir / f"seed-{hashlib.sha1(seed).hexdigest()}").write_bytes(seed)
    return len(seeds)


# ---------------------------------------------------------------- the run


_STAT = re.compile(r"^stat::(\w+):\s+(\d+)", re.MULTILINE)
_STATUS = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/", re.MULTILINE)


def run(seconds: float, corpus: Path | None, max_len: int, *, script: Path | None = None,
        seed_writer: Callable[[Path], int] | None = None, name: str = "decoders") -> dict[str, Any]:
    """Seed, run the fuzzer in a child process for ``seconds``, return its figures.

    ``script``, ``seed_writer`` and ``name``: another harness's (``bench/fuzz_mqtt.py``).
    """
    from _common import log

    script = script or Path(__file__).resolve()
    work = Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-"))
    corpus_dir = corpus or work / "corpus"
    corpus_dir.mkdir(parents=True, exist_ok=True)
    artifacts = work / "artifacts"
    artifacts.mkdir()
    seeds = (seed_writer or write_seeds)(work / "seeds")
    fuzz_log = work / "fuzz.log"
    log(f"{seeds} seeds; fuzzing {seconds:.0f} s; corpus {corpus_dir}; log {fuzz_log}")
    command = [
        sys.executable, str(script), WORKER,
        str(corpus_dir), str(work / "seeds"),
        f"-max_total_time={int(seconds)}", f"-max_len={max_len}", "-timeout=30",
        "-print_final_stats=1", f"-artifact_prefix={artifacts}/",
    ]
    started = time.monotonic()
    with fuzz_log.open("wb") as out:
        rc = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    wall = time.monotonic() - started
    text = fuzz_log.read_text(errors="replace")
    stats = {k: int(v) for k, v in _STAT.findall(text)}
    status = _STATUS.findall(text)
    crashes = sorted(p.name for p in artifacts.iterdir())
    executions = stats.get("number_of_executed_units", int(status[-1][0]) if status else 0)
    result: dict[str, Any] = {
        "seconds": int(seconds),
        "executions": executions,
        # libFuzzer's own average, or ours (it reports 0 for a run shorter than a second)
        "exec_per_s": stats.get("average_exec_per_sec") or round(executions / wall),
        "corpus": int(status[-1][3]) if status else None,
        "seeds": seeds,
        "new_units": stats.get("new_units_added"),
        "coverage_edges": int(status[-1][1]) if status else None,
        "features": int(status[-1][2]) if status else None,
        "crashes": len(crashes),
        "peak_rss_mb": stats.get("peak_rss_mb"),
        "exit_code": rc,
    }
    if crashes or rc != 0 or not stats:
        tail = "\n".join(text.splitlines()[-60:])
        log(f"fuzzer exit {rc}, artifacts {crashes}; work dir kept: {work}\n{tail}")
        result["work_dir"] = str(work)
        for crash in crashes:
            log(f"replay: uv run --group fuzz python bench/{script.name} "
                f"--reproduce {artifacts / crash}")
    else:
        shutil.rmtree(work)
    return result


def worker(argv: list[str], target_maker: Callable[[], Callable[[bytes], None]] | None = None,
           ) -> None:
    """The child: atheris over the target with libFuzzer's arguments."""
    import atheris

    target = (target_maker or make_target)()
    atheris.Setup(argv, target)
    atheris.Fuzz()


def fuzz_main(target_maker: Callable[[], Callable[[bytes], None]], script: Path,
              seed_writer: Callable[[Path], int] | None, name: str, max_len: int) -> int:
    """The command line of a fuzz harness: run for --seconds, or --reproduce one input."""
    if len(sys.argv) > 1 and sys.argv[1] == WORKER:
        worker([sys.argv[0], *sys.argv[2:]], target_maker)
        return 0
    parser = argparse.ArgumentParser(description=(sys.modules["__main__"].__doc__ or name)
                                     .split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="length of the run")
    parser.add_argument("--corpus", type=Path, default=None,
                        help="keep the corpus here (default: a temp dir, removed after)")
    parser.add_argument("--max-len", type=int, default=max_len, help="longest input, bytes")
    parser.add_argument("--reproduce", type=Path, default=None,
                        help="run one input (a crash-* file) through the target and stop")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.reproduce is not None:
        target_maker()(args.reproduce.read_bytes())
        print("no failure")
        return 0
    from _common import emit, machine

    result = run(args.seconds, args.corpus, args.max_len, script=script,
                 seed_writer=seed_writer, name=name)
    command = " ".join(["python", f"bench/{script.name}", *sys.argv[1:]])
    emit({**result, "command": command, "machine": machine()}, args.json)
    return 1 if result["crashes"] or result["exit_code"] != 0 else 0


def main() -> int:
    return fuzz_main(make_target, Path(__file__).resolve(), None, "decoders", MAX_LEN)


if __name__ == "__main__":
    sys.exit(main())
