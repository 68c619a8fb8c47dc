"""Evidence over HTTP: upload, type from the bytes, size limit, EXIF, content addressing,
the reader's photo_ref, the 422 (major without "after") and 409 (four eyes) rules.

On SQLite and PostgreSQL (``state_url``); the API is the hub's router with FastAPI's client.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from PIL import Image

from tests.support.hazard_api import LI, LIMIT, OPS, WALL, Api, photo
from tests.support.hazard_rig import HazardRig, local

DAY = date(2026, 11, 20)
@pytest.fixture
def api(state_url: str, tmp_path: Path) -> Iterator[Api]:
    rig = HazardRig(state_url, local(DAY, "08:00"))
    yield Api(rig, tmp_path)
    rig.close()


def test_upload_stores_once_strips_exif_keeps_gps_and_serves_thumbnails(api: Api) -> None:
    api.rig.hazard(local(DAY, "08:04"))
    hz = api.rig.patrol.hazards.search()[0]
    data = photo()
    response = api.upload(hz["id"], data)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert (body["media_type"], body["kind"], body["new"]) == ("image/jpeg", "before", True)
    assert body["gps"] == {"lat": 29.052, "lon": 111.6935}
    assert body["taken_at"] == "2026-11-20T08:04:40"
    again = api.upload(hz["id"], data, name="same-photo-other-name.jpg", kind="after")
    assert again.status_code == 201 and again.json()["new"] is False
    assert len(api.files()) == 2  # served copy and thumbnail, once
    served = api.client.get(f"/api/evidence/{body['sha256']}", headers=WALL)
    assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
    assert b"Huawei" in data and b"Huawei" not in served.content
    assert b"Zhang San" not in served.content and not dict(
        Image.open(io.BytesIO(served.content)).getexif())
    assert Image.open(io.BytesIO(served.content)).size == (800, 600)
    thumb = api.client.get(f"/api/evidence/{body['sha256']}?variant=thumb", headers=WALL)
    assert max(Image.open(io.BytesIO(thumb.content)).size) == 320
    detail = api.client.get(f"/api/hazards/{hz['id']}", headers=WALL).json()
    assert [(e["kind"], e["sha256"]) for e in detail["evidence"]] == [
        ("before", body["sha256"]), ("after", body["sha256"])]
    assert [h["action"] for h in detail["history"]] == ["report", "evidence", "evidence"]


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_png_and_webp_are_cleaned_too(api: Api, fmt: str) -> None:
    api.rig.hazard(local(DAY, "08:04"))
    hz = api.rig.patrol.hazards.search()[0]
    response = api.upload(hz["id"], photo(fmt=fmt), name="photo.jpg")  # the name lies
    assert response.status_code == 201
    assert response.json()["media_type"] == f"image/{fmt.lower()}"
    served = api.client.get(response.json()["url"], headers=WALL)
    assert b"Huawei" not in served.content


def test_type_is_judged_from_the_bytes_and_size_is_limited(api: Api) -> None:
    api.rig.hazard(local(DAY, "08:04"))
    hz = api.rig.patrol.hazards.search()[0]
    fake = api.upload(hz["id"], b"MZ\x90\x00 this is an exe", name="photo.jpg")
    assert fake.status_code == 415 and "from the bytes" in fake.json()["detail"]["message"]
    broken = api.upload(hz["id"], b"\xff\xd8\xff\xe0 truncated jpeg", name="a.jpg")
    assert broken.status_code == 415
    big = photo(size=(3000, 3000)) + b"\x00" * LIMIT
    too_large = api.upload(hz["id"], big)  # refused by its Content-Length, before reading
    assert too_large.status_code == 413
    assert str(LIMIT) in too_large.json()["detail"]["message"]
    just_over = api.upload(hz["id"], photo() + b"\x00" * LIMIT)  # within the form's slack
    assert just_over.status_code == 413 and str(LIMIT) in just_over.json()["detail"]["message"]
    chunked = api.client.post(  # no Content-Length: the size cannot be known up front
        f"/api/hazards/{hz['id']}/evidence", headers={
            **OPS, "Content-Type": "multipart/form-data; boundary=b"},
        content=iter([b"--b\r\n", b"x" * 100]))
    assert chunked.status_code == 411 and str(LIMIT) in chunked.json()["detail"]["message"]
    pdf = api.upload(hz["id"], b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n",
                     name="rectification-notice.png", kind="after")
    assert pdf.status_code == 201 and pdf.json()["media_type"] == "application/pdf"
    assert pdf.json()["thumb_url"] is None
    assert api.upload(hz["id"], photo(), headers=WALL).status_code == 403
    assert api.upload("HZ-NOPE", photo()).status_code == 404
    assert api.client.get("/api/evidence/" + "0" * 64, headers=WALL).status_code == 404


def test_major_needs_after_evidence_and_the_rectifier_cannot_verify(api: Api) -> None:
    api.rig.hazard(local(DAY, "08:04"), grade="major", category="illegal_gas_storage")
    hz = api.rig.patrol.hazards.search()[0]
    base = f"/api/hazards/{hz['id']}"
    assert api.post(f"{base}/dispatch", {"department": "nobody"}).status_code == 422
    assert api.post(f"{base}/dispatch", {"department": "fp-gas"}).status_code == 200
    api.upload(hz["id"], photo(), kind="before")
    refused = api.post(f"{base}/rectify", {"note": "cylinders removed"}, LI)
    assert refused.status_code == 422
    assert "major" in refused.json()["detail"]["message"]
    assert "after" in refused.json()["detail"]["message"]
    assert api.upload(hz["id"], photo((20, 160, 20)), kind="after",
                      headers=LI).status_code == 201
    assert api.post(f"{base}/rectify", {"note": "cylinders removed"}, LI).status_code == 200
    same = api.post(f"{base}/verify", {"note": "ok"}, LI)
    assert same.status_code == 409 and "four eyes" in same.json()["detail"]["message"]
    verified = api.post(f"{base}/verify", {"note": "re-checked"}, OPS)
    assert verified.status_code == 200 and verified.json()["verified_by"] == "ops"
    graded = api.post(f"{base}/grade", {"grade": "general", "note": "downgraded"})
    assert graded.status_code == 200 and graded.json()["grade"] == "general"


def test_reader_photo_ref_resolves_before_and_after_the_hazard(api: Api) -> None:
    api.rig.hazard(local(DAY, "08:04"), photo_ref="img/2026/11/20/0804.jpg")
    hz = api.rig.patrol.hazards.search()[0]
    first = photo((1, 2, 3))
    response = api.client.post("/api/evidence", headers=OPS, files={
        "file": ("0804.jpg", first, "image/jpeg")}, data={
        "device_id": "FP-R03", "photo_ref": "img/2026/11/20/0804.jpg"})
    assert response.status_code == 201 and response.json()["hazards"] == [hz["id"]]
    # the photo of a hazard not yet uploaded: linked when the hazard arrives
    second = photo((4, 5, 6))
    response = api.client.post("/api/evidence", headers=OPS, files={
        "file": ("0810.jpg", second, "image/jpeg")}, data={
        "device_id": "FP-R03", "photo_ref": "img/2026/11/20/0810.jpg"})
    assert response.json()["hazards"] == []
    api.rig.hazard(local(DAY, "08:10"), photo_ref="img/2026/11/20/0810.jpg",
                   tag="0440524709EDDB")
    later = next(h for h in api.rig.patrol.hazards.search() if h["id"] != hz["id"])
    assert [e["sha256"] for e in later["evidence"]] == [hashlib.sha256(second).hexdigest()]
    assert api.rig.patrol.hazards.evidence_sites(hashlib.sha256(second).hexdigest()) == {
        "fuping"}
