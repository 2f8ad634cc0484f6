"""The steps every ledger write is built from: the transaction (own or the caller's), the
user's lock, booking due expiries, debiting buckets in spend order, adding a bucket, the
idempotent "once", settling a hold and giving its credits back."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from services.db import Database
from services.errors import Conflict, NotFound, ValidationFailed
from services.ledger.results import GrantResult, Reservation
from services.ledger.rules import MAX_BALANCE, SPEND_RANK
from services.ledger.statements import (
    HELD,
    INSERT_ENTRY,
    LIVE_BUCKETS,
    LOCK_HOLD_OWNER,
    LOCK_USER,
    SETTLE,
    G,
    H,
    conditional_debit,
    entry_by_key,
    entry_row,
)

log = logging.getLogger(__name__)


class LedgerBooking:
    """The Ledger's shared write steps (a mixin of `Ledger`, which sets these attributes)."""

    db: Database
    hold_ttl: timedelta
    clock: Callable[[], datetime]
    _pg: bool

    @contextmanager
    def _conn(self, session: Session | None) -> Iterator[Connection]:
        """The connection of the caller's transaction, or of a new write transaction."""
        if session is not None:
            session.flush()  # Core statements below do not autoflush the caller's pending objects
            yield session.connection()
        else:
            with self.db.write_connection() as conn:
                yield conn

    def _pg_call(self, session: Session | None, sql: str, params: tuple) -> tuple:
        """Call a ledger function: in the caller's transaction, or as its own (one round trip)."""
        if session is None:
            return self.db.call(sql, params)
        session.flush()
        return session.connection().exec_driver_sql(sql, params).one()

    def _lock_user(self, conn: Connection, user_id: int) -> None:
        """Serialise this user's ledger writes (PostgreSQL row lock; a plain read on SQLite,
        where the transaction already holds the database's write lock)."""
        found = conn.execute(LOCK_USER, {"uid": user_id}).first()
        if found is None:
            raise NotFound("No such user.")

    def _book_expiries(self, conn: Connection, user_id: int, now: datetime, count: bool = False):
        """Book due expiries for a locked user. Returns (visible balance, live buckets in spend
        order as [id, remaining] lists), or (visible balance, number booked) with count=True."""
        rows = conn.execute(LIVE_BUCKETS, {"uid": user_id}).all()
        balance = sum(r[2] for r in rows)
        live, expired = [], []
        for gid, _kind, remaining, expires_at in sorted(rows, key=lambda r: (SPEND_RANK.get(r[1], len(SPEND_RANK)), r[0])):
            if expires_at is not None and expires_at <= now:
                balance -= remaining
                expired.append(entry_row(user_id, "expiry", delta=-remaining, balance_after=balance, grant_id=gid, at=now))
            else:
                live.append([gid, remaining])
        if expired:
            conn.execute(update(G).where(G.c.id.in_([e["grant_id"] for e in expired])).values(remaining=0))
            conn.execute(INSERT_ENTRY, expired)
        return balance, (len(expired) if count else live)

    def _debit(self, conn: Connection, live: list[list[int]], amount: int) -> dict[int, int]:
        """Take `amount` from the live buckets in order; returns {grant_id: taken}."""
        split: dict[int, int] = {}
        left = amount
        for bucket in live:
            n = min(bucket[1], left)
            if n <= 0:
                break
            conditional_debit(conn, bucket[0], n)
            bucket[1] -= n
            split[bucket[0]] = n
            left -= n
        return split

    def _add_bucket(
        self, conn: Connection, *, user_id: int, amount: int, kind: str, entry_kind: str, key: str,
        expires_at: datetime | None, note: str | None, balance: int, now: datetime,
    ) -> GrantResult:
        """Every path that adds credits ends here: refuse (nothing written) past MAX_BALANCE."""
        held = conn.execute(HELD, {"uid": user_id}).scalar_one()
        if balance + held + amount > MAX_BALANCE:
            raise ValidationFailed(
                f"An account can hold at most {MAX_BALANCE:,} credits (held ones included). This one has "
                f"{balance + held:,}, so {amount:,} more cannot be added. Nothing was changed."
            )
        grant_id = conn.execute(
            insert(G).values(
                user_id=user_id, kind=kind, original=amount, remaining=amount, expires_at=expires_at,
                source_ref=key, note=note, created_at=now,
            ).returning(G.c.id)
        ).scalar_one()
        conn.execute(INSERT_ENTRY, [entry_row(
            user_id, entry_kind, delta=amount, balance_after=balance + amount, grant_id=grant_id,
            key=key, note=note, at=now,
        )])
        return GrantResult(grant_id=grant_id, amount=amount, balance=balance + amount, replayed=False)

    def _once(self, session: Session | None, user_id: int, key: str, do: Callable, replay: Callable):
        """Run `do(conn)` in a transaction unless `key` was already booked; then return
        `replay(first_entry)` instead.

        Under the user's lock a replay by the same user is found by the check; the savepoint
        also covers the same key racing for two different users (the UNIQUE key decides).
        """
        with self._conn(session) as conn:
            self._lock_user(conn, user_id)
            first = entry_by_key(conn, key)
            if first is None:
                try:
                    with conn.begin_nested():
                        return do(conn)
                except IntegrityError:
                    first = entry_by_key(conn, key)
                    if first is None:
                        raise
            if first.user_id != user_id:
                raise Conflict("This request was already processed for another account.")
            return replay(first)

    def _settle(self, conn: Connection, hold_id: int, *, status: str, reason: str | None,
                now: datetime) -> tuple[Reservation, bool]:
        """Move a pending hold to `status` with one conditional UPDATE. Returns the hold as it
        is afterwards and whether this call changed it (exactly one caller ever does)."""
        if self._pg:
            # Lock the owner's row first, like every other write for this user (no deadlocks).
            owner = conn.execute(LOCK_HOLD_OWNER, {"hid": hold_id}).first()
            if owner is None:
                raise NotFound("No such reservation.")
        row = conn.execute(
            SETTLE, {"hid": hold_id, "new_status": status, "new_reason": reason, "at": now}
        ).first()
        if row is not None:
            return Reservation(**row._mapping), True
        row = conn.execute(select(H).where(H.c.id == hold_id)).first()
        if row is None:
            raise NotFound("No such reservation.")
        return Reservation(**row._mapping), False

    def _release(self, hold_id: int, reason: str, *, status: str, session: Session | None = None) -> Reservation:
        now = self.clock()
        with self._conn(session) as conn:
            settled, changed = self._settle(conn, hold_id, status=status, reason=reason, now=now)
            if not changed:
                if settled.status == "captured":
                    log.warning("release of hold %s ignored: it was captured", hold_id)
                return settled
            user_id = settled.user_id
            balance, _ = self._book_expiries(conn, user_id, now)
            split = {int(gid): n for gid, n in settled.split.items()}
            for gid, n in sorted(split.items()):
                conn.execute(update(G).where(G.c.id == gid).values(remaining=G.c.remaining + n))
            balance += settled.amount
            entries = [entry_row(
                user_id, "release", held_delta=-settled.amount, balance_after=balance, hold_id=hold_id,
                key=f"settle:{settled.job_id}", note=reason, at=now,
            )]
            # Credits returned to a bucket that expired during the generation expire at once.
            lapsed = conn.execute(
                select(G.c.id, G.c.remaining)
                .where(G.c.id.in_(list(split)), G.c.expires_at <= now, G.c.remaining > 0)
                .order_by(G.c.id)
            ).all()
            for gid, remaining in lapsed:
                balance -= remaining
                entries.append(entry_row(user_id, "expiry", delta=-remaining, balance_after=balance, grant_id=gid, at=now))
            if lapsed:
                conn.execute(update(G).where(G.c.id.in_([gid for gid, _ in lapsed])).values(remaining=0))
            conn.execute(INSERT_ENTRY, entries)
            return settled
