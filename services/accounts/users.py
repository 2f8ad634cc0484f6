"""Creating accounts (CLI, admin, browser sign-up with its trial credits) and looking users up."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from models.user import AuthEvent, User
from services.accounts.attempts import (
    SIGNUP_FAILED,
    SIGNUP_IP_WINDOW,
    SIGNUP_KINDS,
    SIGNUP_OK,
    SIGNUP_PENDING,
)
from services.accounts.credentials import PasswordHasher, check_password, normalize_email
from services.accounts.sessions import SignIn
from services.accounts.trials import claim_trial, email_claim_key, is_blocked_domain
from services.db import Database
from services.errors import Conflict, NotFound, ValidationFailed
from services.ledger import Ledger
from services.settings import Settings
from services.team import check_new_account, consume_invite, grant_allowance

log = logging.getLogger("studio.accounts")


class AccountUsers:
    """Sign-up and user lookups (a mixin of `Accounts`, which sets these attributes)."""

    db: Database
    ledger: Ledger
    settings: Settings
    clock: Callable[[], datetime]
    hasher: PasswordHasher
    blocked_domains: frozenset[str]

    def create_user(self, *, email: str, password: str, admin: bool = False, ip: str | None = None) -> User:
        """Create an account and grant its trial credits once, atomically (CLI and admin path:
        not throttled; browsers go through `sign_up`)."""
        email = normalize_email(email)
        check_password(password)
        return self._insert_user(email=email, password_hash=self.hasher.hash(password), admin=admin, ip=ip)

    def sign_up(self, *, email: str, password: str, ip: str | None = None, user_agent: str | None = None,
                verify_url: str | None = None, invite: str | None = None,
                language: str | None = None) -> SignIn:
        """Browser sign-up: throttled per IP (in-flight sign-ups count); signs the new user in.
        The team rules (SIGNUP_MODE, ALLOWED_EMAIL_DOMAINS, the `invite` token) are checked before
        anything is counted or hashed, and again where the account is created (services/team.py).
        With mail configured, a verification link goes out (`verify_url`); the trial credits
        wait for it when `trial_requires_verified_email`."""
        email = normalize_email(email)
        check_password(password)
        invite = (invite or "").strip()[:200] or None
        with self.db.session() as s:
            check_new_account(s, settings=self.settings, email=email, invite=invite, now=self.clock())
        if is_blocked_domain(email, self.blocked_domains):
            raise ValidationFailed("Sign-ups with addresses from this email provider are not accepted. "
                                   "Use another address.", key="error.blocked_domain")
        attempt = self._admit(
            kind=SIGNUP_PENDING, email=email, ip=ip, counted=SIGNUP_KINDS, window=SIGNUP_IP_WINDOW,
            limit=self.settings.signup_rate_per_ip_per_hour,
            refusal="Too many sign-ups from your network. Try again later.",
        )
        try:
            user = self._insert_user(email=email, password_hash=self.hasher.hash(password), admin=False,
                                     ip=ip, attempt=attempt,
                                     trial=not self.settings.trial_requires_verified_email,
                                     team_rules=True, invite=invite)
        except BaseException:
            self._settle(attempt, SIGNUP_FAILED)
            raise
        if language:  # the language the visitor signed up in: its mails and pages follow it
            user.language = self.set_language(user_id=user.id, language=language)
        if self.settings.mail_configured and verify_url:
            self._queue_verification(user_id=user.id, email=user.email, verify_url=verify_url,
                                     language=user.language)
        return self._open_session(user, ip=ip, user_agent=user_agent)

    def _insert_user(self, *, email: str, password_hash: str, admin: bool, ip: str | None,
                     attempt: int | None = None, trial: bool = True, team_rules: bool = False,
                     invite: str | None = None) -> User:
        """Insert the account; with `trial`, its trial credits in the same transaction, once per
        person (services/accounts/trials.py: an email that had a trial before gets none). With
        `team_rules` (browser sign-ups) the sign-up rules are checked and the invitation consumed
        in that transaction; every new account gets this month's team allowance (if any)."""
        role = "admin" if admin or email in self.settings.admin_email_set else "user"
        try:
            with self.db.transaction() as s:
                now = self.clock()
                used = (check_new_account(s, settings=self.settings, email=email, invite=invite, now=now)
                        if team_rules else None)
                user = User(email=email, password_hash=password_hash, role=role)
                s.add(user)
                s.flush()
                if used is not None:
                    consume_invite(s, used, user_id=user.id, now=now)
                grant_allowance(self.ledger, self.settings, user_id=user.id, now=now, session=s)
                if trial and self.settings.trial_credits > 0:
                    claim_trial(s, ledger=self.ledger, user_id=user.id, amount=self.settings.trial_credits,
                                keys=[email_claim_key(email)], now=self.clock())
                if attempt is None:
                    s.add(AuthEvent(kind=SIGNUP_OK, email=email, ip=ip, created_at=self.clock()))
                else:
                    s.exec(update(AuthEvent).where(AuthEvent.id == attempt).values(kind=SIGNUP_OK))
        except IntegrityError:
            raise Conflict("An account with this email already exists. Sign in instead.",
                           key="error.account_exists") from None
        log.info("user created id=%s role=%s", user.id, role)
        return user

    def get_user(self, user_id: int) -> User:
        with self.db.session() as s:
            user = s.get(User, user_id)
        if user is None or user.disabled_at is not None:
            raise NotFound("No such user.")
        return user

    def set_language(self, *, user_id: int, language: str) -> str:
        """Remember the language a user chose (the switch); an unknown tag changes nothing."""
        from services.i18n import supported

        chosen = supported(language)
        if chosen is None:
            raise ValidationFailed("Unknown language.", key="error.unknown_language")
        with self.db.transaction() as s:
            s.exec(update(User).where(User.id == user_id).values(language=chosen))
        return chosen

    def get_user_by_email(self, email: str) -> User:
        email = normalize_email(email)
        with self.db.session() as s:
            user = s.exec(select(User).where(User.email == email)).first()
        if user is None:
            raise NotFound(f"No user with email {email}.")
        return user
