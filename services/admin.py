"""Administration. Every call checks, on the server, that the actor is an admin user or the
operator (`OPERATOR`: the CLI, run by whoever has the server's shell, database and secrets)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func
from sqlmodel import col, select

from models.base import utcnow
from models.generation import Generation, ModerationEvent
from models.user import User
from services.accounts import Accounts
from services.db import Database
from services.errors import PermissionDenied, ValidationFailed
from services.ledger import MAX_AMOUNT


@dataclass(frozen=True)
class Operator:
    """The actor behind the CLI. Only code on the server can pass it: no request carries it."""

    key: str = "cli"
    default_note: str = "Granted from the CLI"


OPERATOR = Operator()


@dataclass(frozen=True)
class Overview:
    users: int
    generations_24h: int
    failed_24h: int
    rejections_24h: int


class Admin:
    def __init__(self, *, db: Database, accounts: Accounts, ledger):
        self.db = db
        self.accounts = accounts
        self.ledger = ledger

    @staticmethod
    def _require(actor: User | Operator) -> None:
        if actor is OPERATOR:
            return
        if not isinstance(actor, User) or not actor.is_admin:
            raise PermissionDenied("This needs an administrator.")

    def grant_credits(self, *, actor: User | Operator, email: str, amount: int | float,
                      note: str | None = None) -> int:
        """Grant `amount` admin credits to the user with `email`; returns their new balance.

        `amount` must be a whole number from 1 to MAX_AMOUNT. A float with a whole value (1.0,
        what a number field may send) counts as that number; 1.5, True, "3" or None are refused,
        never rounded. `actor` is an admin user (the UI) or OPERATOR (the CLI).
        """
        self._require(actor)
        amount = _whole_credits(amount)
        user = self.accounts.get_user_by_email(email)
        if actor is OPERATOR:
            key, default_note = f"admin:{actor.key}:{uuid.uuid4().hex}", actor.default_note
        else:
            key, default_note = f"admin:{actor.id}:{uuid.uuid4().hex}", f"Granted by {actor.email}"
        self.ledger.grant(user_id=user.id, amount=amount, kind="admin", idempotency_key=key,
                          note=(note or default_note)[:500])
        return self.ledger.balance(user.id).total

    def overview(self, *, actor: User) -> Overview:
        self._require(actor)
        since = utcnow() - timedelta(hours=24)
        with self.db.session() as s:
            users = s.exec(select(func.count()).select_from(User)).one()
            gens = s.exec(select(func.count()).select_from(Generation).where(Generation.created_at > since)).one()
            failed = s.exec(select(func.count()).select_from(Generation).where(
                Generation.created_at > since, Generation.status == "failed")).one()
            rejected = s.exec(select(func.count()).select_from(ModerationEvent).where(
                ModerationEvent.created_at > since)).one()
        return Overview(users=users, generations_24h=gens, failed_24h=failed, rejections_24h=rejected)

    def recent_rejections(self, *, actor: User, limit: int = 50) -> list[tuple[ModerationEvent, str]]:
        """Prompts refused by moderation, newest first, with the user's email."""
        self._require(actor)
        with self.db.session() as s:
            rows = s.exec(select(ModerationEvent, User.email).join(User, User.id == ModerationEvent.user_id)
                          .order_by(col(ModerationEvent.created_at).desc()).limit(limit)).all()
        return [(event, email) for event, email in rows]


def _whole_credits(amount) -> int:
    if isinstance(amount, float) and amount.is_integer():
        amount = int(amount)
    if isinstance(amount, bool) or not isinstance(amount, int) or not 1 <= amount <= MAX_AMOUNT:
        raise ValidationFailed(f"Enter a whole number of credits from 1 to {MAX_AMOUNT:,}.")
    return amount
