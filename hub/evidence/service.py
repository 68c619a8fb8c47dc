"""Evidence: uploads checked, stored once per content, described in the state store.

``add`` takes the uploaded bytes (bounded by ``HUB_EVIDENCE_MAX_BYTES``), judges the type
from them, keeps the GPS position and time taken as metadata, stores the cleaned copy and a
thumbnail under the SHA-256 of the upload (the same photo twice is stored once) and records
a row in ``evidence``. Which hazard a piece of evidence belongs to is the hazard service's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from sqlalchemy import BigInteger, Engine, Float, Integer, String
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from hub.db import Base, create_tables
from hub.evidence.errors import TooLarge
from hub.evidence.store import SHA256, EvidenceStore
from hub.patrol.schedule import iso_z

__all__ = ["EvidenceRow", "EvidenceService", "TooLarge"]


class EvidenceRow(Base):
    """One stored piece of evidence (photo or document)."""

    __tablename__ = "evidence"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    media_type: Mapped[str] = mapped_column(String(40))
    size: Mapped[int] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    gps_lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    gps_lon: Mapped[float | None] = mapped_column(Float, nullable=True)
    taken_at: Mapped[str | None] = mapped_column(String(32), nullable=True)
    filename: Mapped[str | None] = mapped_column(String(200), nullable=True)
    uploaded_by: Mapped[str] = mapped_column(String(64))
    uploaded_ns: Mapped[int] = mapped_column(BigInteger)


class EvidenceService:
    """Checks, stores and describes evidence."""

    def __init__(self, store: EvidenceStore, sessions: Callable[[], Session], engine: Engine,
                 max_bytes: int) -> None:
        create_tables(engine, [EvidenceRow.__table__])
        self.store = store
        self.sessions = sessions
        self.max_bytes = max_bytes

    def too_large(self, size: int) -> TooLarge:
        """The error for an upload of ``size`` bytes (or more)."""
        return TooLarge(f"evidence is limited to {self.max_bytes} bytes "
                        f"({self.max_bytes / 1024**2:g} MiB, HUB_EVIDENCE_MAX_BYTES); "
                        f"this upload has {size} or more")

    def add(self, data: bytes, filename: str | None, actor: str, now_ns: int) -> dict[str, Any]:
        """Check and store an upload; the description with ``new`` False when already kept."""
        if len(data) > self.max_bytes:
            raise self.too_large(len(data))
        sha = hashlib.sha256(data).hexdigest()
        known = self.info(sha)
        if known is not None and self.store.has(sha, "served"):
            return {**known, "new": False}
        from hub.evidence.inspect import inspect  # Pillow (~10 MB) only once an upload comes

        found = inspect(data)
        self.store.put(sha, "served", found.served)
        if found.thumb is not None:
            self.store.put(sha, "thumb", found.thumb)
        row = EvidenceRow(
            sha256=sha, media_type=found.media_type, size=len(found.served),
            width=found.width, height=found.height, gps_lat=found.gps_lat,
            gps_lon=found.gps_lon, taken_at=found.taken_at,
            filename=(filename or "")[:200] or None, uploaded_by=actor[:64],
            uploaded_ns=now_ns)
        try:
            with self.sessions() as session:
                session.add(row)
                session.commit()
        except IntegrityError:  # the same bytes uploaded at the same moment elsewhere
            pass
        return {**self._json(row), "new": True}

    def info(self, sha256: str) -> dict[str, Any] | None:
        """The description of stored evidence, or None."""
        if not SHA256.match(sha256):
            return None
        with self.sessions() as session:
            row = session.get(EvidenceRow, sha256)
            return self._json(row) if row is not None else None

    def content(self, sha256: str, variant: str = "served") -> tuple[bytes, str] | None:
        """(bytes, media type) of a stored variant, or None."""
        info = self.info(sha256)
        if info is None:
            return None
        data = self.store.get(sha256, variant)
        if data is None:
            return None
        return data, "image/jpeg" if variant == "thumb" else info["media_type"]

    @staticmethod
    def _json(row: EvidenceRow) -> dict[str, Any]:
        return {
            "sha256": row.sha256, "media_type": row.media_type, "size": row.size,
            "width": row.width, "height": row.height,
            "gps": ({"lat": row.gps_lat, "lon": row.gps_lon}
                    if row.gps_lat is not None and row.gps_lon is not None else None),
            "taken_at": row.taken_at, "filename": row.filename,
            "uploaded_by": row.uploaded_by, "uploaded_at": iso_z(row.uploaded_ns),
            "url": f"/api/evidence/{row.sha256}",
            "thumb_url": (f"/api/evidence/{row.sha256}?variant=thumb"
                          if row.media_type.startswith("image/") else None),
        }
