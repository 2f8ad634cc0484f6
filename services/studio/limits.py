"""Per-user limits on generating: how many run at once in this process (`UserSlots`) and how
many may start per minute (`check_rate`, counted from the generation rows)."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, select

from models.generation import Generation
from services.db import Database
from services.errors import RateLimited

RATE_WINDOW = timedelta(minutes=1)


class UserSlots:
    """At most `limit` generations per user at once in this process; the rest wait their turn."""

    def __init__(self, limit: int):
        self.limit = limit
        self._entries: dict[int, list] = {}  # user id -> [semaphore, users]

    @asynccontextmanager
    async def slot(self, user_id: int, *, exempt: bool = False):
        if exempt:
            yield False
            return
        entry = self._entries.get(user_id)
        if entry is None:
            entry = self._entries[user_id] = [asyncio.Semaphore(self.limit), 0]
        entry[1] += 1
        waited = entry[0].locked()
        try:
            async with entry[0]:
                yield waited
        finally:
            entry[1] -= 1
            if entry[1] == 0 and self._entries.get(user_id) is entry:
                del self._entries[user_id]


def check_rate(db: Database, user_id: int, *, limit: int, now: datetime, session: Session | None = None) -> None:
    """RateLimited when the user started `limit` generations in the last minute. Inside `session`
    when given (the transaction that opens the job), else in a session of its own."""
    since = now - RATE_WINDOW
    query = select(func.count()).select_from(Generation).where(
        Generation.user_id == user_id, Generation.created_at > since)
    if session is None:
        with db.session() as s:
            recent = s.exec(query).one()
    else:
        recent = session.exec(query).one()
    if recent >= limit:
        raise RateLimited(
            f"You can start {limit} images a minute. Please wait a moment and try again — nothing was charged.",
            key="error.rate_limited", limit=limit,
        )
