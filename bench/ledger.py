"""Ledger throughput: reserve+capture operations per second with N threads.

    python bench/ledger.py [--postgres URL] [--seconds N] [--warmup 1] [--threads 16] [--users 16]

SQLite runs on a fresh, migrated temporary file. With --postgres, the run uses a fresh schema
(`ledger_bench_<random>`) inside that database, migrated and dropped afterwards, so it never touches
existing tables. Each thread works for its own user by default (--users); one op is one
reserve of 1 credit followed by its capture: two write transactions (on PostgreSQL, one
function call each). The threads first work for --warmup seconds (connections opened, statements
prepared, caches filled); only operations completed after that count.

Anomalies (must be 0): failed operations + reconcile() discrepancies + users whose balance or
held credits differ from what the completed operations imply.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.user import User  # noqa: E402
from services.db import Database  # noqa: E402
from services.ledger import Ledger  # noqa: E402
from tests.databases import postgres_schema  # noqa: E402 - pytest-free

START_CREDITS = 10_000_000


def run(db: Database, *, seconds: float, threads: int, users: int, warmup: float = 1.0) -> dict:
    ledger = Ledger(db)
    with db.transaction() as s:
        people = [User(email=f"bench{i}-{uuid.uuid4().hex[:6]}@example.com", password_hash="-") for i in range(users)]
        s.add_all(people)
        s.flush()
        user_ids = [u.id for u in people]
    for uid in user_ids:
        ledger.grant(user_id=uid, amount=START_CREDITS, kind="pack", idempotency_key=f"bench:{uid}")

    ops = [0] * threads  # completed after the warm-up: what is measured
    last = [0.0] * threads  # when each thread completed its last operation
    per_user = dict.fromkeys(user_ids, 0)  # all operations, warm-up included: what the balances show
    errors: list[str] = []
    lock = threading.Lock()
    go = threading.Event()
    measure_from = [0.0]
    stop_at = [0.0]

    def worker(i: int) -> None:
        uid = user_ids[i % users]
        done = measured = 0
        go.wait()
        try:
            while time.perf_counter() < stop_at[0]:
                hold = ledger.reserve(user_id=uid, amount=1, job_id=uuid.uuid4().hex)
                if ledger.capture(hold).status != "captured":
                    errors.append(f"hold {hold.id} not captured")
                done += 1
                now = time.perf_counter()
                if now >= measure_from[0]:
                    measured += 1
                    last[i] = now
        except Exception as exc:  # an anomaly, reported below
            errors.append(repr(exc))
        ops[i] = measured
        with lock:
            per_user[uid] += done

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    measure_from[0] = time.perf_counter() + warmup
    stop_at[0] = measure_from[0] + seconds
    go.set()
    for t in pool:
        t.join()
    elapsed = max(max(last), measure_from[0] + 1e-9) - measure_from[0]

    problems = ledger.reconcile()
    wrong = 0
    for uid, n in per_user.items():
        b = ledger.balance(uid)
        if b.total != START_CREDITS - n or b.held != 0:
            wrong += 1
    total = sum(ops)
    return {
        "ops": total,
        "seconds": round(elapsed, 2),
        "ops_per_s": round(total / elapsed, 1),
        "anomalies": len(errors) + len(problems) + wrong,
        "errors": errors[:5],
        "discrepancies": problems[:5],
    }


def bench_sqlite(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{tmp}/bench.db", pool_size=args.threads)
        try:
            db.upgrade()
            return run(db, seconds=args.seconds, threads=args.threads, users=args.users, warmup=args.warmup)
        finally:
            db.dispose()


def bench_postgres(args) -> dict:
    with postgres_schema(args.postgres, "ledger_bench") as url:
        db = Database(url, pool_size=args.threads)
        try:
            return run(db, seconds=args.seconds, threads=args.threads, users=args.users, warmup=args.warmup)
        finally:
            db.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", metavar="URL", help="postgresql+psycopg://... (a fresh schema is used)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of work before measuring")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--users", type=int, default=16, help="distinct users (threads share them round-robin)")
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args(argv)

    anomalies = 0
    runs = [] if args.skip_sqlite else [("sqlite", bench_sqlite)]
    if args.postgres:
        runs.append(("postgres", bench_postgres))
    for name, fn in runs:
        result = fn(args)
        anomalies += result["anomalies"]
        print(f"{name:9s} {args.threads} threads, {args.users} users: {result['ops_per_s']:>8.1f} reserve+capture ops/s "
              f"({result['ops']} ops in {result['seconds']} s), anomalies: {result['anomalies']}")
        for line in result["errors"] + result["discrepancies"]:
            print(f"          {line}")
    return 1 if anomalies else 0


if __name__ == "__main__":
    raise SystemExit(main())
