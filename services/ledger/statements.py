"""The ledger's Core SQL: its tables, the hot-path statements built once, and the helpers that
turn rows into entries and snapshots (and back)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import bindparam, func, insert, literal, select, update
from sqlalchemy.engine import Connection

from models.ledger import CreditGrant, Hold, LedgerEntry
from models.user import User
from services.errors import Conflict
from services.ledger.results import GrantResult, Reservation

G = CreditGrant.__table__
H = Hold.__table__
E = LedgerEntry.__table__
U = User.__table__

# Hot-path statements, built once (building and cache-keying a statement costs more than
# running it on SQLite).
LOCK_USER = select(U.c.id).where(U.c.id == bindparam("uid")).with_for_update(key_share=True)
LOCK_HOLD_OWNER = (
    select(U.c.id).select_from(H.join(U, U.c.id == H.c.user_id)).where(H.c.id == bindparam("hid"))
    .with_for_update(of=U, key_share=True)
)
LIVE_BUCKETS = select(G.c.id, G.c.kind, G.c.remaining, G.c.expires_at).where(
    G.c.user_id == bindparam("uid"), G.c.remaining > 0
)
HELD = select(func.coalesce(func.sum(H.c.amount), 0)).where(
    H.c.user_id == bindparam("uid"), H.c.status == "pending"
)
DEBIT = (
    update(G).where(G.c.id == bindparam("gid"), G.c.remaining >= bindparam("n"))
    .values(remaining=G.c.remaining - bindparam("n"))
)
SETTLE = (
    update(H).where(H.c.id == bindparam("hid"), H.c.status == "pending")
    .values(
        status=bindparam("new_status", type_=H.c.status.type),
        reason=bindparam("new_reason", type_=H.c.reason.type),
        settled_at=bindparam("at", type_=H.c.settled_at.type),
    )
    .returning(*H.c)
)
INSERT_HOLD = insert(H).returning(H.c.id)
CAPTURE_ENTRY = insert(E).from_select(
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
INSERT_ENTRY = insert(E)
# PostgreSQL's reserve and capture (functions created by alembic/versions/0002).
PG_RESERVE = "SELECT * FROM ledger_reserve(%s, %s, %s, %s, %s)"
PG_CAPTURE = "SELECT * FROM ledger_capture(%s, %s)"


def entry_row(
    user_id: int, kind: str, *, delta: int = 0, held_delta: int = 0, balance_after: int,
    grant_id: int | None = None, hold_id: int | None = None, key: str | None = None,
    note: str | None = None, at: datetime,
) -> dict:
    return {
        "user_id": user_id, "kind": kind, "delta": delta, "held_delta": held_delta,
        "balance_after": balance_after, "grant_id": grant_id, "hold_id": hold_id,
        "idempotency_key": key, "note": note, "created_at": at,
    }


def conditional_debit(conn: Connection, grant_id: int, n: int) -> None:
    # Under the user's lock this always matches; if it ever did not, the transaction is
    # abandoned rather than overspending.
    done = conn.execute(DEBIT, {"gid": grant_id, "n": n})
    if done.rowcount != 1:
        raise Conflict("Credits changed while this was being processed; please try again.")


def hold_by_job(conn: Connection, job_id: str) -> Reservation | None:
    row = conn.execute(select(H).where(H.c.job_id == job_id)).first()
    return Reservation(**row._mapping) if row is not None else None


def same_hold(existing: Reservation, user_id: int, amount: int) -> Reservation:
    if existing.user_id != user_id or existing.amount != amount:
        raise Conflict("This job id is already used by another reservation.")
    return existing


def entry_by_key(conn: Connection, key: str):
    return conn.execute(
        select(E.c.user_id, E.c.delta, E.c.grant_id, E.c.balance_after).where(E.c.idempotency_key == key)
    ).first()


def grant_result(entry) -> GrantResult:
    return GrantResult(grant_id=entry.grant_id, amount=entry.delta, balance=entry.balance_after, replayed=True)


def pg_reservation(row: tuple) -> Reservation:
    """The hold in a `ledger_reserve` / `ledger_capture` answer (after outcome and available)."""
    hold_id, user_id, job_id, amount, status, split, created_at, expires_at, settled_at, reason = row[2:12]
    return Reservation(
        id=hold_id, user_id=user_id, job_id=job_id, amount=amount, status=status, split=split,
        created_at=utc(created_at), expires_at=utc(expires_at), settled_at=utc(settled_at), reason=reason,
    )


def utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None
