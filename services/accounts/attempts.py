"""Attempts that cost a password hash (sign-in, sign-up) and reset requests: the limits, and the
serialised count-and-record that admits or refuses each one before any hashing.

Every such attempt is first counted and recorded in one serialised write transaction, and refused
at its limit: attempts still in flight count against the limits, in this process and in every
other one sharing the store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import func, text, update
from sqlmodel import Session, col, select

from models.user import AuthEvent
from services.db import Database
from services.errors import AccountLocked, RateLimited

LOCKOUT_FAILURES = 10
LOCKOUT_WINDOW = timedelta(minutes=15)
SIGNIN_IP_WINDOW = timedelta(minutes=1)
SIGNUP_IP_WINDOW = timedelta(hours=1)
# AuthEvent kinds. An attempt is recorded as "…_pending" before hashing and settled afterwards.
SIGNIN_PENDING, SIGNIN_FAILED, SIGNIN_OK = "signin_pending", "signin_failed", "signin_ok"
SIGNUP_PENDING, SIGNUP_FAILED, SIGNUP_OK = "signup_pending", "signup_failed", "signup"
RESET_REQUEST = "reset_request"
# What counts against the limits: every attempt, finished or still in flight.
SIGNIN_KINDS = (SIGNIN_PENDING, SIGNIN_FAILED, SIGNIN_OK)
SIGNUP_KINDS = (SIGNUP_PENDING, SIGNUP_FAILED, SIGNUP_OK)
_LOCKOUT_KINDS = (SIGNIN_PENDING, SIGNIN_FAILED)
# Events after which earlier sign-in failures no longer count towards the lockout.
_LOCKOUT_RESET_KINDS = (SIGNIN_OK, "password_reset")


# The refusals callers pass to `_admit`, by their key in assets/i18n/ (shown in the visitor's language).
REFUSAL_KEYS = {
    "Too many sign-in attempts from your network. Wait a minute and try again.": "error.too_many_sign_ins",
    "Too many sign-ups from your network. Try again later.": "error.too_many_sign_ups",
    "Too many reset requests from your network. Try again later.": "error.too_many_resets",
    "Too many verification requests from your network. Try again later.": "error.too_many_verifications",
}


class AccountAttempts:
    """Admitting, refusing and settling attempts (a mixin of `Accounts`, which sets these attributes)."""

    db: Database
    clock: Callable[[], datetime]

    def locked_until(self, email: str) -> datetime | None:
        """When the account's lockout ends, or None when it is not locked."""
        with self.db.session() as s:
            return self._locked_until(s, email, self.clock())

    @staticmethod
    def _locked_until(s: Session, email: str, now: datetime) -> datetime | None:
        boundary = s.exec(
            select(func.max(AuthEvent.created_at)).where(
                AuthEvent.email == email, col(AuthEvent.kind).in_(_LOCKOUT_RESET_KINDS)
            )
        ).one()
        since = now - LOCKOUT_WINDOW
        if boundary is not None and boundary > since:
            since = boundary
        failures = s.exec(
            select(AuthEvent.created_at)
            .where(AuthEvent.email == email, col(AuthEvent.kind).in_(_LOCKOUT_KINDS), AuthEvent.created_at > since)
            .order_by(col(AuthEvent.created_at).desc())
            .limit(LOCKOUT_FAILURES)
        ).all()
        if len(failures) < LOCKOUT_FAILURES:
            return None
        return failures[-1] + LOCKOUT_WINDOW if failures[0] + LOCKOUT_WINDOW > now else None

    @contextmanager
    def _serialised(self, *keys: str) -> Iterator[Session]:
        """A write transaction holding, until it ends, a lock on each key (an email, an IP), so
        that counting attempts and recording one cannot interleave with another process doing
        the same. SQLite: BEGIN IMMEDIATE already admits one writer at a time. PostgreSQL:
        transaction-scoped advisory locks, taken in a fixed order."""
        with self.db.transaction() as s:
            if not self.db.is_sqlite:
                conn = s.connection()
                for key in sorted(set(keys)):
                    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})
            yield s

    def _admit(self, *, kind: str, email: str | None, ip: str | None, counted: tuple[str, ...],
               window: timedelta, limit: int, refusal: str, lockout: bool = False) -> int:
        """Count the attempts of `counted` kinds from `ip` in `window` (and, with `lockout`, the
        account's recent failures); refuse at the limit; else record this attempt as `kind`.
        One serialised transaction. Returns the attempt's id."""
        now = self.clock()
        keys = ([f"auth-ip:{ip}"] if ip else []) + ([f"auth-email:{email}"] if lockout and email else [])
        with self._serialised(*keys) as s:
            if ip and s.exec(select(func.count()).select_from(AuthEvent).where(
                    col(AuthEvent.kind).in_(counted), AuthEvent.ip == ip,
                    AuthEvent.created_at > now - window)).one() >= limit:
                raise RateLimited(refusal, key=REFUSAL_KEYS.get(refusal))
            if lockout and email:
                locked_until = self._locked_until(s, email, now)
                if locked_until is not None:
                    minutes = max(1, int((locked_until - now).total_seconds() // 60) + 1)
                    raise AccountLocked(
                        f"Too many failed sign-in attempts. This account is locked for {minutes} more "
                        "minute(s). You can reset your password meanwhile.", key="error.account_locked", minutes=minutes,
                    )
            event = AuthEvent(kind=kind, email=email, ip=ip, created_at=now)
            s.add(event)
            s.flush()
            return event.id

    def _settle(self, attempt: int, kind: str) -> None:
        """Mark a recorded attempt with its outcome."""
        with self.db.transaction() as s:
            s.exec(update(AuthEvent).where(AuthEvent.id == attempt).values(kind=kind))
