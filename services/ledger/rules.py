"""The ledger's limits and spend order, and the checks every public method runs on its input
(bad input raises ValidationFailed before anything is read or written)."""

from __future__ import annotations

from datetime import datetime

from models.ledger import Hold
from services.errors import ValidationFailed
from services.ledger.results import Reservation

# Soonest-expiring first (the team allowance ends with the calendar month); oldest first within a kind.
# PostgreSQL's ledger_spend_rank (migration 0007) says the same.
SPEND_ORDER = ("team", "subscription", "trial", "admin", "pack")
SPEND_RANK = {kind: i for i, kind in enumerate(SPEND_ORDER)}
MAX_AMOUNT = 100_000_000  # per operation; keeps every sum far inside a 32-bit column
# Most credits one account may have, held ones included: every amount column (remaining,
# balance_after, ...) is a 32-bit integer on PostgreSQL, and MAX_BALANCE + MAX_AMOUNT < 2**31.
MAX_BALANCE = 1_000_000_000


def hold_id_of(hold: Reservation | int) -> int:
    if isinstance(hold, Reservation | Hold):
        if hold.id is None:
            raise ValidationFailed("That reservation was never saved.")
        return hold.id
    if isinstance(hold, bool) or not isinstance(hold, int):
        raise ValidationFailed("Expected a reservation or its id.")
    return hold


def check_user_id(user_id) -> None:
    if isinstance(user_id, bool) or not isinstance(user_id, int) or user_id < 1:
        raise ValidationFailed("Unknown user.")


def check_amount(amount) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int) or not 1 <= amount <= MAX_AMOUNT:
        raise ValidationFailed(f"The amount must be a whole number of credits from 1 to {MAX_AMOUNT:,}.")


def check_key(key, name: str = "idempotency_key") -> None:
    if not isinstance(key, str) or not key.strip() or len(key) > 255:
        raise ValidationFailed(f"{name} must be a non-empty string of at most 255 characters.")


def check_note(note) -> None:
    if note is not None and (not isinstance(note, str) or len(note) > 500):
        raise ValidationFailed("The note must be text of at most 500 characters.")


def check_aware(value, name: str) -> None:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValidationFailed(f"{name} must be a timezone-aware datetime.")
