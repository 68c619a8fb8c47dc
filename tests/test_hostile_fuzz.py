"""The abuse suite (short form): hostile device strings through every profile route into both
state stores; every message is stored or refused with a reason, and its neighbours are intact.

The routes come from ``device_profiles/*.yaml`` (the hub's own router); each route's base
message is a golden case it accepts. Every string a device controls (each JSON or CSV string
value, and the device id in the topic and payload) is replaced by strings of every length and
class: long, NUL, control characters, invalid UTF-8, bidi and zero-width marks, line breaks,
quotes, a trailing backslash. Each hostile message is sent between two good ones through the
real pipeline (normalize, state, rules, patrol, events) with a writer that is durable at once,
and the batch is flushed to SQLite and to PostgreSQL (``state_url``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from hub.ingest.pipeline import HOOK_ERRORS
from hub.ingest.refusals import RefusalRow
from hub.ingest.router import TopicRoute
from hub.model import InboundMessage, Reading, Refusal
from hub.runtime import Hub
from hub.setaside.rows import SET_ASIDE
from hub.settings import Settings
from hub.state import DeviceRow

GOLDEN = Path(__file__).parent / "golden"
RAW = "\u0007RAW\u0007"  # stands for invalid UTF-8 bytes until the payload is encoded
LONG = [65, 100, 129, 257, 1100, 5000]
FIXED: list[str | bytes] = [
    "", "\x00", "a\x00b", "\x1b[31mred", "\x07", "\r", "tab\there", "new\nline", "\x7f", "\x85",
    "\u202egnp.exe", "abc\u200f", "\u200bzero", "\ufeffbom", "\u2066iso\u2069", '"quote"',
    "ends\\", "张伟" * 40, "😀" * 70, "=cmd|' /C calc'!A0",
    *("x" * n for n in LONG),
    b"\xff\xfe", b"a\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
]
HOSTILE = st.one_of(
    st.sampled_from(FIXED),
    st.text(max_size=200),
    st.text(alphabet=st.characters(codec="utf-8", categories=["Cc", "Cf", "Zs", "Zl", "Zp"]),
            max_size=40),
    st.binary(max_size=40),
)


class DurableAtOnce:
    """The pipeline's writer: every batch is durable at once (lines kept for the test)."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def submit(self, lines: list[bytes], on_durable: Callable[[], None]) -> None:
        """Keep the lines, then run what the pipeline does once a batch is durable."""
        self.lines += lines
        on_durable()


@dataclass
class Base:
    """A route and a message of it that the hub accepts."""

    route: TopicRoute
    topic: str
    device_id: str
    payload: bytes


def _received() -> int:
    return int(datetime.fromisoformat("2026-11-28T00:05:00+00:00").timestamp()) * 10**9


def _bases(hub: Hub) -> list[Base]:
    """One accepted golden message per profile route (status routes: the online word)."""
    router = hub.normalizer.router
    found: dict[int, Base] = {}
    for case in sorted(GOLDEN.glob("*/*/case.json")):
        topic = json.loads(case.read_text())["topic"]
        matched = router.match(topic)
        if matched is None or id(matched[0]) in found:
            continue
        payload = (case.parent / "payload").read_bytes()
        result = hub.normalizer.process(InboundMessage(topic, payload, 1, False, _received()))
        if isinstance(result, Reading) and result.site != "unassigned":
            found[id(matched[0])] = Base(matched[0], topic, matched[1], payload)
    for route in router.routes:
        if id(route) in found or route.spec.decoder != "status":
            continue
        sibling = next((b for b in found.values() if b.route.profile is route.profile), None)
        assert sibling is not None, f"{route.profile.model}: no golden case to borrow an id from"
        word = route.spec.status.online[0] if route.spec.status else "online"
        topic = route.spec.topic.replace("{device_id}", sibling.device_id)
        found[id(route)] = Base(route, topic, sibling.device_id, word.encode())
    missing = [f"{r.profile.model} {r.message_name}" for r in router.routes if id(r) not in found]
    assert not missing, f"routes without an accepted golden case: {missing}"
    return [found[id(r)] for r in router.routes]


def _leaves(base: Base) -> list[str]:
    """The places a device controls text: ``topic``, JSON string paths, CSV columns."""
    places = ["topic"]
    spec = base.route.spec
    if spec.decoder == "json":
        def walk(value: Any, path: str) -> None:
            if isinstance(value, str):
                places.append(path)
            elif isinstance(value, dict):
                for key, item in value.items():
                    walk(item, f"{path}.{key}" if path else key)
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    walk(item, f"{path}[{i}]")
        walk(json.loads(base.payload), "")
    elif spec.decoder == "csv":
        places += [f"csv{i}" for i in range(len(base.payload.decode().split(",")))]
    else:
        places.append("word")
    return places


def _set(value: Any, path: str, text: str) -> Any:
    if isinstance(value, dict):
        head, _, rest = path.partition(".")
        key, _, index = head.partition("[")
        if index and not rest:
            value[key][int(index.rstrip("]"))] = text
        elif index:
            _set(value[key][int(index.rstrip("]"))], rest, text)
        elif rest:
            _set(value[key], rest, text)
        else:
            value[key] = text
    return value


def _hostile(base: Base, place: str, value: str | bytes) -> InboundMessage:
    """The base message with one place replaced by ``value`` (bytes: raw, maybe not UTF-8)."""
    text = RAW if isinstance(value, bytes) else value
    topic, payload = base.topic, base.payload
    if place == "topic":
        clean = text.replace("/", "_").replace("+", "_").replace("#", "_") or "_"
        topic = base.route.spec.topic.replace("{device_id}", clean)
        payload = payload.replace(base.device_id.encode(), clean.encode("utf-8", "surrogatepass"))
    elif place == "word":
        payload = text.encode("utf-8", "surrogatepass")
    elif place.startswith("csv"):
        columns = payload.decode().split(",")
        columns[int(place[3:])] = text
        payload = ",".join(columns).encode("utf-8", "surrogatepass")
    else:
        body = _set(json.loads(payload), place, text)
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    if isinstance(value, bytes):
        payload = payload.replace(RAW.encode(), value)
        topic = topic.replace(RAW, value.decode("utf-8", "backslashreplace"))
    return InboundMessage(topic, payload, 1, False, _received())


class Rig:
    """A hub that is never started: its pipeline driven by the test, on one state store."""

    def __init__(self, tmp: Path, url: str) -> None:
        self.hub = Hub(Settings(data_dir=tmp / "data", sites_dir=GOLDEN / "_sites",
                                database_url=url, mqtt_url="mqtt://127.0.0.1:9"))
        self.writer = DurableAtOnce()
        self.hub.pipeline.writer = self.writer
        self.hub.pipeline.ack = lambda _tokens: None
        self.bases = _bases(self.hub)

    def refusals(self) -> list[tuple[str, str]]:
        with self.hub.sessions() as session:
            return [(r.reason, r.topic) for r in session.scalars(select(RefusalRow))]

    def device_rows(self, device_id: str) -> int:
        with self.hub.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(DeviceRow).where(
                DeviceRow.device_id == device_id)) or 0)

    def check_batch(self, cases: list[tuple[Base, str, str | bytes]]) -> None:
        """Each case between two good messages; then every one stored or refused, none lost."""
        faults_before = _faults()
        refused_before = len(self.refusals())
        outcomes: list[Reading | Refusal] = []
        normalizer = self.hub.normalizer
        process = normalizer.process

        def recorded(message: InboundMessage) -> Reading | Refusal:
            outcomes.append(process(message))
            return outcomes[-1]

        normalizer.process = recorded  # type: ignore[method-assign]
        try:
            for base, place, value in cases:
                good = InboundMessage(base.topic, base.payload, 1, False, _received())
                for message in (good, _hostile(base, place, value), good):
                    self.hub.pipeline._handle(message)
            self.hub.pipeline._flush()
            self.hub.states.save(wait=True)
        finally:
            normalizer.process = process  # type: ignore[method-assign]
        goods, hostiles = outcomes[0::3] + outcomes[2::3], outcomes[1::3]
        assert all(isinstance(r, Reading) for r in goods), "a neighbour was refused"
        refused = [r for r in hostiles if isinstance(r, Refusal)]
        assert all(r.reason and r.reason != "internal" for r in refused), refused
        stored = self.refusals()[refused_before:]
        assert len(stored) == len(refused), (len(stored), len(refused))  # each one in the store
        assert _faults() == faults_before, "a row was set aside or a hook failed"
        for base, _place, _value in cases:
            assert self.device_rows(base.device_id) == 1, base.device_id  # neighbours stored

    def close(self) -> None:
        self.hub.alarms.close()
        self.hub.engine.dispose()


def _faults() -> float:
    total = 0.0
    for metric in (SET_ASIDE, HOOK_ERRORS):
        for family in metric.collect():
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total


@pytest.fixture
def rig(tmp_path: Path, state_url: str) -> Iterator[Rig]:
    made = Rig(tmp_path, state_url)
    yield made
    made.close()


def test_every_route_every_place_every_class(rig: Rig) -> None:
    cases = [(base, place, value) for base in rig.bases for place in _leaves(base)
             for value in FIXED]
    for start in range(0, len(cases), 200):
        rig.check_batch(cases[start:start + 200])


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_random_hostile_strings(rig: Rig, data: st.DataObject) -> None:
    base = data.draw(st.sampled_from(rig.bases))
    place = data.draw(st.sampled_from(_leaves(base)))
    rig.check_batch([(base, place, data.draw(HOSTILE))])
