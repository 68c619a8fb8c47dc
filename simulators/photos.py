"""The inspector's phone app: the photo a reader's hazard names, uploaded later over HTTP.

A PT-NFC1 hazard message carries only ``photo_ref`` (the file name on the reader). The phone
app uploads the photo itself when it has a connection: ``POST /api/evidence`` (multipart:
file, device_id, photo_ref) with an officer token; the hub links it to the hazard. Photos are
made here: a deterministic JPEG per ``photo_ref`` with the checkpoint's GPS position and the
time taken in EXIF, like a phone camera writes them (plus a maker tag the hub strips).
"""

from __future__ import annotations

import hashlib
import io
import logging
from datetime import datetime
from typing import Any

import httpx
from PIL import Image, ImageDraw

log = logging.getLogger(__name__)

PALETTE = {
    "fire_exit_blocked": (170, 150, 120), "gas_cylinder_unsafe": (120, 150, 190),
    "illegal_gas_storage": (120, 150, 190), "wiring_exposed": (150, 130, 110),
    "ebike_indoor_charging": (110, 140, 120), "combustibles_stacked": (180, 140, 90),
    "extinguisher_expired": (190, 90, 80), "emergency_light_fault": (90, 90, 120),
}


def _dms(value: float) -> tuple[float, float, float]:
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    return float(degrees), float(minutes), round(((value - degrees) * 60 - minutes) * 60, 2)


def hazard_photo(photo_ref: str, category: str, lat: float | None = None,
                 lon: float | None = None, taken: datetime | None = None,
                 caption: str | None = None) -> bytes:
    """A JPEG for a hazard photo: same ``photo_ref`` -> same bytes."""
    seed = hashlib.sha256(photo_ref.encode()).digest()
    base = PALETTE.get(category, (140, 140, 140))
    width, height = 640, 480
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for y in range(height):
        shade = 0.5 + 0.5 * y / height
        draw.line([(0, y), (width, y)], fill=tuple(int(c * shade) for c in base))
    for i in range(seed[0] % 5 + 2):  # boxes, cylinders, whatever the inspector saw
        x = 40 + seed[i + 1] % 480
        top = 200 + seed[i + 8] % 180
        draw.rectangle([x, top, x + 60 + seed[i + 16] % 60, 440],
                       fill=(120 + seed[i + 2] % 120, 90, 60), outline=(40, 30, 20), width=3)
    draw.rectangle([0, 440, width, height], fill=(30, 30, 30))
    draw.text((10, 452), caption or f"{category} {photo_ref}", fill=(255, 255, 255))
    exif = Image.Exif()
    exif[0x010F] = "SimPhone"  # Make: not served by the hub
    exif[0x0110] = "PT-NFC1 companion"  # Model
    if taken is not None:
        exif.get_ifd(0x8769)[0x9003] = taken.strftime("%Y:%m:%d %H:%M:%S")
    if lat is not None and lon is not None:
        exif.get_ifd(0x8825).update({1: "N" if lat >= 0 else "S", 2: _dms(lat),
                                     3: "E" if lon >= 0 else "W", 4: _dms(lon)})
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=82, exif=exif.tobytes())
    return buffer.getvalue()


class PhoneApp:
    """Uploads readers' hazard photos to a hub over its HTTP API."""

    def __init__(self, api_url: str, token: str, timeout_s: float = 10.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}
        self.timeout_s = timeout_s
        self.uploaded: set[str] = set()

    def upload(self, device_id: str, photo_ref: str, data: bytes) -> dict[str, Any]:
        """POST one photo by its reference; the hub's answer (raises on an HTTP error)."""
        response = httpx.post(f"{self.api_url}/api/evidence", headers=self.headers,
                              timeout=self.timeout_s,
                              files={"file": (photo_ref.rsplit("/", 1)[-1], data, "image/jpeg")},
                              data={"device_id": device_id, "photo_ref": photo_ref})
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def sync(self, checkpoints: dict[str, tuple[float | None, float | None]]) -> int:
        """Upload the photo of every hazard that names one and has no evidence yet."""
        response = httpx.get(f"{self.api_url}/api/hazards", headers=self.headers,
                             timeout=self.timeout_s)
        response.raise_for_status()
        done = 0
        for hazard in response.json():
            ref, device = hazard.get("photo_ref"), hazard.get("device_id")
            if not ref or not device or hazard.get("evidence") or ref in self.uploaded:
                continue
            lat, lon = checkpoints.get(hazard.get("checkpoint_id") or "", (None, None))
            taken = datetime.fromisoformat(hazard["reported_at"].replace("Z", "+00:00"))
            self.upload(device, ref, hazard_photo(ref, hazard["category"], lat, lon, taken,
                                                  caption=f"{hazard['category']} {ref}"))
            self.uploaded.add(ref)
            done += 1
        return done
