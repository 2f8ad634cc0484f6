"""Ledger flows on both stores (SQLite file and PostgreSQL): joining the caller's transaction,
refresh, history, sweep after a process was killed mid-generation."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from models.user import User
from services.db import Database
from services.errors import InsufficientCredits
from services.ledger import Ledger
from tests.clock import Clock
from tests.databases import truncate_all

ROOT = Path(__file__).resolve().parents[2]


def test_sign_up_and_trial_grant_commit_or_fail_together(database):
    ledger = Ledger(database)
    with pytest.raises(RuntimeError), database.transaction() as s:
        user = User(email="late-failure@example.com", password_hash="-")
        s.add(user)
        s.flush()
        ledger.grant(user_id=user.id, amount=40, kind="trial", idempotency_key=f"trial:{user.email}", session=s)
        raise RuntimeError("something after the grant failed")
    with database.transaction() as s:
        user = User(email="late-failure@example.com", password_hash="-")
        s.add(user)
        s.flush()
        result = ledger.grant(user_id=user.id, amount=40, kind="trial", idempotency_key=f"trial:{user.email}", session=s)
    assert not result.replayed  # the first attempt left no trace, not even its key
    assert ledger.balance(user.id).total == 40
    assert ledger.reconcile() == []


def test_full_cycle_on_both_stores(database, make_user):
    clock = Clock()
    ledger = Ledger(database, clock=clock)
    user = make_user(database)
    ledger.grant(user_id=user.id, amount=40, kind="trial", idempotency_key=f"trial:{user.id}")
    ledger.grant(user_id=user.id, amount=100, kind="pack", idempotency_key="stripe:cs_1")
    ledger.refresh_subscription(user_id=user.id, allowance=50, period_end=clock.now + timedelta(days=30),
                                idempotency_key="stripe:in_1")
    ledger.capture(ledger.reserve(user_id=user.id, amount=60, job_id=f"a-{user.id}"))  # 50 sub + 10 trial
    ledger.release(ledger.reserve(user_id=user.id, amount=20, job_id=f"b-{user.id}"), "provider failed")
    b = ledger.balance(user.id)
    assert (b.total, b.held) == (130, 0)
    assert b.buckets == {"team": 0, "subscription": 0, "trial": 30, "admin": 0, "pack": 100}

    clock.now += timedelta(days=31)
    ledger.refresh_subscription(user_id=user.id, allowance=50, period_end=clock.now + timedelta(days=30),
                                idempotency_key="stripe:in_2")
    assert ledger.clawback(user_id=user.id, source_ref="stripe:cs_1", idempotency_key="refund:ch_1") == 100
    assert ledger.adjust(user_id=user.id, amount=-5, idempotency_key="adj:1").balance == 75
    assert ledger.balance(user.id).total == 75

    page = ledger.history(user.id, per_page=3)
    assert page.total == 9  # 3 grants, 2 holds, 1 release, refresh grant, clawback, adjust
    assert [r.kind for r in page.rows] == ["adjust", "clawback", "grant"]
    assert page.rows[0].balance_after == 75
    assert ledger.reconcile() == []


@pytest.mark.slow
def test_sweep_after_a_process_was_killed_mid_generation(database, make_user):
    """A worker process reserves and dies before capture or release: the sweep returns the credits."""
    ledger = Ledger(database)
    user = make_user(database)
    ledger.grant(user_id=user.id, amount=30, kind="pack", idempotency_key=f"p:{user.id}")
    script = textwrap.dedent(f"""
        import os
        from services.ledger import Ledger
        from services.db import Database
        ledger = Ledger(Database({database.url!r}), hold_ttl_seconds=30)
        ledger.reserve(user_id={user.id}, amount=20, job_id="killed-{user.id}")
        ledger.reserve(user_id={user.id}, amount=10, job_id="stored-{user.id}")
        os._exit(9)  # killed mid-generation: no capture, no release
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 9, done.stderr
    assert ledger.balance(user.id).total == 0
    with pytest.raises(InsufficientCredits):
        ledger.reserve(user_id=user.id, amount=1, job_id=f"meanwhile-{user.id}")

    later = Clock()
    later.advance(seconds=31)
    swept = Ledger(database, clock=later).sweep_stale_holds(is_stored=lambda job: job.startswith("stored-"))
    assert swept["captured"] >= 1 and swept["released"] >= 1
    assert ledger.get_hold(f"killed-{user.id}").status == "expired"
    assert ledger.get_hold(f"stored-{user.id}").status == "captured"
    assert ledger.balance(user.id).total == 20
    assert ledger.reconcile(user.id) == []


@pytest.fixture
def postgres_url(_postgres_migrated) -> str:
    truncate_all(_postgres_migrated)
    return _postgres_migrated


@pytest.mark.postgres
def test_postgres_reserve_and_capture_survive_a_dropped_connection(postgres_url, make_user):
    """PostgreSQL's reserve/capture run on pooled connections without a pre-ping; when the
    server drops one (a restart, a failover), the call reconnects instead of failing the user."""
    db = Database(postgres_url, pool_size=2)
    try:
        ledger = Ledger(db)
        user = make_user(db)
        ledger.grant(user_id=user.id, amount=30, kind="pack", idempotency_key="pack:dropped")
        first = ledger.reserve(user_id=user.id, amount=10, job_id="before-restart")
        (pid,) = db.call("SELECT pg_backend_pid()", ())  # the pooled connection reserve used
        with db.engine.begin() as conn:
            assert conn.exec_driver_sql("SELECT pg_terminate_backend(%s)", (pid,)).scalar_one()
        assert ledger.capture(first).status == "captured"
        assert db.call("SELECT pg_backend_pid()", ())[0] != pid
        second = ledger.reserve(user_id=user.id, amount=10, job_id="after-restart")
        assert second.status == "pending" and ledger.balance(user.id).total == 10
        assert ledger.reconcile() == []
    finally:
        db.dispose()


def test_reserve_replays_conflicts_and_unknowns_on_both_stores(database, make_user):
    """What the PostgreSQL functions answer besides a fresh hold, checked on both stores."""
    from concurrent.futures import ThreadPoolExecutor

    from services.errors import Conflict, NotFound

    ledger = Ledger(database)
    user, stranger = make_user(database), make_user(database)
    ledger.grant(user_id=user.id, amount=10, kind="pack", idempotency_key=f"p:{user.id}")
    ledger.grant(user_id=stranger.id, amount=30, kind="pack", idempotency_key=f"p:{stranger.id}")

    first = ledger.reserve(user_id=user.id, amount=10, job_id="job-a")
    assert ledger.balance(user.id).total == 0
    again = ledger.reserve(user_id=user.id, amount=10, job_id="job-a")  # a replay, though nothing is left
    assert (again.id, again.status, again.split) == (first.id, "pending", first.split)
    with pytest.raises(Conflict):
        ledger.reserve(user_id=user.id, amount=5, job_id="job-a")
    with pytest.raises(Conflict):
        ledger.reserve(user_id=stranger.id, amount=10, job_id="job-a")
    with pytest.raises(NotFound):
        ledger.reserve(user_id=stranger.id + 1000, amount=1, job_id="job-b")
    with pytest.raises(NotFound):
        ledger.capture(first.id + 1000)
    assert ledger.balance(stranger.id).total == 30

    captured = ledger.capture(first)
    assert (captured.status, captured.settled_at is not None, captured.reason) == ("captured", True, None)
    assert ledger.capture(first).status == "captured"
    assert ledger.release(first, "too late").status == "captured"

    # Sixteen threads racing one job id: one hold, every caller gets it.
    with ThreadPoolExecutor(16) as pool:
        holds = list(pool.map(lambda _: ledger.reserve(user_id=stranger.id, amount=10, job_id="job-race"), range(16)))
    assert len({h.id for h in holds}) == 1
    assert ledger.balance(stranger.id).total == 20
    assert ledger.reconcile() == []


def test_reserve_books_due_expiries_first_on_both_stores(database, make_user):
    """A reserve after a bucket expired books the expiry entry, then the hold, with the
    balance the user really had after each."""
    clock = Clock()
    ledger = Ledger(database, clock=clock)
    user = make_user(database)
    ledger.grant(user_id=user.id, amount=15, kind="admin", idempotency_key=f"a:{user.id}",
                 expires_at=clock.now + timedelta(days=1))
    ledger.grant(user_id=user.id, amount=20, kind="pack", idempotency_key=f"p:{user.id}")
    clock.now += timedelta(days=2)
    with pytest.raises(InsufficientCredits) as refused:
        ledger.reserve(user_id=user.id, amount=25, job_id="too-much")
    assert refused.value.available == 20
    hold = ledger.reserve(user_id=user.id, amount=5, job_id="after-expiry")
    assert list(hold.split.values()) == [5]
    rows = ledger.history(user.id).rows
    assert [(r.kind, r.delta, r.balance_after) for r in rows[:2]] == [("hold", -5, 15), ("expiry", -15, 20)]
    assert ledger.reconcile() == []
