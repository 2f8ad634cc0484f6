"""Password reset: single-use links mailed through the outbox, and setting the new password."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import col, select

from models.user import AuthEvent, PasswordReset, User, UserSession
from services.accounts.attempts import RESET_REQUEST, SIGNUP_IP_WINDOW
from services.accounts.credentials import PasswordHasher, check_password, normalize_email, token_hash
from services.db import Database
from services.errors import ValidationFailed
from services.mailer import Mailer, Outbox, compose
from services.settings import Settings

RESET_TTL = timedelta(hours=1)


class AccountReset:
    """Password reset (a mixin of `Accounts`, which sets these attributes)."""

    db: Database
    settings: Settings
    mailer: Mailer
    outbox: Outbox
    clock: Callable[[], datetime]
    hasher: PasswordHasher

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
        message = compose("reset_password.txt", language=user.language, reset_link=f"{reset_url}?token={token}")
        self.mailer.send(to=user.email, subject=message.subject, body=message.body)

    def reset_password(self, *, token: str, new_password: str) -> User:
        """Set a new password with a reset token; revokes the token and every session. The
        token is checked before the new password is hashed."""
        check_password(new_password)
        invalid = ValidationFailed("This reset link is invalid or has expired. Ask for a new one.",
                                   key="error.reset_link_invalid")
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
