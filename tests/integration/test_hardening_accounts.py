"""Sign-in limits across replicas: two Accounts services, each with its own engine and pool
(as two processes would have), share one store (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from collections import Counter

from services.accounts import Accounts
from services.db import Database
from services.errors import AccountLocked, DomainError, InvalidCredentials, RateLimited
from services.ledger import Ledger
from services.mailer import LogMailer
from services.settings import load_settings


def replicas(database_url: str, tmp_path, n: int = 2, **settings) -> list[Accounts]:
    config = load_settings(env_file=None, DATA_DIR=str(tmp_path), SECRET_KEY="test-secret", **settings)
    out = []
    for _ in range(n):
        db = Database(database_url)
        out.append(Accounts(db=db, ledger=Ledger(db), settings=config, mailer=LogMailer()))
    return out


def run_together(calls) -> Counter:
    """Run the calls at once (a barrier releases them); count the outcome types."""
    barrier = threading.Barrier(len(calls))
    outcomes: list[str] = []

    def run(call) -> None:
        barrier.wait()
        try:
            call()
            outcomes.append("ok")
        except DomainError as err:
            outcomes.append(type(err).__name__)

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return Counter(outcomes)


def test_guesses_spread_over_two_replicas_are_held_at_the_lockout(database_url, tmp_path):
    a, b = replicas(database_url, tmp_path)
    try:
        a.create_user(email="target@example.com", password="the right password")
        calls = [lambda acc=(a, b)[i % 2], i=i: acc.sign_in(email="target@example.com", password=f"guess {i}",
                                                            ip=f"10.0.0.{i}")
                 for i in range(40)]
        outcomes = run_together(calls)
        assert outcomes == {InvalidCredentials.__name__: 10, AccountLocked.__name__: 30}, outcomes
        assert a.hasher.runs + b.hasher.runs == 2 + 1 + 10  # two dummy hashes, the sign-up, ten checks
    finally:
        a.db.dispose()
        b.db.dispose()


def test_sign_ins_from_one_ip_over_two_replicas_are_held_at_the_ip_limit(database_url, tmp_path):
    a, b = replicas(database_url, tmp_path, SIGNIN_RATE_PER_IP_PER_MINUTE=7)
    try:
        calls = [lambda acc=(a, b)[i % 2], i=i: acc.sign_in(email=f"nobody{i}@example.com", password="some password",
                                                            ip="192.0.2.1")
                 for i in range(24)]
        outcomes = run_together(calls)
        assert outcomes == {InvalidCredentials.__name__: 7, RateLimited.__name__: 17}, outcomes
    finally:
        a.db.dispose()
        b.db.dispose()
