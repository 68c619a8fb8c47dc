"""Where evidence bytes live: a content-addressed blob store behind a small interface.

Keys are SHA-256 hex digests of the uploaded bytes; a blob has named variants (``served``:
the file as the hub hands it out, EXIF stripped; ``thumb``: a small JPEG). The file store
keeps them under ``HUB_DATA_DIR/evidence/ab/<sha256>.<variant>``; an S3-compatible store would
use the same keys as object names.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

SHA256 = re.compile(r"^[0-9a-f]{64}$")
VARIANTS = ("served", "thumb")


class EvidenceStore(Protocol):
    """A blob store keyed by (sha256, variant)."""

    def has(self, sha256: str, variant: str) -> bool:
        """True when the variant is stored."""
        ...

    def put(self, sha256: str, variant: str, data: bytes) -> None:
        """Store a variant (atomically: readers see all of it or nothing)."""
        ...

    def get(self, sha256: str, variant: str) -> bytes | None:
        """The variant's bytes, or None."""
        ...


def _check(sha256: str, variant: str) -> None:
    if not SHA256.match(sha256) or variant not in VARIANTS:
        raise ValueError(f"bad evidence key {sha256!r}/{variant!r}")


class FileEvidenceStore:
    """Evidence files in a folder, two hex digits of fan-out."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, sha256: str, variant: str) -> Path:
        _check(sha256, variant)
        return self.root / sha256[:2] / f"{sha256}.{variant}"

    def has(self, sha256: str, variant: str) -> bool:
        """True when the variant's file exists."""
        return self._path(sha256, variant).is_file()

    def put(self, sha256: str, variant: str, data: bytes) -> None:
        """Write to a temporary file in the same folder, fsync, rename over."""
        path = self._path(sha256, variant)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, sha256: str, variant: str) -> bytes | None:
        """The file's bytes, or None."""
        path = self._path(sha256, variant)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
