"""Signing in (the password check behind the attempt limits), sessions and signing out."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import col, select

from models.user import User, UserSession
from services.accounts.attempts import (
    SIGNIN_FAILED,
    SIGNIN_IP_WINDOW,
    SIGNIN_KINDS,
    SIGNIN_OK,
    SIGNIN_PENDING,
)
from services.accounts.credentials import PasswordHasher, normalize_email, token_hash
from services.accounts.devices import device_label
from services.accounts.last_seen import LAST_SEEN_EVERY, RecentlyTouched
from services.db import Database
from services.errors import AccountDisabled, InvalidCredentials, PermissionDenied, ValidationFailed
from services.settings import Settings


@dataclass(frozen=True)
class SignIn:
    user: User
    token: str  # the cookie value; shown to nobody else
    expires_at: datetime


class AccountSessions:
    """Sign-in, sessions and sign-out (a mixin of `Accounts`, which sets these attributes)."""

    db: Database
    settings: Settings
    clock: Callable[[], datetime]
    hasher: PasswordHasher
    _touched: RecentlyTouched
    _dummy_hash: str

    def sign_in(self, *, email: str, password: str, ip: str | None = None,
                user_agent: str | None = None) -> SignIn:
        """Check a password. The attempt is counted against the per-IP limit and the account's
        lockout, and recorded, before the hash is checked."""
        try:
            email = normalize_email(email)
        except ValidationFailed:
            email = None  # still an attempt from this IP; no account to check, so no hash
        attempt = self._admit(
            kind=SIGNIN_PENDING, email=email, ip=ip, counted=SIGNIN_KINDS, window=SIGNIN_IP_WINDOW,
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
        if user is not None and user.disabled_at is not None and user.password_hash:
            # Said only to whoever knows the password: it tells nothing to a guesser.
            if self.hasher.verify(password, user.password_hash):
                raise AccountDisabled()
            raise InvalidCredentials()
        if user is None or user.disabled_at is not None or not user.password_hash:
            # No account, or one that signs in with a provider only: the same hash check, the same answer.
            self.hasher.verify(password, self._dummy_hash)
            raise InvalidCredentials()
        valid, new_hash = self.hasher.verify_and_update(password, user.password_hash)
        if not valid:
            raise InvalidCredentials()
        if new_hash:
            with self.db.transaction() as s:
                s.exec(update(User).where(User.id == user.id).values(password_hash=new_hash))
        return user

    def _open_session(self, user: User, *, ip: str | None, user_agent: str | None) -> SignIn:
        token = secrets.token_urlsafe(32)
        now = self.clock()
        expires = now + timedelta(days=self.settings.session_max_days)
        with self.db.transaction() as s:
            s.add(UserSession(user_id=user.id, token_hash=token_hash(token), created_at=now,
                              last_seen_at=now, expires_at=expires, ip=ip,
                              user_agent=(user_agent or "")[:512] or None, device=device_label(user_agent)))
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
