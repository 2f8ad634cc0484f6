"""`Ledger`, the only way credits move: its write operations (grants, refresh, adjust, clawback;
reserve, capture, release, the sweeps; booking expiries). Reads and reconcile come from mixins."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from models.base import utcnow
from models.ledger import GRANT_KINDS
from services.db import Database
from services.errors import InsufficientCredits, NotFound, ValidationFailed
from services.ledger.booking import LedgerBooking
from services.ledger.reads import LedgerReads
from services.ledger.reconcile import LedgerReconcile
from services.ledger.results import GrantResult, Reservation
from services.ledger.rules import (
    MAX_AMOUNT,
    check_amount,
    check_aware,
    check_key,
    check_note,
    check_user_id,
    hold_id_of,
)
from services.ledger.statements import (
    CAPTURE_ENTRY,
    INSERT_ENTRY,
    INSERT_HOLD,
    PG_CAPTURE,
    PG_RESERVE,
    G,
    H,
    conditional_debit,
    entry_row,
    grant_result,
    hold_by_job,
    pg_reservation,
    same_hold,
)

log = logging.getLogger(__name__)


class Ledger(LedgerReads, LedgerReconcile, LedgerBooking):
    """The only way credits move. Thread-safe; one instance per process is enough."""

    def __init__(
        self, db: Database, *, hold_ttl_seconds: int = 900, clock: Callable[[], datetime] = utcnow
    ):
        self.db = db
        self.hold_ttl = timedelta(seconds=hold_ttl_seconds)
        self.clock = clock
        self._pg = not db.is_sqlite

    # Granting ---------------------------------------------------------------------------------

    def grant(
        self, *, user_id: int, amount: int, kind: str, idempotency_key: str,
        expires_at: datetime | None = None, note: str | None = None, session: Session | None = None,
    ) -> GrantResult:
        """Add a bucket of `amount` credits (its `source_ref` is the idempotency key).
        Repeating the key returns the first result with replayed=True and changes nothing."""
        check_user_id(user_id)
        check_amount(amount)
        if kind not in GRANT_KINDS:
            raise ValidationFailed(f"Unknown credit kind {kind!r}; expected one of {', '.join(GRANT_KINDS)}.")
        check_key(idempotency_key)
        check_note(note)
        now = self.clock()
        if expires_at is not None:
            check_aware(expires_at, "expires_at")
            if expires_at <= now:
                raise ValidationFailed("The expiry date must be in the future.")
        elif kind == "subscription":
            raise ValidationFailed("Subscription credits need an expiry date (the end of the period).")

        def do(conn: Connection) -> GrantResult:
            balance, _ = self._book_expiries(conn, user_id, now)
            return self._add_bucket(
                conn, user_id=user_id, amount=amount, kind=kind, entry_kind="grant", key=idempotency_key,
                expires_at=expires_at, note=note, balance=balance, now=now,
            )

        return self._once(session, user_id, idempotency_key, do, grant_result)

    def refresh_subscription(
        self, *, user_id: int, allowance: int, period_end: datetime, idempotency_key: str,
        note: str | None = None, session: Session | None = None,
    ) -> GrantResult:
        """Start a billing period: what is left of the current subscription bucket(s) expires
        (no rollover) and a new bucket of `allowance` credits expires at `period_end`.

        A refresh whose `period_end` is earlier than the current subscription bucket's end
        (an out-of-order webhook for an older invoice) changes nothing and returns amount 0;
        its key is still recorded.
        """
        return self._refresh("subscription", user_id=user_id, allowance=allowance, period_end=period_end,
                             idempotency_key=idempotency_key, note=note, session=session)

    def refresh_team(
        self, *, user_id: int, allowance: int, period_end: datetime, idempotency_key: str,
        note: str | None = None, session: Session | None = None,
    ) -> GrantResult:
        """Start a team allowance month (MONTHLY_ALLOWANCE_CREDITS): exactly like
        `refresh_subscription`, on the "team" bucket. The key (`team:<user>:<YYYY-MM>`) makes it
        once per member per month, whichever process gets there first."""
        return self._refresh("team", user_id=user_id, allowance=allowance, period_end=period_end,
                             idempotency_key=idempotency_key, note=note, session=session)

    def _refresh(
        self, kind: str, *, user_id: int, allowance: int, period_end: datetime, idempotency_key: str,
        note: str | None, session: Session | None,
    ) -> GrantResult:
        check_user_id(user_id)
        check_amount(allowance)
        check_key(idempotency_key)
        check_note(note)
        check_aware(period_end, "period_end")
        now = self.clock()
        if period_end <= now:
            raise ValidationFailed("The end of the billing period must be in the future.")

        def do(conn: Connection) -> GrantResult:
            balance, _ = self._book_expiries(conn, user_id, now)
            current = conn.execute(
                select(G.c.id, G.c.remaining, G.c.expires_at)
                .where(G.c.user_id == user_id, G.c.kind == kind, G.c.expires_at > now)
                .order_by(G.c.id)
            ).all()
            if any(expires_at > period_end for _, _, expires_at in current):
                conn.execute(INSERT_ENTRY, [entry_row(
                    user_id, "grant", balance_after=balance, key=idempotency_key,
                    note=f"out-of-date {kind} refresh ignored", at=now,
                )])
                return GrantResult(grant_id=None, amount=0, balance=balance, replayed=False)
            expired = []
            for gid, remaining, _ in current:
                if remaining > 0:
                    balance -= remaining
                    expired.append(entry_row(
                        user_id, "expiry", delta=-remaining, balance_after=balance, grant_id=gid,
                        note="subscription period ended" if kind == "subscription" else "team month ended",
                        at=now,
                    ))
            if current:
                conn.execute(
                    update(G).where(G.c.id.in_([gid for gid, _, _ in current])).values(remaining=0, expires_at=now)
                )
            if expired:
                conn.execute(INSERT_ENTRY, expired)
            return self._add_bucket(
                conn, user_id=user_id, amount=allowance, kind=kind, entry_kind="grant",
                key=idempotency_key, expires_at=period_end, note=note, balance=balance, now=now,
            )

        return self._once(session, user_id, idempotency_key, do, grant_result)

    def adjust(
        self, *, user_id: int, amount: int, idempotency_key: str, note: str | None = None,
        session: Session | None = None,
    ) -> GrantResult:
        """An admin correction. Positive: a new non-expiring admin bucket. Negative: takes up to
        -amount from the unexpired buckets in spend order, never below zero (the result's
        `amount` is what actually changed)."""
        check_user_id(user_id)
        if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0 or abs(amount) > MAX_AMOUNT:
            raise ValidationFailed(f"The amount must be a whole number other than 0, at most {MAX_AMOUNT:,} either way.")
        check_key(idempotency_key)
        check_note(note)
        now = self.clock()

        def do(conn: Connection) -> GrantResult:
            balance, live = self._book_expiries(conn, user_id, now)
            if amount > 0:
                return self._add_bucket(
                    conn, user_id=user_id, amount=amount, kind="admin", entry_kind="adjust",
                    key=idempotency_key, expires_at=None, note=note, balance=balance, now=now,
                )
            taken = sum(self._debit(conn, live, min(-amount, balance)).values())
            conn.execute(INSERT_ENTRY, [entry_row(
                user_id, "adjust", delta=-taken, balance_after=balance - taken, key=idempotency_key,
                note=note, at=now,
            )])
            return GrantResult(grant_id=None, amount=-taken, balance=balance - taken, replayed=False)

        return self._once(session, user_id, idempotency_key, do, grant_result)

    def clawback(
        self, *, user_id: int, source_ref: str, idempotency_key: str, amount: int | None = None,
        session: Session | None = None,
    ) -> int:
        """Take back what is left of the bucket(s) granted under `source_ref` (at most `amount`),
        never below zero; returns the credits taken (a replay returns the first answer).

        Raises NotFound (nothing written) if no bucket was ever granted under `source_ref`, so a
        refund that arrives before its purchase can be retried later.
        """
        check_user_id(user_id)
        check_key(source_ref, "source_ref")
        check_key(idempotency_key)
        if amount is not None:
            check_amount(amount)
        now = self.clock()

        def do(conn: Connection) -> int:
            balance, _ = self._book_expiries(conn, user_id, now)
            grants = conn.execute(
                select(G.c.id, G.c.remaining)
                .where(G.c.user_id == user_id, G.c.source_ref == source_ref)
                .order_by(G.c.id)
            ).all()
            if not grants:
                raise NotFound("No credits were granted for that reference.")
            limit = MAX_AMOUNT if amount is None else amount
            taken = 0
            for gid, remaining in grants:
                n = min(remaining, limit - taken)
                if n > 0:
                    conditional_debit(conn, gid, n)
                    taken += n
            conn.execute(INSERT_ENTRY, [entry_row(
                user_id, "clawback", delta=-taken, balance_after=balance - taken, grant_id=grants[0][0],
                key=idempotency_key, note=source_ref[:500], at=now,
            )])
            return taken

        return self._once(session, user_id, idempotency_key, do, lambda e: -e.delta)

    # Holds ------------------------------------------------------------------------------------

    def reserve(self, *, user_id: int, amount: int, job_id: str, session: Session | None = None) -> Reservation:
        """Hold `amount` credits for job `job_id`, taken from the buckets in spend order.

        Raises InsufficientCredits(needed=, available=) when the balance is too small. Calling it
        again with the same job id returns the existing hold (Conflict if user or amount differ).
        """
        check_user_id(user_id)
        check_amount(amount)
        if not isinstance(job_id, str) or not job_id.strip() or len(job_id) > 64:
            raise ValidationFailed("The job id must be a non-empty string of at most 64 characters.")
        now = self.clock()
        if self._pg:
            return self._reserve_pg(user_id, amount, job_id, now, session)
        try:
            with self._conn(session) as conn:
                if session is not None:  # the caller's transaction cannot be retried: look first
                    self._lock_user(conn, user_id)
                    existing = hold_by_job(conn, job_id)
                    if existing is not None:
                        return same_hold(existing, user_id, amount)
                balance, live = self._book_expiries(conn, user_id, now)
                if balance < amount:
                    existing = hold_by_job(conn, job_id)
                    if existing is not None:
                        return same_hold(existing, user_id, amount)
                    if session is None:
                        self._lock_user(conn, user_id)  # an unknown user is NotFound on both stores
                    raise InsufficientCredits(needed=amount, available=balance)
                split = {str(gid): n for gid, n in self._debit(conn, live, amount).items()}
                expires_at = now + self.hold_ttl
                hold_id = conn.execute(INSERT_HOLD, {
                    "user_id": user_id, "job_id": job_id, "amount": amount, "status": "pending",
                    "split": split, "created_at": now, "expires_at": expires_at,
                    "settled_at": None, "reason": None,
                }).scalar_one()
                conn.execute(INSERT_ENTRY, entry_row(
                    user_id, "hold", held_delta=amount, balance_after=balance - amount, hold_id=hold_id,
                    key=f"hold:{job_id}", at=now,
                ))
                return Reservation(
                    id=hold_id, user_id=user_id, job_id=job_id, amount=amount, status="pending",
                    split=split, created_at=now, expires_at=expires_at,
                )
        except IntegrityError:
            if session is not None:
                raise
            with self.db.session() as s:  # the same job id won a race: answer like a replay
                existing = hold_by_job(s.connection(), job_id)
            if existing is None:
                raise
            return same_hold(existing, user_id, amount)

    def _reserve_pg(self, user_id: int, amount: int, job_id: str, now: datetime, session: Session | None) -> Reservation:
        """PostgreSQL: the same steps as the SQLite path above, in one call of the
        `ledger_reserve` function (alembic/versions/0002): lock the user, book due expiries,
        debit in spend order, insert the hold and its entry."""
        params = (user_id, amount, job_id, now, now + self.hold_ttl)
        try:
            row = self._pg_call(session, PG_RESERVE, params)
        except IntegrityError:
            if session is not None:
                raise
            row = self._pg_call(None, PG_RESERVE, params)  # the same job id won a race: now a replay
        outcome = row[0]
        if outcome == "no_user":
            raise NotFound("No such user.")
        if outcome == "insufficient":
            raise InsufficientCredits(needed=amount, available=row[1])
        hold = pg_reservation(row)
        return same_hold(hold, user_id, amount) if outcome == "existing" else hold

    def capture(self, hold: Reservation | int, *, session: Session | None = None) -> Reservation:
        """Charge a pending hold (after the image is stored). Exactly once: calling it again, or
        on a hold that was released, changes nothing and returns the hold as it is — check
        `.status == "captured"`."""
        hold_id = hold_id_of(hold)
        now = self.clock()
        if self._pg:
            # One call of `ledger_capture` (alembic/versions/0002): the steps below.
            row = self._pg_call(session, PG_CAPTURE, (hold_id, now))
            if row[0] == "not_found":
                raise NotFound("No such reservation.")
            settled = pg_reservation(row)
            if settled.status != "captured":
                log.warning("capture of hold %s ignored: it is %s", hold_id, settled.status)
            return settled
        with self._conn(session) as conn:
            settled, changed = self._settle(conn, hold_id, status="captured", reason=None, now=now)
            if not changed:
                if settled.status != "captured":
                    log.warning("capture of hold %s ignored: it is %s", hold_id, settled.status)
                return settled
            # A capture leaves the visible balance as it is: its balance_after repeats the last
            # entry's (read in the same statement, under the user's lock).
            conn.execute(CAPTURE_ENTRY, {
                "uid": settled.user_id, "amount": settled.amount, "hid": hold_id,
                "key": f"settle:{settled.job_id}", "at": now,
            })
            return settled

    def release(self, hold: Reservation | int, reason: str, *, session: Session | None = None) -> Reservation:
        """Give a pending hold's credits back to the buckets they came from (the generation
        failed: not charged). Exactly once; a captured hold is never released."""
        if not isinstance(reason, str):
            raise ValidationFailed("A reason is required.")
        return self._release(hold_id_of(hold), reason[:500], status="released", session=session)

    def sweep_stale_holds(self, *, is_stored: Callable[[str], bool]) -> dict:
        """Settle pending holds past their expiry (a process died mid-generation).

        A hold whose image was stored (`is_stored(job_id)`) is captured; any other is given
        back like a release but with status "expired" (so it can be told apart from a failure
        the app saw). Returns {"captured": n, "released": n, "errors": n}; a hold whose check
        raised is left pending for the next sweep. Safe to run from several processes at once.
        """
        now = self.clock()
        with self.db.session() as s:
            stale = s.connection().execute(
                select(H.c.id, H.c.job_id).where(H.c.status == "pending", H.c.expires_at <= now).order_by(H.c.id)
            ).all()
        return self._settle_left_behind(stale, is_stored, "stale hold: the image was never stored")

    def settle_jobs_of_gone_process(self, *, job_ids: list[str], is_stored: Callable[[str], bool]) -> dict:
        """Settle the pending holds of these jobs now, before they expire: the process that ran
        them is known to be gone. Exactly like `sweep_stale_holds` otherwise (captured if
        stored, else "expired"); holds already settled are left as they are."""
        if not job_ids:
            return {"captured": 0, "released": 0, "errors": 0}
        with self.db.session() as s:
            pending = s.connection().execute(
                select(H.c.id, H.c.job_id).where(H.c.status == "pending", H.c.job_id.in_(list(job_ids)))
                .order_by(H.c.id)
            ).all()
        return self._settle_left_behind(pending, is_stored, "the app stopped before the image was stored")

    def _settle_left_behind(self, holds, is_stored: Callable[[str], bool], reason: str) -> dict:
        counts = {"captured": 0, "released": 0, "errors": 0}
        for hold_id, job_id in holds:
            try:
                stored = bool(is_stored(job_id))
            except Exception:
                log.exception("sweep: could not tell whether job %s was stored", job_id)
                counts["errors"] += 1
                continue
            if stored:
                if self.capture(hold_id).status == "captured":
                    counts["captured"] += 1
            elif self._release(hold_id, reason, status="expired").status == "expired":
                counts["released"] += 1
        return counts

    # Expiry -----------------------------------------------------------------------------------

    def expire_due(self, *, user_id: int | None = None) -> int:
        """Book "expiry" entries for expired buckets that still hold credits; returns how many
        buckets were booked. (Expired buckets never count towards a balance either way.)"""
        now = self.clock()
        q = select(G.c.user_id).where(G.c.remaining > 0, G.c.expires_at <= now).distinct()
        if user_id is not None:
            q = q.where(G.c.user_id == user_id)
        with self.db.session() as s:
            users = sorted(s.connection().execute(q).scalars().all())
        booked = 0
        for uid in users:
            with self._conn(None) as conn:
                if self._pg:
                    self._lock_user(conn, uid)
                booked += self._book_expiries(conn, uid, now, count=True)[1]
        return booked
