"""Accounts: sign-up, sign-in with lockout and throttling, sessions, password reset, API keys.

Tokens (session cookies, reset links, API keys) are random; only their SHA-256 is stored.

Every attempt that costs a password hash (sign-in, sign-up) is first counted and recorded in
one serialised write transaction, and refused at its limit, before any hashing: attempts still
in flight count against the limits, in this process and in every other one sharing the store.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from pwdlib import PasswordHash
from sqlalchemy import func, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, col, select

from models.base import utcnow
from models.user import ApiKey, AuthEvent, PasswordReset, User, UserSession
from services.db import Database
from services.errors import (
    AccountLocked,
    Conflict,
    InvalidCredentials,
    NotFound,
    PermissionDenied,
    RateLimited,
    ValidationFailed,
)
from services.mailer import Mailer, Outbox, compose
from services.settings import Settings

log = logging.getLogger("studio.accounts")

PASSWORD_MIN, PASSWORD_MAX = 8, 1024
LOCKOUT_FAILURES = 10
LOCKOUT_WINDOW = timedelta(minutes=15)
SIGNIN_IP_WINDOW = timedelta(minutes=1)
SIGNUP_IP_WINDOW = timedelta(hours=1)
RESET_TTL = timedelta(hours=1)
LAST_SEEN_EVERY = timedelta(minutes=1)
API_KEY_PREFIX = "sk_studio_"
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
# AuthEvent kinds. An attempt is recorded as "…_pending" before hashing and settled afterwards.
SIGNIN_PENDING, SIGNIN_FAILED, SIGNIN_OK = "signin_pending", "signin_failed", "signin_ok"
SIGNUP_PENDING, SIGNUP_FAILED, SIGNUP_OK = "signup_pending", "signup_failed", "signup"
RESET_REQUEST = "reset_request"
# What counts against the limits: every attempt, finished or still in flight.
_SIGNIN_KINDS = (SIGNIN_PENDING, SIGNIN_FAILED, SIGNIN_OK)
_SIGNUP_KINDS = (SIGNUP_PENDING, SIGNUP_FAILED, SIGNUP_OK)
_LOCKOUT_KINDS = (SIGNIN_PENDING, SIGNIN_FAILED)
# Events after which earlier sign-in failures no longer count towards the lockout.
_LOCKOUT_RESET_KINDS = (SIGNIN_OK, "password_reset")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def normalize_email(email: str) -> str:
    email = (email or "").strip().lower()
    if len(email) > 320 or not _EMAIL.match(email):
        raise ValidationFailed("Enter a valid email address.")
    return email


def check_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < PASSWORD_MIN:
        raise ValidationFailed(f"Use a password of at least {PASSWORD_MIN} characters.")
    if len(password) > PASSWORD_MAX:
        raise ValidationFailed(f"Use a password of at most {PASSWORD_MAX} characters.")
    return password


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class PasswordHasher:
    """argon2id (pwdlib's recommended parameters), with at most `slots` hashes or verifications
    running at once in this process: each takes ~64 MiB and a core for ~150 ms, so a burst
    waits here instead of growing memory. `runs` counts the hashes started."""

    def __init__(self, slots: int | None = None):
        self._hasher = PasswordHash.recommended()
        self.size = slots or min(_cores(), 8)
        self.slots = threading.BoundedSemaphore(self.size)
        self._runs_lock = threading.Lock()
        self.runs = 0

    @contextmanager
    def _slot(self) -> Iterator[None]:
        with self.slots:
            with self._runs_lock:
                self.runs += 1
            yield

    def hash(self, password: str) -> str:
        with self._slot():
            return self._hasher.hash(password)

    def verify(self, password: str, hashed: str) -> bool:
        with self._slot():
            return self._hasher.verify(password, hashed)

    def verify_and_update(self, password: str, hashed: str) -> tuple[bool, str | None]:
        with self._slot():
            return self._hasher.verify_and_update(password, hashed)


class _RecentlyTouched:
    """Which sessions and API keys had their "last seen" written in the last minute, so a burst
    of requests writes it once. Bounded: the least recently written are forgotten first (which
    costs at most one more write for them)."""

    def __init__(self, *, size: int = 10_000, every: timedelta = LAST_SEEN_EVERY):
        self.size, self.every = size, every
        self._at: OrderedDict[tuple[str, int], datetime] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, key: tuple[str, int], now: datetime) -> bool:
        """True when the caller should write now (and nobody else should for a minute)."""
        with self._lock:
            last = self._at.get(key)
            if last is not None and now - last < self.every:
                return False
            self._at[key] = now
            self._at.move_to_end(key)
            while len(self._at) > self.size:
                self._at.popitem(last=False)
            return True


@dataclass(frozen=True)
class SignIn:
    user: User
    token: str  # the cookie value; shown to nobody else
    expires_at: datetime


class Accounts:
    """Accounts service. `ledger` grants the trial credits at sign-up, in the same transaction.
    Reset links are mailed by `outbox`, a background worker, never on the request path."""

    def __init__(self, *, db: Database, ledger, settings: Settings, mailer: Mailer,
                 clock: Callable[[], datetime] = utcnow, outbox: Outbox | None = None,
                 hasher: PasswordHasher | None = None):
        self.db = db
        self.ledger = ledger
        self.settings = settings
        self.mailer = mailer
        self.clock = clock
        self.outbox = outbox or Outbox()
        self.hasher = hasher or PasswordHasher()
        self._touched = _RecentlyTouched()
        # Unknown emails are still checked against a hash, so timing does not reveal which exist.
        self._dummy_hash = self.hasher.hash(secrets.token_urlsafe(16))

    # Users ----------------------------------------------------------------------------------

    def create_user(self, *, email: str, password: str, admin: bool = False, ip: str | None = None) -> User:
        """Create an account and grant its trial credits once, atomically (CLI and admin path:
        not throttled; browsers go through `sign_up`)."""
        email = normalize_email(email)
        check_password(password)
        return self._insert_user(email=email, password_hash=self.hasher.hash(password), admin=admin, ip=ip)

    def sign_up(self, *, email: str, password: str, ip: str | None = None) -> SignIn:
        """Browser sign-up: throttled per IP (in-flight sign-ups count); signs the new user in."""
        email = normalize_email(email)
        check_password(password)
        attempt = self._admit(
            kind=SIGNUP_PENDING, email=email, ip=ip, counted=_SIGNUP_KINDS, window=SIGNUP_IP_WINDOW,
            limit=self.settings.signup_rate_per_ip_per_hour,
            refusal="Too many sign-ups from your network. Try again later.",
        )
        try:
            user = self._insert_user(email=email, password_hash=self.hasher.hash(password), admin=False,
                                     ip=ip, attempt=attempt)
        except BaseException:
            self._settle(attempt, SIGNUP_FAILED)
            raise
        return self._open_session(user, ip=ip, user_agent=None)

    def _insert_user(self, *, email: str, password_hash: str, admin: bool, ip: str | None,
                     attempt: int | None = None) -> User:
        role = "admin" if admin or email in self.settings.admin_email_set else "user"
        try:
            with self.db.transaction() as s:
                user = User(email=email, password_hash=password_hash, role=role)
                s.add(user)
                s.flush()
                if self.settings.trial_credits > 0:
                    self.ledger.grant(
                        user_id=user.id, amount=self.settings.trial_credits, kind="trial",
                        idempotency_key=f"trial:{user.id}", note="Free trial credits", session=s,
                    )
                if attempt is None:
                    s.add(AuthEvent(kind=SIGNUP_OK, email=email, ip=ip, created_at=self.clock()))
                else:
                    s.exec(update(AuthEvent).where(AuthEvent.id == attempt).values(kind=SIGNUP_OK))
        except IntegrityError:
            raise Conflict("An account with this email already exists. Sign in instead.") from None
        log.info("user created id=%s role=%s", user.id, role)
        return user

    def get_user(self, user_id: int) -> User:
        with self.db.session() as s:
            user = s.get(User, user_id)
        if user is None or user.disabled_at is not None:
            raise NotFound("No such user.")
        return user

    def get_user_by_email(self, email: str) -> User:
        email = normalize_email(email)
        with self.db.session() as s:
            user = s.exec(select(User).where(User.email == email)).first()
        if user is None:
            raise NotFound(f"No user with email {email}.")
        return user

    # Sign-in --------------------------------------------------------------------------------

    def sign_in(self, *, email: str, password: str, ip: str | None = None,
                user_agent: str | None = None) -> SignIn:
        """Check a password. The attempt is counted against the per-IP limit and the account's
        lockout, and recorded, before the hash is checked."""
        try:
            email = normalize_email(email)
        except ValidationFailed:
            email = None  # still an attempt from this IP; no account to check, so no hash
        attempt = self._admit(
            kind=SIGNIN_PENDING, email=email, ip=ip, counted=_SIGNIN_KINDS, window=SIGNIN_IP_WINDOW,
            limit=self.settings.signin_rate_per_ip_per_minute,
            refusal="Too many sign-in attempts from your network. Wait a minute and try again.",
            lockout=email is not None,
        )
        outcome = SIGNIN_FAILED
        try:
            user = self._check_password(email, password or "")
            outcome = SIGNIN_OK
        finally:
            self._settle(attempt, outcome)
        return self._open_session(user, ip=ip, user_agent=user_agent)

    def _check_password(self, email: str | None, password: str) -> User:
        if email is None:
            raise InvalidCredentials()
        with self.db.session() as s:
            user = s.exec(select(User).where(User.email == email)).first()
        if user is None or user.disabled_at is not None:
            self.hasher.verify(password, self._dummy_hash)
            raise InvalidCredentials()
        valid, new_hash = self.hasher.verify_and_update(password, user.password_hash)
        if not valid:
            raise InvalidCredentials()
        if new_hash:
            with self.db.transaction() as s:
                s.exec(update(User).where(User.id == user.id).values(password_hash=new_hash))
        return user

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

    def _open_session(self, user: User, *, ip: str | None, user_agent: str | None) -> SignIn:
        token = secrets.token_urlsafe(32)
        now = self.clock()
        expires = now + timedelta(days=self.settings.session_max_days)
        with self.db.transaction() as s:
            s.add(UserSession(user_id=user.id, token_hash=token_hash(token), created_at=now,
                              last_seen_at=now, expires_at=expires, ip=ip,
                              user_agent=(user_agent or "")[:512] or None))
        return SignIn(user=user, token=token, expires_at=expires)

    def user_for_session(self, token: str | None) -> User | None:
        """The signed-in user for a session cookie, or None if unknown, revoked or expired.
        Reads; writes "last seen" at most once a minute per session."""
        if not token or len(token) > 200:
            return None
        now = self.clock()
        with self.db.session() as s:
            row = s.exec(
                select(UserSession, User).join(User, User.id == UserSession.user_id)
                .where(UserSession.token_hash == token_hash(token))
            ).first()
        if row is None:
            return None
        sess, user = row
        idle_limit = sess.last_seen_at + timedelta(minutes=self.settings.session_idle_minutes)
        if sess.revoked_at is not None or sess.expires_at <= now or idle_limit <= now or user.disabled_at:
            return None
        if now - sess.last_seen_at > LAST_SEEN_EVERY and self._touched.claim(("session", sess.id), now):
            self._touch(update(UserSession).where(UserSession.id == sess.id).values(last_seen_at=now))
        return user

    def sign_out_proof(self, session_token: str | None) -> str:
        """What a page of this session carries to sign it out: an HMAC of the session token under
        the secret key. Another site cannot read it, so it cannot sign the user out."""
        if not session_token:
            return ""
        key = self.settings.ensure_secret_key().encode()
        return hmac.new(key, b"sign-out:" + session_token.encode(), hashlib.sha256).hexdigest()

    def sign_out(self, *, token: str | None, proof: str | None) -> None:
        """Revoke the session `token`, when `proof` is its `sign_out_proof`."""
        if not token:
            return
        if not hmac.compare_digest(self.sign_out_proof(token), proof or ""):
            raise PermissionDenied("This sign-out did not come from your page. Use the Sign out button.")
        with self.db.transaction() as s:
            s.exec(update(UserSession).where(UserSession.token_hash == token_hash(token),
                                             col(UserSession.revoked_at).is_(None))
                   .values(revoked_at=self.clock()))

    # Password reset -------------------------------------------------------------------------

    def request_password_reset(self, *, email: str, reset_url: str, ip: str | None = None) -> None:
        """Queue a single-use reset link (valid 1 hour) for mailing. Does the same work and
        answers the same whether or not the email exists; the lookup and the mail happen in
        the outbox's worker, whose errors are logged."""
        try:
            email = normalize_email(email)
        except ValidationFailed:
            return
        self._admit(kind=RESET_REQUEST, email=email, ip=ip, counted=(RESET_REQUEST,), window=SIGNUP_IP_WINDOW,
                    limit=self.settings.signup_rate_per_ip_per_hour,
                    refusal="Too many reset requests from your network. Try again later.")
        self.outbox.submit(functools.partial(self._mail_reset_link, email=email, reset_url=reset_url))

    def _mail_reset_link(self, *, email: str, reset_url: str) -> None:
        with self.db.session() as s:
            user = s.exec(select(User).where(User.email == email)).first()
        if user is None:
            return
        token = secrets.token_urlsafe(32)
        now = self.clock()
        with self.db.transaction() as s:
            s.add(PasswordReset(user_id=user.id, token_hash=token_hash(token), created_at=now,
                                expires_at=now + RESET_TTL))
        message = compose("reset_password.txt", reset_link=f"{reset_url}?token={token}")
        self.mailer.send(to=user.email, subject=message.subject, body=message.body)

    def reset_password(self, *, token: str, new_password: str) -> User:
        """Set a new password with a reset token; revokes the token and every session. The
        token is checked before the new password is hashed."""
        check_password(new_password)
        invalid = ValidationFailed("This reset link is invalid or has expired. Ask for a new one.")
        if not token or len(token) > 200:
            raise invalid
        now = self.clock()
        with self.db.session() as s:
            reset = s.exec(select(PasswordReset).where(PasswordReset.token_hash == token_hash(token))).first()
        if reset is None or reset.used_at is not None or reset.expires_at <= now:
            raise invalid
        new_hash = self.hasher.hash(new_password)
        with self.db.transaction() as s:
            used = s.exec(update(PasswordReset).where(PasswordReset.id == reset.id,
                                                      col(PasswordReset.used_at).is_(None))
                          .values(used_at=now))
            if used.rowcount != 1:
                raise invalid
            user = s.get(User, reset.user_id)
            user.password_hash = new_hash
            s.add(user)
            s.exec(update(UserSession).where(UserSession.user_id == user.id,
                                             col(UserSession.revoked_at).is_(None)).values(revoked_at=now))
            s.add(AuthEvent(kind="password_reset", email=user.email, created_at=now))
        return user

    # API keys -------------------------------------------------------------------------------

    def create_api_key(self, *, user_id: int, name: str = "") -> tuple[ApiKey, str]:
        """Returns the stored key row and the plaintext key, which is shown once."""
        name = (name or "").strip()[:100]
        plaintext = API_KEY_PREFIX + secrets.token_urlsafe(32)
        with self.db.transaction() as s:
            if s.get(User, user_id) is None:
                raise NotFound("No such user.")
            key = ApiKey(user_id=user_id, name=name, prefix=plaintext[:16], key_hash=token_hash(plaintext),
                         created_at=self.clock())
            s.add(key)
            s.flush()
            s.refresh(key)
        return key, plaintext

    def list_api_keys(self, *, user_id: int) -> list[ApiKey]:
        with self.db.session() as s:
            return list(s.exec(select(ApiKey).where(ApiKey.user_id == user_id)
                               .order_by(col(ApiKey.created_at).desc())).all())

    def revoke_api_key(self, *, user_id: int, key_id: int) -> None:
        with self.db.transaction() as s:
            key = s.get(ApiKey, key_id)
            if key is None or key.user_id != user_id:
                raise NotFound("No such API key.")
            if key.revoked_at is None:
                key.revoked_at = self.clock()
                s.add(key)

    def user_for_api_key(self, key: str | None) -> User | None:
        """The owner of an API key, or None. Reads; writes "last used" at most once a minute per key."""
        if not key or not key.startswith(API_KEY_PREFIX) or len(key) > 200:
            return None
        now = self.clock()
        with self.db.session() as s:
            row = s.exec(select(ApiKey, User).join(User, User.id == ApiKey.user_id)
                         .where(ApiKey.key_hash == token_hash(key))).first()
        if row is None:
            return None
        api_key, user = row
        if api_key.revoked_at is not None or user.disabled_at is not None:
            return None
        stale = api_key.last_used_at is None or now - api_key.last_used_at > LAST_SEEN_EVERY
        if stale and self._touched.claim(("api_key", api_key.id), now):
            self._touch(update(ApiKey).where(ApiKey.id == api_key.id).values(last_used_at=now))
        return user

    # Helpers --------------------------------------------------------------------------------

    def _touch(self, statement) -> None:
        """Write "last seen" bookkeeping. Authentication does not fail because of it."""
        try:
            with self.db.transaction() as s:
                s.exec(statement)
        except OperationalError:
            log.warning("could not record last-seen time", exc_info=True)

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
                raise RateLimited(refusal)
            if lockout and email:
                locked_until = self._locked_until(s, email, now)
                if locked_until is not None:
                    minutes = max(1, int((locked_until - now).total_seconds() // 60) + 1)
                    raise AccountLocked(
                        f"Too many failed sign-in attempts. This account is locked for {minutes} more "
                        "minute(s). You can reset your password meanwhile."
                    )
            event = AuthEvent(kind=kind, email=email, ip=ip, created_at=now)
            s.add(event)
            s.flush()
            return event.id

    def _settle(self, attempt: int, kind: str) -> None:
        """Mark a recorded attempt with its outcome."""
        with self.db.transaction() as s:
            s.exec(update(AuthEvent).where(AuthEvent.id == attempt).values(kind=kind))
