"""State-store tables of the live registry: devices and checkpoints added through the API.

A row wins over a site file's entry of the same id (it is the newer decision); a retired row
hides the site file's entry. ``hub sites export`` writes the merged registry back to YAML.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Float, String, Table
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base

ID_MAX = 64
NAME_MAX = 200


class RegistryDeviceRow(Base):
    """A device onboarded (or retired) through the API."""

    __tablename__ = "registry_devices"

    id: Mapped[str] = mapped_column(String(ID_MAX), primary_key=True)
    site: Mapped[str] = mapped_column(String(64), index=True)
    model: Mapped[str] = mapped_column(String(64))
    community: Mapped[str | None] = mapped_column(String(64), nullable=True)
    name: Mapped[str | None] = mapped_column(String(NAME_MAX), nullable=True)
    lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    lon: Mapped[float | None] = mapped_column(Float, nullable=True)
    place: Mapped[str | None] = mapped_column(String(64), nullable=True)
    retired: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_ns: Mapped[int] = mapped_column(BigInteger)
    updated_by: Mapped[str] = mapped_column(String(64))


class RegistryCheckpointRow(Base):
    """A patrol checkpoint onboarded (or retired) through the API."""

    __tablename__ = "registry_checkpoints"

    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(ID_MAX), primary_key=True)
    tag_uid: Mapped[str] = mapped_column(String(64))
    route: Mapped[str | None] = mapped_column(String(64), nullable=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    community: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    lon: Mapped[float | None] = mapped_column(Float, nullable=True)
    retired: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_ns: Mapped[int] = mapped_column(BigInteger)
    updated_by: Mapped[str] = mapped_column(String(64))


TABLES: list[Table] = [RegistryDeviceRow.__table__,  # type: ignore[list-item]
                       RegistryCheckpointRow.__table__]  # type: ignore[list-item]
DEVICE_FIELDS = ("id", "model", "site", "community", "name", "lat", "lon", "place")
CHECKPOINT_FIELDS = ("id", "tag_uid", "site", "route", "name", "community", "lat", "lon")
