"""State-store tables of accounts: users, sessions and the audit log."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Integer, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base

NAME_MAX = 64


class UserRow(Base):
    """One account: a person who signs in to the console."""

    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(NAME_MAX), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    sites: Mapped[str | None] = mapped_column(Text, nullable=True)  # "a,b"; NULL: all sites
    password_hash: Mapped[str] = mapped_column(Text)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_ns: Mapped[int] = mapped_column(BigInteger)
    password_changed_ns: Mapped[int] = mapped_column(BigInteger)


class SessionRow(Base):
    """A signed-in browser: the SHA-256 of its cookie, never the cookie itself."""

    __tablename__ = "sessions"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_name: Mapped[str] = mapped_column(String(NAME_MAX), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_ns: Mapped[int] = mapped_column(BigInteger)
    expires_ns: Mapped[int] = mapped_column(BigInteger, index=True)
    source: Mapped[str | None] = mapped_column(String(64), nullable=True)


class AuditRow(Base):
    """Who did what, when, from where: sign-ins, user, token and device changes, silences."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at_ns: Mapped[int] = mapped_column(BigInteger, index=True)
    actor: Mapped[str] = mapped_column(String(NAME_MAX))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str | None] = mapped_column(String(200), nullable=True)
    site: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    source: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ok: Mapped[bool] = mapped_column(Boolean, default=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON


TABLES: list[Table] = [UserRow.__table__, SessionRow.__table__, AuditRow.__table__]  # type: ignore[list-item]
