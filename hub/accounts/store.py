"""Accounts in the state store: users with argon2id password hashes, sessions, throttling.

A session is a random 256-bit cookie; the store keeps only its SHA-256, the user and an
absolute expiry. A session ends at its expiry, at sign-out, and when its user is disabled,
removed or given a new password. Failed sign-ins are counted per user name (known or not, so
the answer does not tell which names exist): after ``max_failures`` within ``window_s`` the
name is locked for ``lockout_s`` and sign-in answers 429.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session

from hub.accounts.tables import NAME_MAX, TABLES, SessionRow, UserRow
from hub.api.auth import ROLE_RANK, ROLES, User
from hub.db import create_tables

NS = 1_000_000_000
PASSWORD_MIN = 8
PASSWORD_MAX = 1024
NAME_PATTERN = r"^[A-Za-z0-9_.@-]+$"
THROTTLE_NAMES = 10_000  # names tracked at most (oldest forgotten): bounded memory
SESSION_CACHE_S = 2.0
VERIFY_AT_ONCE = 2  # password hashes checked at once: 64 MiB and ~0.3 s of CPU each
VERIFY_WAIT_S = 5.0


class AccountError(ValueError):
    """A user cannot be added or changed as asked (the message says why)."""


class Busy(Exception):
    """Too many sign-ins being checked at once (each costs a slow hash): try again shortly."""

    def __init__(self, concurrent: int) -> None:
        super().__init__(concurrent)
        self.concurrent = concurrent


class LockedOut(Exception):
    """Too many failed sign-ins for a name: try again after ``retry_after_s``."""

    def __init__(self, retry_after_s: int, max_failures: int, lockout_s: int) -> None:
        super().__init__(retry_after_s)
        self.retry_after_s = retry_after_s
        self.max_failures = max_failures
        self.lockout_s = lockout_s


@dataclass(frozen=True, slots=True)
class NewSession:
    """A session just created: the cookie value (shown once) and its CSRF token."""

    cookie: str
    csrf: str
    expires_ns: int
    user: User


def _digest(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


def _sites_text(sites: frozenset[str] | None) -> str | None:
    return None if sites is None else ",".join(sorted(sites))


def _sites_set(text: str | None) -> frozenset[str] | None:
    return None if text is None else frozenset(s for s in text.split(",") if s)


class LoginThrottle:
    """Failed sign-ins per name in a sliding window; a locked name answers LockedOut."""

    def __init__(self, max_failures: int = 5, window_s: float = 300.0,
                 lockout_s: float = 300.0) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self._failures: OrderedDict[str, list[float]] = OrderedDict()
        self._locked: dict[str, float] = {}
        self._lock = threading.Lock()

    def check(self, name: str, now: float | None = None) -> None:
        """Raise LockedOut while ``name`` is locked."""
        now = time.monotonic() if now is None else now
        with self._lock:
            until = self._locked.get(name)
            if until is not None and until > now:
                raise LockedOut(int(until - now) + 1, self.max_failures, int(self.lockout_s))
            if until is not None:
                del self._locked[name]

    def failed(self, name: str, now: float | None = None) -> bool:
        """Count a failure; True when it locks the name."""
        now = time.monotonic() if now is None else now
        with self._lock:
            times = [t for t in self._failures.pop(name, []) if now - t < self.window_s]
            times.append(now)
            self._failures[name] = times
            while len(self._failures) > THROTTLE_NAMES:
                self._failures.popitem(last=False)
            if len(times) >= self.max_failures:
                self._locked[name] = now + self.lockout_s
                self._failures.pop(name, None)
                if len(self._locked) > THROTTLE_NAMES:  # drop the expired
                    self._locked = {n: u for n, u in self._locked.items() if u > now}
                return True
            return False

    def succeeded(self, name: str) -> None:
        """Forget a name's failures after a good sign-in."""
        with self._lock:
            self._failures.pop(name, None)


class AccountStore:
    """Users and sessions in the state store (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine, *, session_ttl_s: float = 12 * 3600,
                 throttle: LoginThrottle | None = None,
                 hasher: PasswordHasher | None = None) -> None:
        self.engine = engine
        self.session_ttl_s = session_ttl_s
        self.throttle = throttle or LoginThrottle()
        self.hasher = hasher or PasswordHasher()
        self._dummy: str | None = None  # hashed at the first unknown name (start stays fast)
        self._verifying = threading.BoundedSemaphore(VERIFY_AT_ONCE)
        self._cache: dict[str, tuple[float, User | None]] = {}
        self._any: tuple[float, bool] | None = None
        create_tables(engine, TABLES)

    # -- users -------------------------------------------------------------------------------

    @staticmethod
    def check_name(name: str) -> str:
        """A valid user name or AccountError."""
        import re

        if not name or len(name) > NAME_MAX or not re.match(NAME_PATTERN, name):
            raise AccountError(f"user name {name!r}: 1-{NAME_MAX} of letters, digits, _ . @ -")
        return name

    @staticmethod
    def check_role(role: str) -> str:
        """A known role or AccountError."""
        if role not in ROLE_RANK:
            raise AccountError(f"unknown role {role!r}: use {', '.join(ROLES)}")
        return role

    @staticmethod
    def check_password(password: str) -> str:
        """A password long enough (and not absurdly long) or AccountError."""
        if len(password) < PASSWORD_MIN:
            raise AccountError(f"password too short: at least {PASSWORD_MIN} characters")
        if len(password) > PASSWORD_MAX:
            raise AccountError(f"password too long: at most {PASSWORD_MAX} characters")
        return password

    def add(self, name: str, role: str, password: str,
            sites: frozenset[str] | None = None) -> User:
        """Create a user; AccountError if the name is taken or a field is invalid."""
        self.check_name(name)
        self.check_role(role)
        self.check_password(password)
        now = time.time_ns()
        with Session(self.engine) as session, session.begin():
            if session.get(UserRow, name) is not None:
                raise AccountError(f"user {name!r} exists already")
            session.add(UserRow(name=name, role=role, sites=_sites_text(sites),
                                password_hash=self.hasher.hash(password), disabled=False,
                                created_ns=now, password_changed_ns=now))
        self._any = None
        return User(name, role, sites, "session")

    def get(self, name: str) -> dict[str, Any] | None:
        """One user's public record, or None."""
        with Session(self.engine) as session:
            row = session.get(UserRow, name)
            return None if row is None else _user_json(row)

    def list(self, sites: frozenset[str] | None = None) -> list[dict[str, Any]]:
        """Every user (``sites``: only users whose sites all lie within them)."""
        with Session(self.engine) as session:
            rows = session.scalars(select(UserRow).order_by(UserRow.name)).all()
        items = [_user_json(r) for r in rows]
        if sites is not None:
            items = [u for u in items if u["sites"] is not None and set(u["sites"]) <= sites]
        return items

    def set_password(self, name: str, password: str) -> None:
        """Give a user a new password; their sessions end."""
        self.check_password(password)
        self._update(name, password_hash=self.hasher.hash(password),
                     password_changed_ns=time.time_ns())

    def set_disabled(self, name: str, disabled: bool) -> None:
        """Disable (sessions end, sign-in refused) or enable a user."""
        self._update(name, disabled=disabled)

    def set_role(self, name: str, role: str, sites: frozenset[str] | None) -> None:
        """Change a user's role and sites (their sessions see it at the next request)."""
        self.check_role(role)
        self._update(name, role=role, sites=_sites_text(sites))

    def remove(self, name: str) -> None:
        """Delete a user and their sessions."""
        with Session(self.engine) as session, session.begin():
            row = session.get(UserRow, name)
            if row is None:
                raise AccountError(f"no user {name!r}")
            session.delete(row)
            session.execute(delete(SessionRow).where(SessionRow.user_name == name))
        self._forget()

    def _update(self, name: str, **values: Any) -> None:
        with Session(self.engine) as session, session.begin():
            row = session.get(UserRow, name)
            if row is None:
                raise AccountError(f"no user {name!r}")
            for key, value in values.items():
                setattr(row, key, value)
        self._forget()

    def _forget(self) -> None:
        self._cache.clear()
        self._any = None

    def any_enabled(self) -> bool:
        """True when at least one enabled user exists (cached for a moment)."""
        now = time.monotonic()
        if self._any is not None and now - self._any[0] < SESSION_CACHE_S:
            return self._any[1]
        with Session(self.engine) as session:
            count = session.scalar(select(func.count()).select_from(UserRow)
                                   .where(UserRow.disabled.is_(False)))
        self._any = (now, bool(count))
        return bool(count)

    # -- sign-in and sessions ----------------------------------------------------------------

    def _dummy_hash(self) -> str:
        """A hash of nothing, verified for unknown names so they cost the same time."""
        if self._dummy is None:
            self._dummy = self.hasher.hash(secrets.token_hex(16))
        return self._dummy

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if the password is right (and the user enabled), else None.

        Raises LockedOut while the name is locked; a wrong password counts a failure. An
        unknown name costs one hash verification too, so timing does not tell it apart. At
        most ``VERIFY_AT_ONCE`` verifications run at once (memory and CPU): Busy beyond.
        """
        key = name[:NAME_MAX]
        self.throttle.check(key)
        if not self._verifying.acquire(timeout=VERIFY_WAIT_S):
            raise Busy(VERIFY_AT_ONCE)
        try:
            return self._authenticate(key, name, password)
        finally:
            self._verifying.release()

    def _authenticate(self, key: str, name: str, password: str) -> User | None:
        with Session(self.engine) as session:
            row = session.get(UserRow, key) if len(name) <= NAME_MAX else None
            stored = row.password_hash if row is not None else self._dummy_hash()
            good: bool
            try:
                good = self.hasher.verify(stored, password[:PASSWORD_MAX])
            except (VerificationError, InvalidHashError):
                good = False
            if row is None or row.disabled or not good:
                self.throttle.failed(key)
                return None
            if self.hasher.check_needs_rehash(stored):  # parameters raised since: upgrade
                row.password_hash = self.hasher.hash(password)
                session.commit()
            user = User(row.name, row.role, _sites_set(row.sites), "session")
        self.throttle.succeeded(key)
        return user

    def start_session(self, user: User, source: str | None = None) -> NewSession:
        """Create a session for a signed-in user."""
        cookie = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(24)
        now = time.time_ns()
        expires = now + int(self.session_ttl_s * NS)
        with Session(self.engine) as session, session.begin():
            session.execute(delete(SessionRow).where(SessionRow.expires_ns < now))
            session.add(SessionRow(digest=_digest(cookie), user_name=user.name, csrf=csrf,
                                   created_ns=now, expires_ns=expires,
                                   source=(source or "")[:64] or None))
        return NewSession(cookie, csrf, expires, User(user.name, user.role, user.sites,
                                                      "session", csrf))

    def session_user(self, cookie: str) -> User | None:
        """The user of a live session cookie, or None (expired, ended, user gone or changed)."""
        if not cookie or len(cookie) > 200:
            return None
        digest = _digest(cookie)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[0] < SESSION_CACHE_S:
            user = cached[1]
        else:
            user = self._load_session(digest)
            if len(self._cache) > THROTTLE_NAMES:
                self._cache.clear()
            self._cache[digest] = (now, user)
        return user

    def _load_session(self, digest: str) -> User | None:
        now = time.time_ns()
        with Session(self.engine) as session:
            found = session.execute(
                select(SessionRow, UserRow).join(UserRow, UserRow.name == SessionRow.user_name)
                .where(SessionRow.digest == digest)).first()
        if found is None:
            return None
        row, user = found
        if row.expires_ns <= now or user.disabled or row.created_ns < user.password_changed_ns:
            return None
        return User(user.name, user.role, _sites_set(user.sites), "session", row.csrf)

    def end_session(self, cookie: str) -> None:
        """Sign out: the session's cookie is worthless from now on."""
        digest = _digest(cookie)
        with Session(self.engine) as session, session.begin():
            session.execute(delete(SessionRow).where(SessionRow.digest == digest))
        self._cache.pop(digest, None)

    @staticmethod
    def same(a: str, b: str) -> bool:
        """Constant-time string comparison."""
        return hmac.compare_digest(a.encode(), b.encode())


def _user_json(row: UserRow) -> dict[str, Any]:
    sites = _sites_set(row.sites)
    return {"name": row.name, "role": row.role,
            "sites": None if sites is None else sorted(sites), "disabled": row.disabled}
