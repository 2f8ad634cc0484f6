"""Retention: the sweep (services/maintenance.py) deletes what nobody needs after RETENTION_DAYS —
sessions that expired or were revoked, sign-in and sign-up events, used or expired password-reset
links, and the ids of processed Stripe events.

Stripe resends an event for at most 30 days (RETENTION_DAYS is at least 30), and a replay older than
that would still meet the fulfilment's own unique key: pruning event ids never lets a payment count
twice. Runs at most once an hour per process; every delete is idempotent across replicas.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from weakref import WeakKeyDictionary

from sqlalchemy import delete, or_

from models.payment import StripeEvent
from models.user import AuthEvent, PasswordReset, UserSession

log = logging.getLogger(__name__)
EVERY = timedelta(hours=1)
S, A, P, E = UserSession.__table__, AuthEvent.__table__, PasswordReset.__table__, StripeEvent.__table__
_last_run: WeakKeyDictionary = WeakKeyDictionary()


def prune(db, *, now: datetime, days: int) -> dict[str, int]:
    """Delete what is older than `days` before `now`; returns how many rows of each kind."""
    cutoff = now - timedelta(days=days)
    with db.write_connection() as conn:
        counts = {
            "pruned_sessions": conn.execute(
                delete(S).where(or_(S.c.expires_at < cutoff, S.c.revoked_at < cutoff))).rowcount,
            "pruned_auth_events": conn.execute(delete(A).where(A.c.created_at < cutoff)).rowcount,
            "pruned_password_resets": conn.execute(
                delete(P).where(or_(P.c.expires_at < cutoff, P.c.used_at < cutoff))).rowcount,
            "pruned_stripe_events": conn.execute(delete(E).where(E.c.received_at < cutoff)).rowcount,
        }
    if any(counts.values()):
        log.info("retention (%s days): %s", days, counts)
    return counts


def prune_due(maintenance, now: datetime) -> dict[str, int]:
    """`prune` with the maintenance's database and RETENTION_DAYS, when an hour has passed since
    this sweeper last did it (the first sweep always does)."""
    last = _last_run.get(maintenance)
    if last is not None and now - last < EVERY:
        return {}
    _last_run[maintenance] = now
    return prune(maintenance.db, now=now, days=maintenance.studio.settings.retention_days)
