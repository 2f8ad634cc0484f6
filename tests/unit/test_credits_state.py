"""A Hypothesis state machine drives the ledger (grant, reserve, capture, release, refresh,
expire by moving the injected clock, sweep, clawback, adjust, replay a key) against a small
in-memory model, on SQLite and PostgreSQL.

Invariants after every step: balance >= 0; balance == the model's; held == the model's;
balance == ledger sum - held - (credits left in expired buckets not booked yet); reconcile() empty.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func
from sqlmodel import select

from models.ledger import GRANT_KINDS, CreditGrant, LedgerEntry
from services.db import Database
from services.errors import InsufficientCredits
from services.ledger import SPEND_ORDER, Ledger
from tests.clock import Clock
from tests.factories import make_user


@dataclass
class Bucket:
    kind: str
    remaining: int
    expires_at: datetime | None


@dataclass
class ModelHold:
    id: int
    amount: int
    split: dict[int, int]
    expires_at: datetime
    status: str = "pending"


class LedgerMachine(RuleBasedStateMachine):
    db: Database  # set by the test

    def __init__(self):
        super().__init__()
        self.clock = Clock()
        self.ledger = Ledger(self.db, clock=self.clock)
        self.user_id = make_user(self.db).id
        self.prefix = uuid.uuid4().hex[:8]  # job ids are unique across examples sharing a database
        self.buckets: dict[int, Bucket] = {}
        self.holds: dict[str, ModelHold] = {}
        self.grants: dict[str, tuple] = {}  # key -> (grant_id, amount, balance)
        self.counter = 0

    # model helpers

    def fresh(self, what: str) -> str:
        self.counter += 1
        return f"{self.prefix}-{what}-{self.counter}"

    def live(self, b: Bucket) -> bool:
        return b.expires_at is None or b.expires_at > self.clock.now

    def visible(self) -> int:
        return sum(b.remaining for b in self.buckets.values() if self.live(b))

    def in_spend_order(self) -> list[tuple[int, Bucket]]:
        rank = {k: i for i, k in enumerate(SPEND_ORDER)}
        found = [(gid, b) for gid, b in self.buckets.items() if self.live(b) and b.remaining > 0]
        return sorted(found, key=lambda item: (rank[item[1].kind], item[0]))

    def take(self, amount: int) -> dict[int, int]:
        split, left = {}, amount
        for gid, b in self.in_spend_order():
            n = min(b.remaining, left)
            if n <= 0:
                break
            b.remaining -= n
            split[gid] = n
            left -= n
        return split

    def pending(self) -> list[str]:
        return sorted(job for job, h in self.holds.items() if h.status == "pending")

    def settled(self) -> list[str]:
        return sorted(job for job, h in self.holds.items() if h.status != "pending")

    def give_back(self, hold: ModelHold) -> None:
        for gid, n in hold.split.items():
            self.buckets[gid].remaining += n

    # rules

    @rule(kind=st.sampled_from(GRANT_KINDS), amount=st.integers(1, 60), days=st.none() | st.integers(1, 60))
    def grant(self, kind, amount, days):
        if kind == "subscription" and days is None:
            days = 30
        expires = self.clock.now + timedelta(days=days) if days else None
        key = self.fresh("grant")
        before = self.visible()
        r = self.ledger.grant(user_id=self.user_id, amount=amount, kind=kind, idempotency_key=key, expires_at=expires)
        assert (r.amount, r.balance, r.replayed) == (amount, before + amount, False)
        self.buckets[r.grant_id] = Bucket(kind, amount, expires)
        self.grants[key] = (r.grant_id, r.amount, r.balance)

    @precondition(lambda self: self.grants)
    @rule(data=st.data())
    def replay_a_key(self, data):
        key = data.draw(st.sampled_from(sorted(self.grants)))
        r = self.ledger.grant(user_id=self.user_id, amount=7, kind="pack", idempotency_key=key)
        assert r.replayed
        assert (r.grant_id, r.amount, r.balance) == self.grants[key]

    @rule(amount=st.integers(1, 80))
    def reserve(self, amount):
        job = self.fresh("job")
        available = self.visible()
        if amount > available:
            with pytest.raises(InsufficientCredits) as err:
                self.ledger.reserve(user_id=self.user_id, amount=amount, job_id=job)
            assert (err.value.needed, err.value.available) == (amount, available)
            return
        hold = self.ledger.reserve(user_id=self.user_id, amount=amount, job_id=job)
        split = self.take(amount)
        assert hold.split == {str(gid): n for gid, n in split.items()}
        self.holds[job] = ModelHold(hold.id, amount, split, hold.expires_at)

    @precondition(lambda self: self.pending())
    @rule(data=st.data(), capture=st.booleans())
    def settle(self, data, capture):
        job = data.draw(st.sampled_from(self.pending()))
        hold = self.holds[job]
        if capture:
            assert self.ledger.capture(hold.id).status == "captured"
            hold.status = "captured"
        else:
            assert self.ledger.release(hold.id, "provider failed").status == "released"
            hold.status = "released"
            self.give_back(hold)

    @precondition(lambda self: self.settled())
    @rule(data=st.data(), capture=st.booleans())
    def settle_again(self, data, capture):
        job = data.draw(st.sampled_from(self.settled()))
        hold = self.holds[job]
        got = self.ledger.capture(hold.id) if capture else self.ledger.release(hold.id, "again")
        assert got.status == hold.status

    @rule(allowance=st.integers(1, 100), days=st.integers(1, 60))
    def refresh(self, allowance, days):
        period_end = self.clock.now + timedelta(days=days)
        before = self.visible()
        r = self.ledger.refresh_subscription(
            user_id=self.user_id, allowance=allowance, period_end=period_end, idempotency_key=self.fresh("inv")
        )
        current = [b for b in self.buckets.values() if b.kind == "subscription" and self.live(b)]
        if any(b.expires_at > period_end for b in current):
            assert (r.grant_id, r.amount, r.balance) == (None, 0, before)
            return
        for b in current:
            b.remaining = 0
            b.expires_at = self.clock.now
        self.buckets[r.grant_id] = Bucket("subscription", allowance, period_end)
        assert (r.amount, r.balance) == (allowance, self.visible())

    @rule(hours=st.integers(1, 24 * 45))
    def advance_clock(self, hours):
        self.clock.now += timedelta(hours=hours)

    @rule()
    def expire_due(self):
        self.ledger.expire_due(user_id=self.user_id)

    @rule(data=st.data())
    def sweep(self, data):
        stale = [job for job in self.pending() if self.holds[job].expires_at <= self.clock.now]
        stored = set(data.draw(st.lists(st.sampled_from(stale), unique=True))) if stale else set()
        self.ledger.sweep_stale_holds(is_stored=lambda job: job in stored)
        for job in stale:
            hold = self.holds[job]
            if job in stored:
                hold.status = "captured"
            else:
                hold.status = "expired"
                self.give_back(hold)

    @precondition(lambda self: self.grants)
    @rule(data=st.data(), amount=st.none() | st.integers(1, 60))
    def clawback(self, data, amount):
        key = data.draw(st.sampled_from(sorted(self.grants)))
        bucket = self.buckets[self.grants[key][0]]
        taken = self.ledger.clawback(
            user_id=self.user_id, source_ref=key, idempotency_key=self.fresh("refund"), amount=amount
        )
        expected = min(bucket.remaining, amount or bucket.remaining) if self.live(bucket) else 0
        assert taken == expected
        bucket.remaining -= taken

    @rule(amount=st.integers(-60, 60).filter(bool))
    def adjust(self, amount):
        r = self.ledger.adjust(user_id=self.user_id, amount=amount, idempotency_key=self.fresh("adj"))
        if amount > 0:
            self.buckets[r.grant_id] = Bucket("admin", amount, None)
            assert r.amount == amount
        else:
            assert r.amount == -sum(self.take(min(-amount, self.visible())).values())
        assert r.balance == self.visible()

    # invariants

    @invariant()
    def balance_matches_ledger_and_model(self):
        balance = self.ledger.balance(self.user_id)
        assert balance.total >= 0
        assert balance.total == self.visible()
        assert balance.held == sum(self.holds[job].amount for job in self.pending())
        with self.db.session() as s:
            ledger_sum, held = s.exec(
                select(func.coalesce(func.sum(LedgerEntry.delta), 0), func.coalesce(func.sum(LedgerEntry.held_delta), 0))
                .where(LedgerEntry.user_id == self.user_id)
            ).one()
            unbooked = s.exec(
                select(func.coalesce(func.sum(CreditGrant.remaining), 0)).where(
                    CreditGrant.user_id == self.user_id, CreditGrant.expires_at <= self.clock.now
                )
            ).one()
        assert held == balance.held
        assert balance.total == ledger_sum - held - unbooked

    @invariant()
    def reconcile_is_clean(self):
        assert self.ledger.reconcile(self.user_id) == []


def test_ledger_state_machine(database):
    machine = type("LedgerMachineOn", (LedgerMachine,), {"db": database})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=20, stateful_step_count=25, deadline=None, database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
