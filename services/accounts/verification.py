"""Email verification: single-use, expiring links (only their SHA-256 is stored), mailed through
the outbox; opening one marks the email verified and grants the trial credits when they waited
for it (one trial per person: services/accounts/trials.py)."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import col, select

from models.user import AuthEvent, EmailVerification, User
from services.accounts.attempts import SIGNUP_IP_WINDOW
from services.accounts.credentials import token_hash
from services.accounts.trials import claim_trial, email_claim_key
from services.db import Database
from services.errors import ValidationFailed
from services.mailer import Mailer, Outbox, compose
from services.settings import Settings

VERIFY_TTL = timedelta(hours=48)
VERIFY_REQUEST = "verify_request"


@dataclass(frozen=True)
class Verified:
    user: User
    trial_granted: int  # credits granted now (0: already had the trial, or none is due)


class AccountVerification:
    """Verification links (a mixin of `Accounts`, which sets these attributes)."""

    db: Database
    settings: Settings
    mailer: Mailer
    outbox: Outbox
    ledger: object
    clock: Callable[[], datetime]

    def _queue_verification(self, *, user_id: int, email: str, verify_url: str, language: str | None = None) -> None:
        """Mail a verification link from the outbox (mail errors are logged, never shown)."""
        self.outbox.submit(functools.partial(self._mail_verification, user_id=user_id, email=email,
                                             verify_url=verify_url, language=language))

    def _mail_verification(self, *, user_id: int, email: str, verify_url: str, language: str | None = None) -> None:
        token = secrets.token_urlsafe(32)
        now = self.clock()
        with self.db.transaction() as s:
            s.add(EmailVerification(user_id=user_id, email=email, token_hash=token_hash(token), created_at=now,
                                    expires_at=now + VERIFY_TTL))
        message = compose("verify_email.txt", language=language, verify_link=f"{verify_url}?token={token}",
                          hours=int(VERIFY_TTL.total_seconds() // 3600),
                          trial_credits=self.settings.trial_credits if self.settings.trial_requires_verified_email
                          else 0)
        self.mailer.send(to=email, subject=message.subject, body=message.body)

    def resend_verification(self, *, user_id: int, verify_url: str, ip: str | None = None) -> None:
        """Send a new link to the account's email (throttled per IP like reset requests)."""
        if not self.settings.mail_configured:
            raise ValidationFailed("Email is not configured on this instance.", key="error.verify.no_mail")
        with self.db.session() as s:
            user = s.get(User, user_id)
        if user is None or user.email_verified_at is not None:
            raise ValidationFailed("Your email address is already verified.", key="error.verify.already")
        self._admit(kind=VERIFY_REQUEST, email=user.email, ip=ip, counted=(VERIFY_REQUEST,),
                    window=SIGNUP_IP_WINDOW, limit=self.settings.signup_rate_per_ip_per_hour,
                    refusal="Too many verification requests from your network. Try again later.")
        self._queue_verification(user_id=user.id, email=user.email, verify_url=verify_url,
                                 language=user.language)

    def verify_email(self, *, token: str) -> Verified:
        """Use a verification link: once, before it expires, for the address it was sent to."""
        invalid = ValidationFailed("This verification link is invalid, was already used or has expired. "
                                   "Sign in and ask for a new one on the Account tab.",
                                   key="error.verify.invalid")
        if not token or len(token) > 200:
            raise invalid
        now = self.clock()
        with self.db.transaction() as s:
            used = s.exec(update(EmailVerification).where(
                EmailVerification.token_hash == token_hash(token), col(EmailVerification.used_at).is_(None),
                EmailVerification.expires_at > now).values(used_at=now))
            if used.rowcount != 1:
                raise invalid
            link = s.exec(select(EmailVerification).where(EmailVerification.token_hash == token_hash(token))).one()
            user = s.get(User, link.user_id)
            if user is None or user.email != link.email or user.disabled_at is not None:
                raise invalid
            if user.email_verified_at is None:
                user.email_verified_at = now
                s.add(user)
                s.add(AuthEvent(kind="email_verified", email=user.email, created_at=now))
            granted = claim_trial(s, ledger=self.ledger, user_id=user.id, amount=self.settings.trial_credits,
                                  keys=[email_claim_key(user.email)], now=now)
        return Verified(user=user, trial_granted=self.settings.trial_credits if granted else 0)
