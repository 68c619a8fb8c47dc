"""GET /api/cluster: the members, every partition's owner and its pending messages."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request

from hub.api import auth
from hub.api.scope import policy

router = APIRouter()


@router.get("/api/cluster", dependencies=[Depends(auth.require("viewer", all_sites=True))])
@policy("all_sites")  # every site's partitions: not for a caller limited to some sites
def cluster(request: Request) -> dict[str, Any]:
    """Members (node_id, api, owned), partitions (partition, owner, pending) of the cluster,
    the fleet view's counts (devices, rows and events sent and received), and what this hub's
    catcher of QoS 0 publishes of QoS 1 topics stored and lost."""
    from hub.cluster.intake import ClusterIntake

    intake = request.app.state.hub.mqtt
    if not isinstance(intake, ClusterIntake):
        raise HTTPException(404, "not in cluster mode (HUB_CLUSTER_URL is not set)")
    try:
        view: dict[str, Any] = intake.view()
    except Exception as exc:
        raise HTTPException(503, f"cluster not reachable: {type(exc).__name__}: {exc}") from exc
    fleet = request.app.state.hub.states.peers  # hub.cluster.view: what this hub sent and heard
    if fleet is not None:
        view["view"] = fleet.health()
    if intake.strays is not None:
        view["strays"] = intake.strays.health()
    return view
