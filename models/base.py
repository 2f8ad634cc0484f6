"""Shared column helpers.

SQLModel stores `datetime` fields as UTCDateTime: values must be timezone-aware and come back
aware in UTC on every database. Always use `utcnow()`, never a naive datetime.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
