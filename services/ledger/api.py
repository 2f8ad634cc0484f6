"""The credit ledger: buckets (grants), holds for generations in progress, an append-only ledger.

Every movement of a credit goes through `Ledger`. The rules:

- Buckets are spent in SPEND_ORDER (the soonest-expiring kind first), oldest first within a kind.
- A hold debits its buckets at once (ledger entry: delta 0, held_delta +amount). Capture books
  delta -amount, held_delta -amount. Release puts the credits back into the same buckets
  (delta 0, held_delta -amount); what goes back into a bucket that expired meanwhile expires at
  once (an "expiry" entry follows the release).
- The visible balance is the sum of `remaining` over unexpired buckets (held credits are already
  out of the buckets). A bucket is expired once `expires_at <= now`, whether or not an "expiry"
  entry has been booked yet: expired buckets never count.
- Each entry's `balance_after` is the visible balance after it, so along a user's entries
  `balance_after[i] == balance_after[i-1] + delta[i] - held_delta[i]`. So that balance_after is
  the balance the user really had, every write that changes the visible balance first books the
  user's due expiries (under the user's lock); a capture, which changes nothing visible, repeats
  the last entry's balance_after.
- Idempotency: the UNIQUE `LedgerEntry.idempotency_key`. Holds use `hold:<job_id>`, and both
  capture and release use `settle:<job_id>`, so the database itself refuses a hold that is
  both captured and released. A grant's bucket keeps its idempotency key as `source_ref`
  (what `clawback` looks for).
- Concurrency: every per-user write runs in one transaction that first locks the user's row
  (`SELECT ... FOR NO KEY UPDATE` on PostgreSQL; on SQLite `db.transaction()` is already
  BEGIN IMMEDIATE, a database-wide write lock), so reads of buckets and the writes that follow
  cannot interleave with another writer for the same user.
- On PostgreSQL, `reserve` and `capture` (a generation's hot path) run as one call each of the
  PL/pgSQL functions `ledger_reserve` / `ledger_capture` (alembic/versions/0002), which take the
  same lock and do the same steps as the Python code here (one round trip instead of about six).
  SQLite runs the Python code. The concurrency, state-machine and reconcile tests run on both.

Methods accept `session=`: when given, the call joins the caller's open write transaction
(obtained from `db.transaction()`) and does not commit; otherwise it opens its own.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, func, insert, literal, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from models.base import utcnow
from models.ledger import (
    CREDIT_KIND_LABELS,
    ENTRY_KINDS,
    GRANT_KINDS,
    HOLD_STATUSES,
    CreditGrant,
    Hold,
    LedgerEntry,
)
from models.user import User
from services.db import Database
from services.errors import Conflict, InsufficientCredits, NotFound, ValidationFailed

log = logging.getLogger(__name__)

SPEND_ORDER = ("subscription", "trial", "admin", "pack")  # soonest-expiring first; oldest first within a kind
_RANK = {kind: i for i, kind in enumerate(SPEND_ORDER)}
MAX_AMOUNT = 100_000_000  # per operation; keeps every sum far inside a 32-bit column
# Most credits one account may have, held ones included: every amount column (remaining,
# balance_after, ...) is a 32-bit integer on PostgreSQL, and MAX_BALANCE + MAX_AMOUNT < 2**31.
MAX_BALANCE = 1_000_000_000


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


class Ledger:
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
        _check_user_id(user_id)
        _check_amount(amount)
        if kind not in GRANT_KINDS:
            raise ValidationFailed(f"Unknown credit kind {kind!r}; expected one of {', '.join(GRANT_KINDS)}.")
        _check_key(idempotency_key)
        _check_note(note)
        now = self.clock()
        if expires_at is not None:
            _check_aware(expires_at, "expires_at")
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

        return self._once(session, user_id, idempotency_key, do, _grant_result)

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
        _check_user_id(user_id)
        _check_amount(allowance)
        _check_key(idempotency_key)
        _check_note(note)
        _check_aware(period_end, "period_end")
        now = self.clock()
        if period_end <= now:
            raise ValidationFailed("The end of the billing period must be in the future.")

        def do(conn: Connection) -> GrantResult:
            balance, _ = self._book_expiries(conn, user_id, now)
            current = conn.execute(
                select(G.c.id, G.c.remaining, G.c.expires_at)
                .where(G.c.user_id == user_id, G.c.kind == "subscription", G.c.expires_at > now)
                .order_by(G.c.id)
            ).all()
            if any(expires_at > period_end for _, _, expires_at in current):
                conn.execute(_INSERT_ENTRY, [_entry(
                    user_id, "grant", balance_after=balance, key=idempotency_key,
                    note="out-of-date subscription refresh ignored", at=now,
                )])
                return GrantResult(grant_id=None, amount=0, balance=balance, replayed=False)
            expired = []
            for gid, remaining, _ in current:
                if remaining > 0:
                    balance -= remaining
                    expired.append(_entry(
                        user_id, "expiry", delta=-remaining, balance_after=balance, grant_id=gid,
                        note="subscription period ended", at=now,
                    ))
            if current:
                conn.execute(
                    update(G).where(G.c.id.in_([gid for gid, _, _ in current])).values(remaining=0, expires_at=now)
                )
            if expired:
                conn.execute(_INSERT_ENTRY, expired)
            return self._add_bucket(
                conn, user_id=user_id, amount=allowance, kind="subscription", entry_kind="grant",
                key=idempotency_key, expires_at=period_end, note=note, balance=balance, now=now,
            )

        return self._once(session, user_id, idempotency_key, do, _grant_result)

    def adjust(
        self, *, user_id: int, amount: int, idempotency_key: str, note: str | None = None,
        session: Session | None = None,
    ) -> GrantResult:
        """An admin correction. Positive: a new non-expiring admin bucket. Negative: takes up to
        -amount from the unexpired buckets in spend order, never below zero (the result's
        `amount` is what actually changed)."""
        _check_user_id(user_id)
        if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0 or abs(amount) > MAX_AMOUNT:
            raise ValidationFailed(f"The amount must be a whole number other than 0, at most {MAX_AMOUNT:,} either way.")
        _check_key(idempotency_key)
        _check_note(note)
        now = self.clock()

        def do(conn: Connection) -> GrantResult:
            balance, live = self._book_expiries(conn, user_id, now)
            if amount > 0:
                return self._add_bucket(
                    conn, user_id=user_id, amount=amount, kind="admin", entry_kind="adjust",
                    key=idempotency_key, expires_at=None, note=note, balance=balance, now=now,
                )
            taken = sum(self._debit(conn, live, min(-amount, balance)).values())
            conn.execute(_INSERT_ENTRY, [_entry(
                user_id, "adjust", delta=-taken, balance_after=balance - taken, key=idempotency_key,
                note=note, at=now,
            )])
            return GrantResult(grant_id=None, amount=-taken, balance=balance - taken, replayed=False)

        return self._once(session, user_id, idempotency_key, do, _grant_result)

    def clawback(
        self, *, user_id: int, source_ref: str, idempotency_key: str, amount: int | None = None,
        session: Session | None = None,
    ) -> int:
        """Take back what is left of the bucket(s) granted under `source_ref` (at most `amount`),
        never below zero; returns the credits taken (a replay returns the first answer).

        Raises NotFound (nothing written) if no bucket was ever granted under `source_ref`, so a
        refund that arrives before its purchase can be retried later.
        """
        _check_user_id(user_id)
        _check_key(source_ref, "source_ref")
        _check_key(idempotency_key)
        if amount is not None:
            _check_amount(amount)
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
                    _conditional_debit(conn, gid, n)
                    taken += n
            conn.execute(_INSERT_ENTRY, [_entry(
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
        _check_user_id(user_id)
        _check_amount(amount)
        if not isinstance(job_id, str) or not job_id.strip() or len(job_id) > 64:
            raise ValidationFailed("The job id must be a non-empty string of at most 64 characters.")
        now = self.clock()
        if self._pg:
            return self._reserve_pg(user_id, amount, job_id, now, session)
        try:
            with self._conn(session) as conn:
                if session is not None:  # the caller's transaction cannot be retried: look first
                    self._lock_user(conn, user_id)
                    existing = _hold_by_job(conn, job_id)
                    if existing is not None:
                        return _same_hold(existing, user_id, amount)
                balance, live = self._book_expiries(conn, user_id, now)
                if balance < amount:
                    existing = _hold_by_job(conn, job_id)
                    if existing is not None:
                        return _same_hold(existing, user_id, amount)
                    if session is None:
                        self._lock_user(conn, user_id)  # an unknown user is NotFound on both stores
                    raise InsufficientCredits(needed=amount, available=balance)
                split = {str(gid): n for gid, n in self._debit(conn, live, amount).items()}
                expires_at = now + self.hold_ttl
                hold_id = conn.execute(_INSERT_HOLD, {
                    "user_id": user_id, "job_id": job_id, "amount": amount, "status": "pending",
                    "split": split, "created_at": now, "expires_at": expires_at,
                    "settled_at": None, "reason": None,
                }).scalar_one()
                conn.execute(_INSERT_ENTRY, _entry(
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
                existing = _hold_by_job(s.connection(), job_id)
            if existing is None:
                raise
            return _same_hold(existing, user_id, amount)

    def _reserve_pg(self, user_id: int, amount: int, job_id: str, now: datetime, session: Session | None) -> Reservation:
        """PostgreSQL: the same steps as the SQLite path above, in one call of the
        `ledger_reserve` function (alembic/versions/0002): lock the user, book due expiries,
        debit in spend order, insert the hold and its entry."""
        params = (user_id, amount, job_id, now, now + self.hold_ttl)
        try:
            row = self._pg_call(session, _PG_RESERVE, params)
        except IntegrityError:
            if session is not None:
                raise
            row = self._pg_call(None, _PG_RESERVE, params)  # the same job id won a race: now a replay
        outcome = row[0]
        if outcome == "no_user":
            raise NotFound("No such user.")
        if outcome == "insufficient":
            raise InsufficientCredits(needed=amount, available=row[1])
        hold = _pg_reservation(row)
        return _same_hold(hold, user_id, amount) if outcome == "existing" else hold

    def capture(self, hold: Reservation | int, *, session: Session | None = None) -> Reservation:
        """Charge a pending hold (after the image is stored). Exactly once: calling it again, or
        on a hold that was released, changes nothing and returns the hold as it is — check
        `.status == "captured"`."""
        hold_id = _hold_id(hold)
        now = self.clock()
        if self._pg:
            # One call of `ledger_capture` (alembic/versions/0002): the steps below.
            row = self._pg_call(session, _PG_CAPTURE, (hold_id, now))
            if row[0] == "not_found":
                raise NotFound("No such reservation.")
            settled = _pg_reservation(row)
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
            conn.execute(_CAPTURE_ENTRY, {
                "uid": settled.user_id, "amount": settled.amount, "hid": hold_id,
                "key": f"settle:{settled.job_id}", "at": now,
            })
            return settled

    def release(self, hold: Reservation | int, reason: str, *, session: Session | None = None) -> Reservation:
        """Give a pending hold's credits back to the buckets they came from (the generation
        failed: not charged). Exactly once; a captured hold is never released."""
        if not isinstance(reason, str):
            raise ValidationFailed("A reason is required.")
        return self._release(_hold_id(hold), reason[:500], status="released", session=session)

    def get_hold(self, job_id: str) -> Reservation | None:
        with self.db.session() as s:
            return _hold_by_job(s.connection(), job_id)

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

    # Reading ----------------------------------------------------------------------------------

    def balance(self, user_id: int) -> Balance:
        """The visible balance with its split per kind (an unknown user has an empty balance)."""
        now = self.clock()
        with self.db.session() as s:
            conn = s.connection()
            rows = conn.execute(
                select(G.c.kind, G.c.remaining, G.c.expires_at).where(
                    G.c.user_id == user_id,
                    or_(G.c.expires_at.is_(None), G.c.expires_at > now),
                    or_(G.c.remaining > 0, G.c.kind == "subscription"),
                )
            ).all()
            held = conn.execute(
                select(func.coalesce(func.sum(H.c.amount), 0)).where(H.c.user_id == user_id, H.c.status == "pending")
            ).scalar_one()
        buckets = dict.fromkeys(GRANT_KINDS, 0)
        next_expiry = subscription_end = None
        for kind, remaining, expires_at in rows:
            buckets[kind] = buckets.get(kind, 0) + remaining
            if expires_at is not None and remaining > 0 and (next_expiry is None or expires_at < next_expiry):
                next_expiry = expires_at
            if kind == "subscription" and (subscription_end is None or expires_at > subscription_end):
                subscription_end = expires_at
        return Balance(
            total=sum(buckets.values()), held=int(held), buckets=buckets,
            next_expiry=next_expiry, subscription_expires_at=subscription_end,
        )

    def history(self, user_id: int, page: int = 1, per_page: int = 20) -> HistoryPage:
        """The movements that changed the visible balance, newest first. Captures are not
        listed (the hold already showed the charge); a released hold shows as "Not charged"."""
        if isinstance(page, bool) or not isinstance(page, int) or page < 1:
            raise ValidationFailed("The page must be a whole number from 1.")
        if isinstance(per_page, bool) or not isinstance(per_page, int) or not 1 <= per_page <= 200:
            raise ValidationFailed("Rows per page must be between 1 and 200.")
        visible = (E.c.user_id == user_id, E.c.delta != E.c.held_delta)
        with self.db.session() as s:
            conn = s.connection()
            total = conn.execute(select(func.count()).select_from(E).where(*visible)).scalar_one()
            pages = max(1, math.ceil(total / per_page))
            page = min(page, pages)
            rows = conn.execute(
                select(E.c.created_at, E.c.kind, E.c.delta, E.c.held_delta, E.c.balance_after, G.c.kind, H.c.status)
                .select_from(E.outerjoin(G, E.c.grant_id == G.c.id).outerjoin(H, E.c.hold_id == H.c.id))
                .where(*visible)
                .order_by(E.c.id.desc())
                .offset((page - 1) * per_page)
                .limit(per_page)
            ).all()
        return HistoryPage(
            rows=[
                HistoryRow(
                    at=at, kind=kind, what=_describe(kind, grant_kind, hold_status),
                    delta=delta - held_delta, balance_after=balance_after,
                )
                for at, kind, delta, held_delta, balance_after, grant_kind, hold_status in rows
            ],
            page=page, pages=pages, total=int(total),
        )

    def reconcile(self, user_id: int | None = None) -> list[str]:
        """Check the ledger against the buckets and holds; returns discrepancies (none expected).

        Per user: (1) sum(remaining of all buckets) == sum(delta) - sum(held_delta);
        (2) sum(held_delta) == sum(amount of pending holds); (3) along the entries in id order,
        balance_after[i] == balance_after[i-1] + delta[i] - held_delta[i] (from 0), never
        negative, and the last one equals sum(remaining of all buckets) (expired-but-unbooked
        buckets still count there: booking them is itself an entry); (4) entry kinds are known.
        Per bucket: 0 <= remaining <= original, kind known. Per hold: status known, its split
        sums to its amount over positive parts of the user's own buckets, and its entries match
        its status (one "hold", plus one "capture" if captured or one "release" if released or
        expired).
        """
        problems: list[str] = []
        gq = select(G.c.id, G.c.user_id, G.c.kind, G.c.original, G.c.remaining)
        hq = select(H.c.id, H.c.user_id, H.c.amount, H.c.status, H.c.split)
        eq = select(E.c.id, E.c.user_id, E.c.kind, E.c.delta, E.c.held_delta, E.c.balance_after, E.c.hold_id)
        if user_id is not None:
            gq = gq.where(G.c.user_id == user_id)
            hq = hq.where(H.c.user_id == user_id)
            eq = eq.where(E.c.user_id == user_id)
        # One read transaction, so the three reads see one state on PostgreSQL too.
        with self.db.session() as s:
            conn = s.connection(execution_options={"isolation_level": "REPEATABLE READ"} if self._pg else None)
            grants = conn.execute(gq).all()
            holds = conn.execute(hq).all()
            entries = conn.execute(eq.order_by(E.c.user_id, E.c.id)).all()

        remaining_by_user: dict[int, int] = defaultdict(int)
        grant_owner: dict[int, int] = {}
        for gid, uid, kind, original, remaining in grants:
            grant_owner[gid] = uid
            remaining_by_user[uid] += remaining
            if kind not in GRANT_KINDS:
                problems.append(f"grant {gid}: unknown kind {kind!r}")
            if not 0 <= remaining <= original:
                problems.append(f"grant {gid}: remaining {remaining} outside 0..{original}")

        pending_by_user: dict[int, int] = defaultdict(int)
        hold_status: dict[int, str] = {}
        for hid, uid, amount, status, split in holds:
            hold_status[hid] = status
            if status not in HOLD_STATUSES:
                problems.append(f"hold {hid}: unknown status {status!r}")
            if status == "pending":
                pending_by_user[uid] += amount
            parts = list((split or {}).items())
            if sum(n for _, n in parts) != amount or any(n <= 0 for _, n in parts):
                problems.append(f"hold {hid}: split {split} does not add up to {amount}")
            for gid, _ in parts:
                if grant_owner.get(int(gid)) != uid:
                    problems.append(f"hold {hid}: split names grant {gid}, not a bucket of user {uid}")

        ledger_sum: dict[int, int] = defaultdict(int)
        held_sum: dict[int, int] = defaultdict(int)
        last_balance: dict[int, int] = {}
        hold_entries: dict[int, list[str]] = defaultdict(list)
        for eid, uid, kind, delta, held_delta, balance_after, hold_id in entries:
            if kind not in ENTRY_KINDS:
                problems.append(f"entry {eid}: unknown kind {kind!r}")
            expected = last_balance.get(uid, 0) + delta - held_delta
            if balance_after != expected:
                problems.append(f"entry {eid}: balance_after {balance_after}, expected {expected}")
            if balance_after < 0:
                problems.append(f"entry {eid}: negative balance {balance_after}")
            last_balance[uid] = balance_after
            ledger_sum[uid] += delta
            held_sum[uid] += held_delta
            if hold_id is not None:
                hold_entries[hold_id].append(kind)

        for uid in sorted(set(remaining_by_user) | set(ledger_sum) | set(pending_by_user)):
            remaining = remaining_by_user.get(uid, 0)
            expected = ledger_sum.get(uid, 0) - held_sum.get(uid, 0)
            if remaining != expected:
                problems.append(f"user {uid}: buckets hold {remaining}, ledger says {expected}")
            if held_sum.get(uid, 0) != pending_by_user.get(uid, 0):
                problems.append(
                    f"user {uid}: ledger holds {held_sum.get(uid, 0)}, pending holds {pending_by_user.get(uid, 0)}"
                )
            if last_balance.get(uid, 0) != remaining:
                problems.append(f"user {uid}: last balance_after {last_balance.get(uid, 0)}, buckets hold {remaining}")

        want = {"pending": ["hold"], "captured": ["hold", "capture"], "released": ["hold", "release"],
                "expired": ["hold", "release"]}
        for hid, status in hold_status.items():
            if status in want and sorted(hold_entries.get(hid, [])) != sorted(want[status]):
                problems.append(f"hold {hid} ({status}): entries {hold_entries.get(hid, [])}")
        return problems

    # Internals --------------------------------------------------------------------------------

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
        found = conn.execute(_LOCK_USER, {"uid": user_id}).first()
        if found is None:
            raise NotFound("No such user.")

    def _book_expiries(self, conn: Connection, user_id: int, now: datetime, count: bool = False):
        """Book due expiries for a locked user. Returns (visible balance, live buckets in spend
        order as [id, remaining] lists), or (visible balance, number booked) with count=True."""
        rows = conn.execute(_LIVE_BUCKETS, {"uid": user_id}).all()
        balance = sum(r[2] for r in rows)
        live, expired = [], []
        for gid, _kind, remaining, expires_at in sorted(rows, key=lambda r: (_RANK.get(r[1], len(_RANK)), r[0])):
            if expires_at is not None and expires_at <= now:
                balance -= remaining
                expired.append(_entry(user_id, "expiry", delta=-remaining, balance_after=balance, grant_id=gid, at=now))
            else:
                live.append([gid, remaining])
        if expired:
            conn.execute(update(G).where(G.c.id.in_([e["grant_id"] for e in expired])).values(remaining=0))
            conn.execute(_INSERT_ENTRY, expired)
        return balance, (len(expired) if count else live)

    def _debit(self, conn: Connection, live: list[list[int]], amount: int) -> dict[int, int]:
        """Take `amount` from the live buckets in order; returns {grant_id: taken}."""
        split: dict[int, int] = {}
        left = amount
        for bucket in live:
            n = min(bucket[1], left)
            if n <= 0:
                break
            _conditional_debit(conn, bucket[0], n)
            bucket[1] -= n
            split[bucket[0]] = n
            left -= n
        return split

    def _add_bucket(
        self, conn: Connection, *, user_id: int, amount: int, kind: str, entry_kind: str, key: str,
        expires_at: datetime | None, note: str | None, balance: int, now: datetime,
    ) -> GrantResult:
        """Every path that adds credits ends here: refuse (nothing written) past MAX_BALANCE."""
        held = conn.execute(_HELD, {"uid": user_id}).scalar_one()
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
        conn.execute(_INSERT_ENTRY, [_entry(
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
            first = _entry_by_key(conn, key)
            if first is None:
                try:
                    with conn.begin_nested():
                        return do(conn)
                except IntegrityError:
                    first = _entry_by_key(conn, key)
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
            owner = conn.execute(_LOCK_HOLD_OWNER, {"hid": hold_id}).first()
            if owner is None:
                raise NotFound("No such reservation.")
        row = conn.execute(
            _SETTLE, {"hid": hold_id, "new_status": status, "new_reason": reason, "at": now}
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
            entries = [_entry(
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
                entries.append(_entry(user_id, "expiry", delta=-remaining, balance_after=balance, grant_id=gid, at=now))
            if lapsed:
                conn.execute(update(G).where(G.c.id.in_([gid for gid, _ in lapsed])).values(remaining=0))
            conn.execute(_INSERT_ENTRY, entries)
            return settled


G = CreditGrant.__table__
H = Hold.__table__
E = LedgerEntry.__table__
U = User.__table__

# Hot-path statements, built once (building and cache-keying a statement costs more than
# running it on SQLite).
_LOCK_USER = select(U.c.id).where(U.c.id == bindparam("uid")).with_for_update(key_share=True)
_LOCK_HOLD_OWNER = (
    select(U.c.id).select_from(H.join(U, U.c.id == H.c.user_id)).where(H.c.id == bindparam("hid"))
    .with_for_update(of=U, key_share=True)
)
_LIVE_BUCKETS = select(G.c.id, G.c.kind, G.c.remaining, G.c.expires_at).where(
    G.c.user_id == bindparam("uid"), G.c.remaining > 0
)
_HELD = select(func.coalesce(func.sum(H.c.amount), 0)).where(
    H.c.user_id == bindparam("uid"), H.c.status == "pending"
)
_DEBIT = (
    update(G).where(G.c.id == bindparam("gid"), G.c.remaining >= bindparam("n"))
    .values(remaining=G.c.remaining - bindparam("n"))
)
_SETTLE = (
    update(H).where(H.c.id == bindparam("hid"), H.c.status == "pending")
    .values(
        status=bindparam("new_status", type_=H.c.status.type),
        reason=bindparam("new_reason", type_=H.c.reason.type),
        settled_at=bindparam("at", type_=H.c.settled_at.type),
    )
    .returning(*H.c)
)
_INSERT_HOLD = insert(H).returning(H.c.id)
_CAPTURE_ENTRY = insert(E).from_select(
    ["user_id", "kind", "delta", "held_delta", "balance_after", "hold_id", "idempotency_key", "created_at"],
    select(
        bindparam("uid", type_=E.c.user_id.type),
        literal("capture", E.c.kind.type),
        -bindparam("amount", type_=E.c.delta.type),
        -bindparam("amount", type_=E.c.delta.type),
        func.coalesce(
            select(E.c.balance_after).where(E.c.user_id == bindparam("uid"))
            .order_by(E.c.id.desc()).limit(1).scalar_subquery(),
            0,
        ),
        bindparam("hid", type_=E.c.hold_id.type),
        bindparam("key", type_=E.c.idempotency_key.type),
        bindparam("at", type_=E.c.created_at.type),
    ),
)
_INSERT_ENTRY = insert(E)
# PostgreSQL's reserve and capture (functions created by alembic/versions/0002).
_PG_RESERVE = "SELECT * FROM ledger_reserve(%s, %s, %s, %s, %s)"
_PG_CAPTURE = "SELECT * FROM ledger_capture(%s, %s)"

def _entry(
    user_id: int, kind: str, *, delta: int = 0, held_delta: int = 0, balance_after: int,
    grant_id: int | None = None, hold_id: int | None = None, key: str | None = None,
    note: str | None = None, at: datetime,
) -> dict:
    return {
        "user_id": user_id, "kind": kind, "delta": delta, "held_delta": held_delta,
        "balance_after": balance_after, "grant_id": grant_id, "hold_id": hold_id,
        "idempotency_key": key, "note": note, "created_at": at,
    }


def _conditional_debit(conn: Connection, grant_id: int, n: int) -> None:
    # Under the user's lock this always matches; if it ever did not, the transaction is
    # abandoned rather than overspending.
    done = conn.execute(_DEBIT, {"gid": grant_id, "n": n})
    if done.rowcount != 1:
        raise Conflict("Credits changed while this was being processed; please try again.")


def _hold_by_job(conn: Connection, job_id: str) -> Reservation | None:
    row = conn.execute(select(H).where(H.c.job_id == job_id)).first()
    return Reservation(**row._mapping) if row is not None else None


def _same_hold(existing: Reservation, user_id: int, amount: int) -> Reservation:
    if existing.user_id != user_id or existing.amount != amount:
        raise Conflict("This job id is already used by another reservation.")
    return existing


def _entry_by_key(conn: Connection, key: str):
    return conn.execute(
        select(E.c.user_id, E.c.delta, E.c.grant_id, E.c.balance_after).where(E.c.idempotency_key == key)
    ).first()


def _grant_result(entry) -> GrantResult:
    return GrantResult(grant_id=entry.grant_id, amount=entry.delta, balance=entry.balance_after, replayed=True)

def _pg_reservation(row: tuple) -> Reservation:
    """The hold in a `ledger_reserve` / `ledger_capture` answer (after outcome and available)."""
    hold_id, user_id, job_id, amount, status, split, created_at, expires_at, settled_at, reason = row[2:12]
    return Reservation(
        id=hold_id, user_id=user_id, job_id=job_id, amount=amount, status=status, split=split,
        created_at=_utc(created_at), expires_at=_utc(expires_at), settled_at=_utc(settled_at), reason=reason,
    )


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


def _hold_id(hold: Reservation | int) -> int:
    if isinstance(hold, Reservation | Hold):
        if hold.id is None:
            raise ValidationFailed("That reservation was never saved.")
        return hold.id
    if isinstance(hold, bool) or not isinstance(hold, int):
        raise ValidationFailed("Expected a reservation or its id.")
    return hold


def _describe(kind: str, grant_kind: str | None, hold_status: str | None) -> str:
    if kind == "grant":
        return CREDIT_KIND_LABELS.get(grant_kind or "", "Credits added")
    if kind == "hold":
        return "Image generation (in progress)" if hold_status == "pending" else "Image generation"
    if kind == "release":
        return "Not charged: the generation did not finish" if hold_status == "expired" else "Not charged: the generation failed"
    if kind == "expiry":
        label = CREDIT_KIND_LABELS.get(grant_kind or "")
        return f"{label}: credits expired" if label else "Credits expired"
    if kind == "clawback":
        return "Credits removed after a refund"
    if kind == "adjust":
        return "Balance correction"
    if kind == "refund":
        return "Refund"
    return kind


def _check_user_id(user_id) -> None:
    if isinstance(user_id, bool) or not isinstance(user_id, int) or user_id < 1:
        raise ValidationFailed("Unknown user.")


def _check_amount(amount) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int) or not 1 <= amount <= MAX_AMOUNT:
        raise ValidationFailed(f"The amount must be a whole number of credits from 1 to {MAX_AMOUNT:,}.")


def _check_key(key, name: str = "idempotency_key") -> None:
    if not isinstance(key, str) or not key.strip() or len(key) > 255:
        raise ValidationFailed(f"{name} must be a non-empty string of at most 255 characters.")


def _check_note(note) -> None:
    if note is not None and (not isinstance(note, str) or len(note) > 500):
        raise ValidationFailed("The note must be text of at most 500 characters.")


def _check_aware(value, name: str) -> None:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValidationFailed(f"{name} must be a timezone-aware datetime.")
