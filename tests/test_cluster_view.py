"""The fleet view of a cluster hub without a cluster: how rows from other hubs are merged, and
how events from other hubs reach this hub's live streams (scoped like its own, never relayed
again). ``tests/test_cluster.py`` runs the same against a real 3-node NATS cluster."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import anyio

from hub.api import auth
from hub.api.events import EventHub, _stream
from hub.cluster.view import FleetView, Row


def view() -> FleetView:
    """A view with nothing wired (only its rows are used here)."""
    return FleetView("hub-b", 16, cast(Any, None), cast(Any, None), cast(Any, None), 0.5,
                     dict)


def row(node: str | None, seen: int | None, online: bool | None = True,
        tilt: float = 1.0) -> Row:
    """A device row as the view keeps it."""
    return (node, "XS-FL200", "flashing_light", "guoyuan", seen, seen, online, None,
            f'{{"tilt_deg": {tilt}}}')


def test_a_newer_row_replaces_and_an_older_one_does_not() -> None:
    v = view()
    v._merge([("D1", row("hub-a", 200, tilt=5.0))], replace_equal=True)
    v._merge([("D1", row("hub-c", 100, tilt=9.0))], replace_equal=True)  # late, from before
    state, node = v.state("D1") or (None, None)
    assert node == "hub-a" and state is not None and state.values == {"tilt_deg": 5.0}
    v._merge([("D1", row("hub-a", 300, tilt=6.0))], replace_equal=True)
    state, node = v.state("D1") or (None, None)
    assert state is not None and state.values == {"tilt_deg": 6.0} and state.last_seen_ns == 300


def test_a_change_without_a_new_reading_replaces_but_the_database_does_not() -> None:
    v = view()
    v._merge([("D1", row("hub-a", 200, online=True))], replace_equal=True)
    v._merge([("D1", row("hub-a", 200, online=False))], replace_equal=True)  # heartbeat: offline
    assert v.brief()["D1"] == ("guoyuan", "flashing_light", False)
    v._merge([("D1", row(None, 200, online=True))], replace_equal=False)  # an older save
    assert v.brief()["D1"] == ("guoyuan", "flashing_light", False)
    v._merge([("D2", row(None, 50))], replace_equal=False)  # not heard of yet: filled in
    assert sorted(v.ids()) == ["D1", "D2"] and (v.state("D2") or (None, "x"))[1] is None


def test_events_of_other_hubs_are_scoped_like_ours_and_not_relayed_again() -> None:
    relayed: list[tuple[str, dict[str, Any]]] = []

    async def scenario() -> list[dict[str, str]]:
        events = EventHub()
        events.relays.append(lambda event, data: relayed.append((event, data)))
        user = auth.User("gy", "viewer", frozenset({"guoyuan"}))
        shutdown = anyio.Event()
        stream = _stream(events, user, shutdown)
        await stream.__anext__()  # hello
        # from another hub: delivered here, scoped to the caller's sites
        events.deliver("alarm", {"id": "b1", "site": "longtanping", "device_id": "FP-R01"})
        events.deliver("alarm", {"id": "a1", "site": "guoyuan", "device_id": "GY-FL-0001"})
        # this hub's own: delivered and relayed
        events.publish("alarm", {"id": "a2", "site": "guoyuan", "device_id": "GY-FL-0002"})
        got = [await asyncio.wait_for(stream.__anext__(), 5)]
        shutdown.set()
        await stream.aclose()
        return got

    got = asyncio.run(scenario())
    assert got == [{"event": "alarm", "data":
                    '[{"id":"a1","site":"guoyuan","device_id":"GY-FL-0001"},'
                    '{"id":"a2","site":"guoyuan","device_id":"GY-FL-0002"}]'}]
    assert [data["id"] for _e, data in relayed] == ["a2"]  # the others' never go back out


def test_a_resync_reaches_every_stream() -> None:
    async def scenario() -> dict[str, str]:
        events = EventHub()
        stream = _stream(events, auth.User("ops", "viewer", None), anyio.Event())
        await stream.__anext__()  # hello
        events.resync()  # the cluster connection was away: events may be missing
        got = await asyncio.wait_for(stream.__anext__(), 5)
        await stream.aclose()
        return got

    assert asyncio.run(scenario()) == {"event": "resync", "data": "{}"}
