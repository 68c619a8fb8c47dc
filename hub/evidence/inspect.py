"""What an uploaded file is, judged from its bytes; its EXIF GPS and time; a clean copy.

Types: JPEG, PNG, WebP, PDF, recognised by their signatures (never by the name or the
client's content type), then opened (images by Pillow, fully decoded, bounded in pixels; PDFs
by their header and trailer). The served copy of an image drops its metadata losslessly: JPEG
APPn segments other than JFIF and ICC, PNG text and eXIf chunks, WebP EXIF and XMP chunks;
the pixels are the uploaded ones. GPS position and the time taken are read first and kept.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass
from datetime import datetime

from PIL import Image, ImageOps

from hub.evidence.errors import UnsupportedEvidence

MAX_PIXELS = 60_000_000  # a 60 MP photo; more is a decompression bomb, refused
THUMB_PX = 320
MEDIA_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp",
               "pdf": "application/pdf"}


@dataclass(frozen=True, slots=True)
class Inspected:
    """An upload understood: its type, size in pixels, metadata kept, the copy to serve."""

    kind: str
    media_type: str
    width: int | None
    height: int | None
    gps_lat: float | None
    gps_lon: float | None
    taken_at: str | None
    served: bytes
    thumb: bytes | None


def sniff(data: bytes) -> str | None:
    """jpeg, png, webp or pdf from the first bytes; None for anything else."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:5] == b"%PDF-":
        return "pdf"
    return None


def _ratio(value: object) -> float:
    if isinstance(value, tuple):
        return float(value[0]) / float(value[1]) if value[1] else 0.0
    return float(value)  # type: ignore[arg-type]


def _gps(exif: Image.Exif) -> tuple[float | None, float | None]:
    info = exif.get_ifd(0x8825)  # GPSInfo
    try:
        lat = sum(_ratio(v) / 60**i for i, v in enumerate(info[2]))
        lon = sum(_ratio(v) / 60**i for i, v in enumerate(info[4]))
    except (KeyError, TypeError, ValueError, ZeroDivisionError, IndexError):
        return None, None
    if info.get(1) == "S":
        lat = -lat
    if info.get(3) == "W":
        lon = -lon
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None, None
    return round(lat, 6), round(lon, 6)


def _taken(exif: Image.Exif) -> str | None:
    raw = exif.get_ifd(0x8769).get(0x9003) or exif.get(0x0132)  # DateTimeOriginal, DateTime
    if not isinstance(raw, str):
        return None
    try:
        return datetime.strptime(raw.strip("\x00 "), "%Y:%m:%d %H:%M:%S").isoformat()
    except ValueError:
        return None


def _strip_jpeg(data: bytes) -> bytes:
    out = bytearray(data[:2])
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise UnsupportedEvidence("damaged JPEG: marker expected")
        marker = data[pos + 1]
        if marker == 0xDA:  # start of scan: the rest is image data
            out += data[pos:]
            return bytes(out)
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        segment = data[pos:pos + 2 + length]
        keep = not (0xE1 <= marker <= 0xEF or marker == 0xFE)  # APP1..APP15, comments
        if marker == 0xE2 and segment[4:16] == b"ICC_PROFILE\x00":
            keep = True  # colours, not metadata
        if keep:
            out += segment
        pos += 2 + length
    raise UnsupportedEvidence("damaged JPEG: no image data")


def _strip_png(data: bytes) -> bytes:
    out = bytearray(data[:8])
    pos = 8
    while pos + 12 <= len(data):
        length = struct.unpack(">I", data[pos:pos + 4])[0]
        chunk = data[pos:pos + 12 + length]
        if chunk[4:8] not in (b"tEXt", b"iTXt", b"zTXt", b"eXIf", b"tIME"):
            out += chunk
        pos += 12 + length
    return bytes(out)


def _strip_webp(data: bytes) -> bytes:
    chunks = bytearray()
    pos = 12
    while pos + 8 <= len(data):
        name = data[pos:pos + 4]
        size = struct.unpack("<I", data[pos + 4:pos + 8])[0]
        chunk = bytearray(data[pos:pos + 8 + size + (size & 1)])
        if name == b"VP8X":
            chunk[8] &= ~0x0C & 0xFF  # EXIF and XMP flags off
        if name not in (b"EXIF", b"XMP "):
            chunks += chunk
        pos += 8 + size + (size & 1)
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WEBP" + bytes(chunks)


STRIP = {"jpeg": _strip_jpeg, "png": _strip_png, "webp": _strip_webp}


def _open(data: bytes) -> Image.Image:
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError,
                Image.DecompressionBombWarning) as exc:
            raise UnsupportedEvidence(f"the image cannot be read: {exc}") from None
    return image


def thumbnail(image: Image.Image) -> bytes:
    """A JPEG at most THUMB_PX on its longer side, upright, without metadata."""
    small = ImageOps.exif_transpose(image.copy())
    small.thumbnail((THUMB_PX, THUMB_PX))
    if small.mode not in ("RGB", "L"):
        small = small.convert("RGB")
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def inspect(data: bytes) -> Inspected:
    """Recognise, check and clean an upload; raise UnsupportedEvidence."""
    kind = sniff(data)
    if kind is None:
        raise UnsupportedEvidence("not a JPEG, PNG, WebP or PDF (judged from the bytes, not "
                                  "the name)")
    if kind == "pdf":
        if b"%%EOF" not in data[-1024:]:
            raise UnsupportedEvidence("damaged PDF: no end-of-file marker")
        return Inspected(kind, MEDIA_TYPES[kind], None, None, None, None, None, data, None)
    image = _open(data)
    if (image.format or "").lower() != kind:
        raise UnsupportedEvidence(f"the bytes say {kind} but decode as {image.format}")
    exif = image.getexif()
    lat, lon = _gps(exif)
    served = STRIP[kind](data)
    _open(served)  # the cleaned copy still decodes
    return Inspected(kind, MEDIA_TYPES[kind], image.width, image.height, lat, lon,
                     _taken(exif), served, thumbnail(image))
