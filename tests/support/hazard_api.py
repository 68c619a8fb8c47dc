"""The patrol router over a HazardRig with a file evidence store, and test photos."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from hub.api import auth
from hub.api.patrol import router
from hub.evidence.service import EvidenceService
from hub.evidence.store import FileEvidenceStore
from tests.support.hazard_rig import HazardRig

TOKENS = "ops:officer:t-ops,li:officer:t-li,wall:viewer:t-wall"
OPS = {"Authorization": "Bearer t-ops"}
LI = {"Authorization": "Bearer t-li"}
WALL = {"Authorization": "Bearer t-wall"}
LIMIT = 200_000


def photo(colour: tuple[int, int, int] = (200, 30, 30), fmt: str = "JPEG",
          size: tuple[int, int] = (800, 600)) -> bytes:
    """A photo with GPS, a time taken, and EXIF that must not be served (maker, artist)."""
    exif = Image.Exif()
    exif[0x010F] = "Huawei"
    exif[0x013B] = "Zhang San"
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (29.0, 3.0, 7.2), 3: "E", 4: (111.0, 41.0, 36.6)})
    exif.get_ifd(0x8769)[0x9003] = "2026:11:20 08:04:40"
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, fmt, exif=exif.tobytes())
    return buffer.getvalue()


class Api:
    """The patrol router over a HazardRig and a file evidence store."""

    def __init__(self, rig: HazardRig, tmp: Path) -> None:
        self.rig = rig
        self.root = tmp / "evidence"
        self.evidence = EvidenceService(FileEvidenceStore(self.root), rig.patrol.sessions,
                                        rig.engine, LIMIT)
        app = FastAPI()
        app.include_router(router)
        app.state.hub = SimpleNamespace(patrol=rig.patrol, evidence=self.evidence)
        auth.install(app.state, TOKENS)
        self.client = TestClient(app)

    def get(self, path: str, headers: dict[str, str] = WALL, **params: Any) -> Any:
        """GET with query parameters."""
        return self.client.get(path, headers=headers, params=params)

    def upload(self, hazard_id: str, data: bytes, name: str = "x.jpg", kind: str = "before",
               headers: dict[str, str] = OPS) -> Any:
        """POST a file as the hazard's evidence."""
        return self.client.post(f"/api/hazards/{hazard_id}/evidence", headers=headers,
                                files={"file": (name, data, "image/jpeg")},
                                data={"kind": kind})

    def post(self, path: str, body: dict[str, Any], headers: dict[str, str] = OPS) -> Any:
        """POST JSON."""
        return self.client.post(path, json=body, headers=headers)

    def files(self) -> list[Path]:
        """The files of the evidence store."""
        return sorted(p for p in self.root.rglob("*") if p.is_file())


def scene(caption: str, hue: tuple[int, int, int], seed: int = 0) -> bytes:
    """A JPEG that looks like a photo in a report: a gradient, a doorway, boxes, a caption."""
    from PIL import ImageDraw

    width, height = 640, 480
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for y in range(height):
        shade = y / height
        draw.line([(0, y), (width, y)], fill=tuple(int(c * (0.55 + 0.45 * shade)) for c in hue))
    draw.rectangle([250, 120, 390, 440], fill=(70, 60, 50), outline=(30, 30, 30), width=4)
    for i in range(seed % 4 + 2):
        x = 60 + i * 45
        draw.rectangle([x, 330 - i * 20, x + 80, 440], fill=(150 + 20 * i, 110, 60),
                       outline=(60, 40, 20), width=3)
    draw.rectangle([0, 440, width, height], fill=(40, 40, 40))
    draw.text((12, 450), caption, fill=(255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def simulate_month(api: Api) -> dict[str, str]:
    """October and November 2026 of Fuping's hazards, with photos; the clock ends on Dec 1.

    Returns the hazard ids by label (O1, O2 in October; N1..N5 in November: N1 and N2 are
    major with photos; N2, N4 (reopened) and N5 end up supervised).
    """
    from datetime import date

    from tests.support.hazard_rig import local

    rig, hazards = api.rig, api.rig.patrol.hazards
    ids: dict[str, str] = {}

    def at(month: int, day: int, hhmm: str) -> Any:
        return local(date(2026, month, day), hhmm)

    def report(label: str, when: Any, category: str, grade: str, reader: str, tag: str,
               patroller: str, note: str) -> str:
        before = {h["id"] for h in hazards.search()}
        rig.hazard(when, reader=reader, tag=tag, patroller=patroller, category=category,
                   grade=grade, note=note)
        ids[label] = next(h["id"] for h in hazards.search() if h["id"] not in before)
        return ids[label]

    def step(when: Any) -> None:
        rig.tick(when)

    cp026, cp037, cp013 = "04D2216EE729C5", "0446BE6711F4C3", "0430502138E6F0"
    o1 = report("O1", at(10, 15, "09:00"), "fire_exit_blocked", "general", "FP-R03", cp026,
                "FP-P017", "影院安全出口堆放杂物 cinema exit blocked")
    hazards.act(o1, "dispatch", "ops", department="fp-fire")
    step(at(10, 15, "15:00"))
    hazards.act(o1, "rectify", "li", note="杂物已清理")
    hazards.act(o1, "verify", "ops", note="复查合格")
    o2 = report("O2", at(10, 20, "10:00"), "wiring_exposed", "general", "FP-R04", cp037,
                "FP-P019", "配电房电线私拉乱接")
    hazards.act(o2, "dispatch", "ops", department="fp-property")

    n1 = report("N1", at(11, 3, "09:00"), "illegal_gas_storage", "major", "FP-R02", cp013,
                "FP-P007", "餐馆液化气钢瓶间存放12只钢瓶 12 LPG cylinders stored")
    api.upload(n1, scene("N1 before: 12 cylinders", (190, 170, 140), 3), kind="before")
    hazards.act(n1, "dispatch", "ops", department="fp-gas")
    step(at(11, 3, "11:00"))
    api.upload(n1, scene("N1 after: store emptied", (150, 190, 160), 0), kind="after",
               headers=LI)
    hazards.act(n1, "rectify", "li", note="钢瓶已清运")
    step(at(11, 3, "12:00"))
    hazards.act(n1, "verify", "ops", note="复查合格")
    n2 = report("N2", at(11, 5, "10:00"), "road_hazard", "major", "FP-R04", cp037,
                "FP-P019", "菜市场路口井盖缺失 manhole cover missing")
    api.upload(n2, scene("N2 before: open manhole", (120, 130, 150), 1), kind="before")
    hazards.act(n2, "dispatch", "ops", department="fp-traffic")
    n3 = report("N3", at(11, 8, "14:00"), "ebike_indoor_charging", "general", "FP-R03",
                cp026, "FP-P017", "楼道电动车充电")
    hazards.act(n3, "dispatch", "ops", department="fp-community")
    step(at(11, 9, "10:00"))
    hazards.act(n3, "rectify", "li", note="已劝离")
    hazards.act(n3, "verify", "ops")
    n4 = report("N4", at(11, 12, "09:00"), "combustibles_stacked", "general", "FP-R02", cp013,
                "FP-P008", "后厨纸箱堆放")
    hazards.act(n4, "dispatch", "ops", department="fp-property")
    step(at(11, 13, "09:00"))
    hazards.act(n4, "rectify", "li", note="已清理")
    step(at(11, 14, "09:00"))
    hazards.act(n4, "reopen", "ops", note="复查仍有堆放")
    report("N5", at(11, 20, "16:00"), "extinguisher_expired", "general", "FP-R03", cp026,
           "FP-P017", "灭火器压力不足")
    for day in range(20, 31):
        step(at(11, day, "18:00"))
    step(at(12, 1, "09:00"))
    return ids
