"""The ledger under concurrency, on SQLite (a file) and PostgreSQL: threads, and two OS processes
on one database, never overspend and never apply an idempotency key twice."""

from __future__ import annotations

import multiprocessing
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlmodel import select

from models.ledger import Hold
from services.db import Database
from services.errors import Conflict, InsufficientCredits
from services.ledger import Ledger

pytestmark = pytest.mark.slow

THREADS = 50
COST = 10
AFFORDABLE = 10  # the balance pays for this many reservations


def reserve_from_threads(ledger: Ledger, user_id: int, n_threads: int, prefix: str, barrier=None) -> dict:
    """Each thread tries one reservation of COST; returns counts of outcomes."""
    start = threading.Barrier(n_threads)

    def one(i: int) -> str:
        start.wait()
        try:
            ledger.reserve(user_id=user_id, amount=COST, job_id=f"{prefix}-{i}")
            return "ok"
        except InsufficientCredits:
            return "insufficient"

    if barrier is not None:
        barrier.wait()
    with ThreadPoolExecutor(n_threads) as pool:
        outcomes = list(pool.map(one, range(n_threads)))
    return {k: outcomes.count(k) for k in ("ok", "insufficient")}


def process_worker(url: str, user_id: int, n_threads: int, prefix: str, barrier, results) -> None:
    db = Database(url, pool_size=8)
    try:
        results.put(reserve_from_threads(Ledger(db), user_id, n_threads, prefix, barrier))
    except BaseException as exc:  # reported to the parent, which fails the test
        results.put({"error": repr(exc)})
    finally:
        db.dispose()


def pending_holds(db: Database, user_id: int) -> list[Hold]:
    with db.session() as s:
        return s.exec(select(Hold).where(Hold.user_id == user_id, Hold.status == "pending")).all()


def funded_user(database: Database, ledger: Ledger, make_user):
    """A user with enough credits for exactly AFFORDABLE reservations."""
    user = make_user(database)
    ledger.grant(user_id=user.id, amount=COST * AFFORDABLE, kind="pack", idempotency_key=f"p:{user.id}")
    return user


def assert_exactly_the_affordable_holds(database: Database, ledger: Ledger, user_id: int) -> None:
    assert len(pending_holds(database, user_id)) == AFFORDABLE
    balance = ledger.balance(user_id)
    assert (balance.total, balance.held) == (0, COST * AFFORDABLE)
    assert ledger.reconcile(user_id) == []


def test_fifty_threads_get_exactly_ten_holds(database, make_user):
    ledger = Ledger(database)
    user = funded_user(database, ledger, make_user)

    counts = reserve_from_threads(ledger, user.id, THREADS, "job")

    assert counts == {"ok": AFFORDABLE, "insufficient": THREADS - AFFORDABLE}
    assert_exactly_the_affordable_holds(database, ledger, user.id)


def test_two_processes_get_exactly_ten_holds(database, make_user):
    ledger = Ledger(database)
    user = funded_user(database, ledger, make_user)

    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(target=process_worker, args=(database.url, user.id, THREADS // 2, f"proc{i}", barrier, results))
        for i in range(2)
    ]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0

    assert not any("error" in o for o in outcomes), outcomes
    assert sum(o["ok"] for o in outcomes) == AFFORDABLE
    assert sum(o["insufficient"] for o in outcomes) == THREADS - AFFORDABLE
    assert_exactly_the_affordable_holds(database, ledger, user.id)


def test_two_stores_in_one_process_share_nothing_but_the_database(database, make_user):
    """Two Database objects on one URL (two engines, two pools, and on SQLite two writer locks)
    with a Ledger each: only the database itself (BEGIN IMMEDIATE on SQLite, row locks on
    PostgreSQL) keeps them from overspending."""
    stores = [Database(database.url, pool_size=THREADS), Database(database.url, pool_size=THREADS)]
    try:
        assert stores[0].engine is not stores[1].engine
        if database.is_sqlite:
            assert stores[0]._writer is not stores[1]._writer, "each store queues its own writers"
        ledgers = [Ledger(stores[0]), Ledger(stores[1])]
        user = funded_user(database, Ledger(database), make_user)
        start = threading.Barrier(THREADS)

        def one(i: int) -> bool:
            start.wait()
            try:
                ledgers[i % 2].reserve(user_id=user.id, amount=COST, job_id=f"job-{i}")
                return True
            except InsufficientCredits:
                return False

        with ThreadPoolExecutor(THREADS) as pool:
            assert sum(pool.map(one, range(THREADS))) == AFFORDABLE
        assert_exactly_the_affordable_holds(database, ledgers[1], user.id)
    finally:
        for store in stores:
            store.dispose()


def test_racing_the_same_key_grants_once(database, make_user):
    ledger = Ledger(database)
    user = make_user(database)
    n = 20
    start = threading.Barrier(n)

    def one(_):
        start.wait()
        return ledger.grant(user_id=user.id, amount=40, kind="trial", idempotency_key=f"signup:{user.id}")

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))
    assert sum(not r.replayed for r in results) == 1
    assert {r.grant_id for r in results} == {results[0].grant_id}
    assert {r.balance for r in results} == {40}
    assert ledger.balance(user.id).total == 40
    assert ledger.reconcile(user.id) == []


def test_racing_one_key_for_two_users_grants_once(database, make_user):
    """Different users do not share a lock: the UNIQUE key (and a savepoint) decides."""
    ledger = Ledger(database)
    users = [make_user(database), make_user(database)]
    key = f"stripe:cs_{uuid.uuid4().hex}"
    n = 20
    start = threading.Barrier(n)

    def one(i):
        start.wait()
        try:
            return ledger.grant(user_id=users[i % 2].id, amount=100, kind="pack", idempotency_key=key)
        except Conflict:
            return None

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))
    granted = [r for r in results if r is not None]
    assert sum(not r.replayed for r in granted) == 1
    assert len(granted) == n // 2  # every call for the winner's user; the others conflict
    assert sorted(ledger.balance(u.id).total for u in users) == [0, 100]
    assert ledger.reconcile() == []


def test_concurrent_capture_and_release_settle_once(database, make_user):
    ledger = Ledger(database)
    user = make_user(database)
    ledger.grant(user_id=user.id, amount=200, kind="pack", idempotency_key=f"p:{user.id}")
    holds = [ledger.reserve(user_id=user.id, amount=10, job_id=f"job-{i}") for i in range(10)]
    start = threading.Barrier(40)

    def one(i):
        start.wait()
        hold = holds[i % 10]
        settled = ledger.capture(hold) if i % 2 else ledger.release(hold, "failed")
        return settled.status

    with ThreadPoolExecutor(40) as pool:
        list(pool.map(one, range(40)))
    with database.session() as s:
        statuses = [h.status for h in s.exec(select(Hold).where(Hold.user_id == user.id)).all()]
    captured = statuses.count("captured")
    assert captured + statuses.count("released") == 10
    assert ledger.balance(user.id).total == 200 - 10 * captured
    assert ledger.reconcile(user.id) == []
