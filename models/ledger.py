"""The credit ledger aggregate: buckets (grants), an append-only ledger, and holds.

Its rules and invariants are stated once, in services/ledger/__init__.py.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from models.base import utcnow

GRANT_KINDS = ("team", "subscription", "trial", "admin", "pack")
# What a person reads for each kind: the Account tab's balance, the history, the CLI and the docs.
CREDIT_KIND_LABELS = {
    "team": "Team allowance (monthly)",
    "subscription": "Subscription",
    "trial": "Free trial",
    "admin": "Granted by an administrator",
    "pack": "Credit pack",
}
ENTRY_KINDS = ("grant", "hold", "capture", "release", "expiry", "refund", "clawback", "adjust")
HOLD_STATUSES = ("pending", "captured", "released", "expired")


class CreditGrant(SQLModel, table=True):
    """One bucket of credits."""

    __tablename__ = "credit_grants"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    kind: str = Field(max_length=16)  # team | subscription | trial | admin | pack
    original: int
    remaining: int
    expires_at: datetime | None = None
    source_ref: str | None = Field(default=None, max_length=255, index=True)
    note: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow)


class LedgerEntry(SQLModel, table=True):
    """Append-only record of every movement. The idempotency key makes replays no-ops."""

    __tablename__ = "ledger_entries"
    # A user's entries in order: history pages and the last balance_after (capture) read it.
    __table_args__ = (Index("ix_ledger_entries_user_id_id", "user_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", ondelete="CASCADE")
    kind: str = Field(max_length=16)
    delta: int = 0  # effect on the ledger sum (granted - spent - expired - clawed back)
    held_delta: int = 0  # effect on credits held by generations in progress
    balance_after: int = 0  # the user-visible balance after this entry
    grant_id: int | None = Field(default=None, foreign_key="credit_grants.id")
    hold_id: int | None = Field(default=None, foreign_key="holds.id")
    idempotency_key: str | None = Field(default=None, max_length=255, unique=True)
    note: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, index=True)


class Hold(SQLModel, table=True):
    """Credits reserved by a generation until it is captured or released."""

    __tablename__ = "holds"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    job_id: str = Field(max_length=64, unique=True)
    amount: int
    status: str = Field(default="pending", max_length=16, index=True)
    split: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))  # {grant_id: n}
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    settled_at: datetime | None = None
    reason: str | None = Field(default=None, max_length=500)
