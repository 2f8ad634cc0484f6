"""Per-user limits on generating: how many run at once (`UserSlots` queues them in this process,
`check_slots` counts them in the database for every replica) and how many may start per minute
(`check_rate`, counted from the generation rows).

Both database checks run inside the transaction that opens the job, after it has locked the
user's row (`FOR NO KEY UPDATE` on PostgreSQL, the one writer on SQLite), so two replicas opening
jobs for one user at the same moment are counted one after the other: neither limit can be
overrun by a race between processes."""

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


class SlotsTaken(Exception):
    """The user already has `limit` generations in progress (in any replica): wait and retry."""


class UserSlots:
    """At most `limit` generations per user at once in this process; the rest wait their turn
    here (in order). Across replicas `check_slots` has the last word."""

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


def rate_room(db: Database, user_id: int, *, limit: int, now: datetime) -> int:
    """How many more generations the user may start this minute."""
    since = now - RATE_WINDOW
    with db.session() as s:
        recent = s.exec(select(func.count()).select_from(Generation).where(
            Generation.user_id == user_id, Generation.created_at > since)).one()
    return max(0, limit - recent)


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


def check_slots(session: Session, user_id: int, *, limit: int) -> None:
    """SlotsTaken when the user has `limit` pending generations, in this process or any other
    sharing the database. Inside the job-opening transaction, after the user's row is locked."""
    running = session.exec(select(func.count()).select_from(Generation).where(
        Generation.user_id == user_id, Generation.status == "pending")).one()
    if running >= limit:
        raise SlotsTaken(running)
