"""Team mode: who may create an account (SIGNUP_MODE, ALLOWED_EMAIL_DOMAINS, invitations) and the
monthly team allowance (MONTHLY_ALLOWANCE_CREDITS).

The sign-up rules are functions on the caller's session: `Accounts` runs them in the transaction
that creates the account, so an invitation is consumed exactly when an account is created with it.
The allowance is a "team" bucket per member per calendar month (UTC), granted through
`Ledger.refresh_team` under the key `team:<user id>:<YYYY-MM>`: whichever process (the sweep of any
replica, a sign-up) gets there first grants it, the others replay the key and change nothing.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, col, select

from models.base import utcnow
from models.ledger import CreditGrant
from models.user import Invite, User
from services.db import Database
from services.errors import NotFound, PermissionDenied, ValidationFailed
from services.settings import Settings

log = logging.getLogger("studio.team")

INVITE_PREFIX = "inv_"


class SignupRefused(PermissionDenied):
    """A new account that the team rules do not allow; the message says why and what to do."""


@dataclass(frozen=True)
class CreatedInvite:
    id: int
    token: str  # shown once: only its SHA-256 is stored
    url: str
    email: str | None
    expires_at: datetime


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def month_of(now: datetime) -> tuple[str, datetime]:
    """The allowance month of `now` (UTC): its "YYYY-MM" and the first instant of the next month."""
    now = now.astimezone(UTC)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    nxt = (start + timedelta(days=32)).replace(day=1)
    return f"{start:%Y-%m}", nxt


def allowance_key(user_id: int, now: datetime) -> str:
    return f"team:{user_id}:{month_of(now)[0]}"


# Sign-up rules -----------------------------------------------------------------------------------


def check_new_account(s: Session, *, settings: Settings, email: str, invite: str | None, now: datetime,
                      email_verified: bool = True, by_email: bool = False) -> Invite | None:
    """Raise SignupRefused unless the team rules let `email` create an account; returns the
    invitation that will be used (None without one). `email` is normalised already.
    An invitation bound to an email may name an address outside ALLOWED_EMAIL_DOMAINS (an admin
    chose it); without one, the domain must be allowed and, from a provider, verified.
    `by_email` (provider sign-ins, which carry no link): an open invitation bound to the verified
    address counts as its link."""
    if settings.signup_mode == "closed":
        raise SignupRefused("Sign-ups are closed on this studio. Ask an administrator to create your account.",
                            key="error.team.closed")
    row = None
    if invite:
        row = s.exec(select(Invite).where(Invite.token_hash == _hash(invite.strip()))).first()
        if row is None:
            raise SignupRefused("This invitation link is not valid. Ask an administrator for a new one.",
                                key="error.team.invite_invalid")
        if row.used_at is not None:
            raise SignupRefused("This invitation has already been used. Ask an administrator for a new one.",
                                key="error.team.invite_used")
        if row.expires_at <= now:
            raise SignupRefused("This invitation has expired. Ask an administrator for a new one.",
                                key="error.team.invite_expired")
        if row.email and row.email != email:
            raise SignupRefused("This invitation is for another email address: sign up with the address "
                                "it was sent to.", key="error.team.invite_other_address")
    elif email_verified and by_email and (row := _open_invite_for(s, email, now)) is not None:
        pass  # a provider vouches for an address an invitation was sent to
    elif settings.signup_mode == "invite":
        raise SignupRefused("This studio is open by invitation only. Ask an administrator for an invitation "
                            "link.", key="error.team.invite_only")
    domains = settings.allowed_email_domain_set
    if domains and not (row is not None and row.email):
        if email.rpartition("@")[2] not in domains:
            raise SignupRefused(f"Sign-ups are open to addresses at {', '.join(sorted(domains))} only.",
                                key="error.team.domain", domains=", ".join(sorted(domains)))
        if not email_verified:
            raise SignupRefused("Your provider does not confirm your email address, and this studio accepts "
                                "only confirmed addresses of its own domains.", key="error.team.unverified")
    return row


def _open_invite_for(s: Session, email: str, now: datetime) -> Invite | None:
    return s.exec(select(Invite).where(Invite.email == email, col(Invite.used_at).is_(None),
                                       Invite.expires_at > now).order_by(col(Invite.id))).first()


def consume_invite(s: Session, invite: Invite, *, user_id: int, now: datetime) -> None:
    """Mark the invitation used by `user_id` (one conditional UPDATE: a racing second use loses)."""
    done = s.exec(update(Invite).where(
        Invite.id == invite.id, col(Invite.used_at).is_(None), Invite.expires_at > now,
    ).values(used_at=now, used_by=user_id))
    if done.rowcount != 1:
        raise SignupRefused("This invitation has already been used. Ask an administrator for a new one.",
                            key="error.team.invite_used")


def grant_allowance(ledger, settings: Settings, *, user_id: int, now: datetime,
                    session: Session | None = None) -> int:
    """The month of `now`'s team bucket for one member, once (the ledger's key); 0 when the
    setting is 0 or it was granted before. `session`: join the caller's write transaction."""
    amount = settings.monthly_allowance_credits
    if amount <= 0:
        return 0
    month, period_end = month_of(now)
    result = ledger.refresh_team(user_id=user_id, allowance=amount, period_end=period_end,
                                 idempotency_key=allowance_key(user_id, now),
                                 note=f"Team allowance for {month}", session=session)
    return 0 if result.replayed else result.amount


# The service ----------------------------------------------------------------------------------------


class Team:
    """Invitations and the monthly team allowance. Callers check who may do what (services/admin.py)."""

    def __init__(self, *, db: Database, ledger, settings: Settings, clock: Callable[[], datetime] = utcnow):
        self.db = db
        self.ledger = ledger
        self.settings = settings
        self.clock = clock

    # Invitations ------------------------------------------------------------------------------

    def create_invite(self, *, created_by: int | None, email: str | None = None, days: int | None = None) -> CreatedInvite:
        """A single-use invitation, valid `days` (INVITE_DAYS by default), optionally bound to `email`."""
        from services.accounts.credentials import normalize_email

        days = self.settings.invite_days if days is None else days
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 365:
            raise ValidationFailed("An invitation is valid from 1 to 365 days.")
        email = normalize_email(email) if email and email.strip() else None
        token = INVITE_PREFIX + secrets.token_urlsafe(24)
        now = self.clock()
        row = Invite(token_hash=_hash(token), email=email, created_by=created_by, created_at=now,
                     expires_at=now + timedelta(days=days))
        with self.db.transaction() as s:
            s.add(row)
            s.flush()
            invite_id = row.id
        log.info("invite created id=%s bound=%s by=%s", invite_id, bool(email), created_by or "cli")
        return CreatedInvite(id=invite_id, token=token, url=self.invite_url(token), email=email,
                             expires_at=row.expires_at)

    def invite_url(self, token: str) -> str:
        return f"{self.settings.base_url}/signup?invite={token}"

    def list_invites(self, *, limit: int = 200) -> list[Invite]:
        with self.db.session() as s:
            return list(s.exec(select(Invite).order_by(col(Invite.id).desc()).limit(limit)).all())

    # The monthly allowance --------------------------------------------------------------------

    def grant_allowance(self, *, user_id: int, session: Session | None = None) -> int:
        """This month's team bucket for one member (no-op when already granted or the setting is 0).
        Returns the credits granted now."""
        return grant_allowance(self.ledger, self.settings, user_id=user_id, now=self.clock(), session=session)

    def refresh_allowances(self) -> dict:
        """Grant this month's team bucket to every active member who has not had it (the sweep
        runs this every minute on every replica; the ledger's key makes each grant exactly once)."""
        if self.settings.monthly_allowance_credits <= 0:
            return {"allowances": 0}
        now = self.clock()
        month, _ = month_of(now)
        with self.db.session() as s:
            members = set(s.exec(select(User.id).where(col(User.disabled_at).is_(None))).all())
            done = set(s.exec(select(CreditGrant.user_id).where(
                CreditGrant.kind == "team", CreditGrant.source_ref.like(f"team:%:{month}"))).all())
        granted = 0
        for user_id in sorted(members - done):
            try:
                granted += 1 if self.grant_allowance(user_id=user_id) else 0
            except NotFound:  # deleted meanwhile
                continue
        return {"allowances": granted}
