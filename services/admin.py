"""Administration. Every call checks, on the server, that the acting user is an admin."""

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
from services.errors import PermissionDenied


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
    def _require(actor: User) -> None:
        if actor is None or not actor.is_admin:
            raise PermissionDenied("This needs an administrator.")

    def grant_credits(self, *, actor: User, email: str, amount: int, note: str | None = None) -> int:
        """Grant `amount` admin credits to the user with `email`; returns their new balance."""
        self._require(actor)
        user = self.accounts.get_user_by_email(email)
        self.ledger.grant(user_id=user.id, amount=amount, kind="admin",
                          idempotency_key=f"admin:{actor.id}:{uuid.uuid4().hex}",
                          note=(note or f"Granted by {actor.email}")[:500])
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
