"""What the ledger returns: a balance, a history page, a hold snapshot, a grant's result."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Balance:
    total: int  # what the user can spend now: unexpired buckets (held credits already taken out)
    held: int  # credits held by generations in progress
    buckets: dict[str, int]  # kind -> unexpired remaining, every kind of GRANT_KINDS present
    next_expiry: datetime | None  # soonest expiry among unexpired buckets with credits left
    subscription_expires_at: datetime | None  # end of the current subscription bucket, if any


@dataclass(frozen=True)
class HistoryRow:
    at: datetime
    kind: str  # the ledger entry kind
    what: str  # a user-facing label; a released hold reads "Not charged ..."
    delta: int  # change of the visible balance
    balance_after: int
    # What it was, for a person: the style and resolution of a generation, the pack or plan
    # bought, the pack a refund took credits from, an administrator's note.
    detail: str = ""
    generation_id: str | None = None  # the image a generation entry paid for
    image: str | None = None  # "gallery" (it can be opened), "trash", or None (gone or never made)


@dataclass(frozen=True)
class HistoryPage:
    rows: list[HistoryRow]
    page: int
    pages: int
    total: int


@dataclass(frozen=True, slots=True)
class Reservation:
    """A hold as it was when a ledger call returned it (a snapshot of its `holds` row)."""

    id: int
    user_id: int
    job_id: str
    amount: int
    status: str  # pending | captured | released | expired
    split: dict  # {grant_id as str: credits taken from that bucket}
    created_at: datetime
    expires_at: datetime
    settled_at: datetime | None = None
    reason: str | None = None


@dataclass(frozen=True)
class GrantResult:
    grant_id: int | None
    amount: int
    balance: int
    replayed: bool
