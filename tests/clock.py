"""The one test clock: services take `clock=` (a callable returning an aware UTC datetime)."""

from __future__ import annotations

from datetime import datetime, timedelta

from models.base import utcnow


class Clock:
    """Stands still until told: `clock.advance(minutes=16)`, or set `clock.now` directly."""

    def __init__(self, start: datetime | None = None):
        self.now = utcnow() if start is None else start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now
