"""The credit ledger: buckets (grants), holds for generations in progress, an append-only ledger.

This docstring is the one statement of the ledger's rules and invariants (models/ledger.py and
docs/architecture.md point here). `Ledger.reconcile` checks them; `python app.py credits
reconcile` runs it.

Every movement of a credit goes through `Ledger`. The rules:

- Buckets are spent in SPEND_ORDER (the soonest-expiring kind first), oldest first within a kind.
- A hold debits its buckets at once (ledger entry: delta 0, held_delta +amount). Capture books
  delta -amount, held_delta -amount. Release puts the credits back into the same buckets
  (delta 0, held_delta -amount); what goes back into a bucket that expired meanwhile expires at
  once (an "expiry" entry follows the release).
- Per user, sum(remaining of all buckets) == sum(delta) - sum(held_delta), and sum(held_delta)
  == sum(amount of pending holds).
- The visible balance is the sum of `remaining` over unexpired buckets (held credits are already
  out of the buckets), never negative. A bucket is expired once `expires_at <= now`, whether or
  not an "expiry" entry (delta -remaining) has been booked yet: expired buckets never count.
- Each entry's `balance_after` is the visible balance after it, so along a user's entries
  `balance_after[i] == balance_after[i-1] + delta[i] - held_delta[i]`. So that balance_after is
  the balance the user really had, every write that changes the visible balance first books the
  user's due expiries (under the user's lock); a capture, which changes nothing visible, repeats
  the last entry's balance_after.
- Refreshes (`refresh_subscription` from an invoice, `refresh_team` for the monthly team allowance,
  key `team:<user id>:<YYYY-MM>`) expire what is left of that kind's current bucket and add the
  new one; the key makes each exactly once, whichever process books it first.
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
  same lock and do the same steps as the Python code here (one round trip instead of about six;
  about 4.5x the throughput, docs/benchmarks.md). SQLite runs the Python code. The concurrency,
  state-machine and reconcile tests run on both. A migration that changes `credit_grants`,
  `holds` or `ledger_entries` must `CREATE OR REPLACE` those functions to match.

Methods accept `session=`: when given, the call joins the caller's open write transaction
(obtained from `db.transaction()`) and does not commit; otherwise it opens its own.

The package: api.py (`Ledger` and its write operations), booking.py (the steps those writes are
built from), reads.py (balance, history), reconcile.py, statements.py (the Core SQL and row
helpers), rules.py (limits, spend order, input checks), results.py (what the methods return).
"""

from services.ledger.api import Ledger
from services.ledger.results import Balance, GrantResult, HistoryPage, HistoryRow, Reservation
from services.ledger.rules import MAX_AMOUNT, MAX_BALANCE, SPEND_ORDER

__all__ = [
    "MAX_AMOUNT", "MAX_BALANCE", "SPEND_ORDER", "Balance", "GrantResult", "HistoryPage", "HistoryRow",
    "Ledger", "Reservation",
]
