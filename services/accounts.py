"""Accounts: sign-up, sign-in with lockout and throttling, sessions, password reset, API keys.

Tokens (session cookies, reset links, API keys) are random; only their SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pwdlib import PasswordHash
from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

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
from services.mailer import Mailer
from services.settings import Settings

log = logging.getLogger("studio.accounts")

PASSWORD_MIN, PASSWORD_MAX = 8, 1024
LOCKOUT_FAILURES = 10
LOCKOUT_WINDOW = timedelta(minutes=15)
RESET_TTL = timedelta(hours=1)
API_KEY_PREFIX = "sk_studio_"
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
# Events after which earlier sign-in failures no longer count towards the lockout.
_LOCKOUT_RESET_KINDS = ("signin_ok", "password_reset")


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


@dataclass(frozen=True)
class SignIn:
    user: User
    token: str  # the cookie value; shown to nobody else
    expires_at: datetime


class Accounts:
    """Accounts service. `ledger` grants the trial credits at sign-up, in the same transaction."""

    def __init__(self, *, db: Database, ledger, settings: Settings, mailer: Mailer,
                 clock: Callable[[], datetime] = utcnow):
        self.db = db
        self.ledger = ledger
        self.settings = settings
        self.mailer = mailer
        self.clock = clock
        self.hasher = PasswordHash.recommended()
        # Unknown emails are still checked against a hash, so timing does not reveal which exist.
        self._dummy_hash = self.hasher.hash(secrets.token_urlsafe(16))

    # Users ----------------------------------------------------------------------------------

    def create_user(self, *, email: str, password: str, admin: bool = False, ip: str | None = None) -> User:
        """Create an account and grant its trial credits once, atomically."""
        email = normalize_email(email)
        check_password(password)
        role = "admin" if admin or email in self.settings.admin_email_set else "user"
        password_hash = self.hasher.hash(password)
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
                s.add(AuthEvent(kind="signup", email=email, ip=ip, created_at=self.clock()))
        except IntegrityError:
            raise Conflict("An account with this email already exists. Sign in instead.") from None
        log.info("user created id=%s role=%s", user.id, role)
        return user

    def sign_up(self, *, email: str, password: str, ip: str | None = None) -> SignIn:
        """Browser sign-up: throttled per IP; signs the new user in."""
        if ip:
            since = self.clock() - timedelta(hours=1)
            if self._count_events(kinds=("signup",), ip=ip, since=since) >= self.settings.signup_rate_per_ip_per_hour:
                raise RateLimited("Too many sign-ups from your network. Try again later.")
        user = self.create_user(email=email, password=password, ip=ip)
        return self._open_session(user, ip=ip, user_agent=None)

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

    def require_admin(self, user: User) -> None:
        if not user.is_admin:
            raise PermissionDenied("This needs an administrator.")

    # Sign-in --------------------------------------------------------------------------------

    def sign_in(self, *, email: str, password: str, ip: str | None = None,
                user_agent: str | None = None) -> SignIn:
        now = self.clock()
        try:
            email = normalize_email(email)
        except ValidationFailed:
            self.hasher.verify(password or "", self._dummy_hash)
            raise InvalidCredentials() from None
        if ip and self._count_events(kinds=("signin_failed", "signin_ok"), ip=ip,
                                     since=now - timedelta(minutes=1)) >= self.settings.signin_rate_per_ip_per_minute:
            raise RateLimited("Too many sign-in attempts from your network. Wait a minute and try again.")
        locked_until = self.locked_until(email)
        if locked_until is not None:
            minutes = max(1, int((locked_until - now).total_seconds() // 60) + 1)
            raise AccountLocked(
                f"Too many failed sign-in attempts. This account is locked for {minutes} more minute(s). "
                "You can reset your password meanwhile."
            )
        with self.db.session() as s:
            user = s.exec(select(User).where(User.email == email)).first()
        if user is None or user.disabled_at is not None:
            self.hasher.verify(password or "", self._dummy_hash)
            self._record(kind="signin_failed", email=email, ip=ip)
            raise InvalidCredentials()
        valid, new_hash = self.hasher.verify_and_update(password or "", user.password_hash)
        if not valid:
            self._record(kind="signin_failed", email=email, ip=ip)
            raise InvalidCredentials()
        if new_hash:
            with self.db.transaction() as s:
                s.exec(update(User).where(User.id == user.id).values(password_hash=new_hash))
        self._record(kind="signin_ok", email=email, ip=ip)
        return self._open_session(user, ip=ip, user_agent=user_agent)

    def locked_until(self, email: str) -> datetime | None:
        """When the account's lockout ends, or None when it is not locked."""
        now = self.clock()
        with self.db.session() as s:
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
                .where(AuthEvent.email == email, AuthEvent.kind == "signin_failed", AuthEvent.created_at > since)
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
        """The signed-in user for a session cookie, or None if unknown, revoked or expired."""
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
            if now - sess.last_seen_at > timedelta(minutes=1):
                s.exec(update(UserSession).where(UserSession.id == sess.id).values(last_seen_at=now))
                s.commit()
        return user

    def sign_out(self, *, token: str | None) -> None:
        if not token:
            return
        with self.db.transaction() as s:
            s.exec(update(UserSession).where(UserSession.token_hash == token_hash(token),
                                             col(UserSession.revoked_at).is_(None))
                   .values(revoked_at=self.clock()))

    # Password reset -------------------------------------------------------------------------

    def request_password_reset(self, *, email: str, reset_url: str, ip: str | None = None) -> None:
        """Send a single-use reset link (valid 1 hour). Says nothing about whether the email exists."""
        try:
            email = normalize_email(email)
        except ValidationFailed:
            return
        now = self.clock()
        if ip and self._count_events(kinds=("reset_request",), ip=ip,
                                     since=now - timedelta(hours=1)) >= self.settings.signup_rate_per_ip_per_hour:
            raise RateLimited("Too many reset requests from your network. Try again later.")
        self._record(kind="reset_request", email=email, ip=ip)
        with self.db.session() as s:
            user = s.exec(select(User).where(User.email == email)).first()
        if user is None:
            return
        token = secrets.token_urlsafe(32)
        with self.db.transaction() as s:
            s.add(PasswordReset(user_id=user.id, token_hash=token_hash(token), created_at=now,
                                expires_at=now + RESET_TTL))
        link = f"{reset_url}?token={token}"
        self.mailer.send(
            to=user.email, subject="Reset your password",
            body=f"Someone asked to reset the password of this account.\n\nOpen this link within an hour "
                 f"to choose a new password:\n{link}\n\nIf it was not you, ignore this email.",
        )

    def reset_password(self, *, token: str, new_password: str) -> User:
        """Set a new password with a reset token; revokes the token and every session."""
        check_password(new_password)
        now = self.clock()
        new_hash = self.hasher.hash(new_password)
        with self.db.transaction() as s:
            reset = s.exec(select(PasswordReset).where(PasswordReset.token_hash == token_hash(token or ""))).first()
            if reset is None or reset.used_at is not None or reset.expires_at <= now:
                raise ValidationFailed("This reset link is invalid or has expired. Ask for a new one.")
            used = s.exec(update(PasswordReset).where(PasswordReset.id == reset.id,
                                                      col(PasswordReset.used_at).is_(None))
                          .values(used_at=now))
            if used.rowcount != 1:
                raise ValidationFailed("This reset link is invalid or has expired. Ask for a new one.")
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
            if api_key.last_used_at is None or now - api_key.last_used_at > timedelta(minutes=1):
                s.exec(update(ApiKey).where(ApiKey.id == api_key.id).values(last_used_at=now))
                s.commit()
        return user

    # Helpers --------------------------------------------------------------------------------

    def _record(self, *, kind: str, email: str | None, ip: str | None) -> None:
        with self.db.session() as s:
            s.add(AuthEvent(kind=kind, email=email, ip=ip, created_at=self.clock()))
            s.commit()

    def _count_events(self, *, kinds: tuple[str, ...], ip: str, since: datetime) -> int:
        with self.db.session() as s:
            return s.exec(select(func.count()).select_from(AuthEvent).where(
                col(AuthEvent.kind).in_(kinds), AuthEvent.ip == ip, AuthEvent.created_at > since)).one()


