"""`Ledger.reconcile`: check the ledger against the buckets and holds (the invariants stated
in services/ledger/__init__.py)."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select

from models.ledger import ENTRY_KINDS, GRANT_KINDS, HOLD_STATUSES
from services.db import Database
from services.ledger.statements import E, G, H


class LedgerReconcile:
    """The ledger's self-check (a mixin of `Ledger`)."""

    db: Database
    _pg: bool

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
