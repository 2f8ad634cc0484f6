"""The ledger's rules on a real SQLite store: spend order, holds, expiry, refresh, clawback,
idempotency, bad input, history pages, reconcile. (Both databases: tests/integration.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, update
from sqlmodel import select

from models.ledger import CreditGrant, Hold, LedgerEntry
from services.errors import Conflict, InsufficientCredits, NotFound, ValidationFailed
from services.ledger import SPEND_ORDER, Ledger


@pytest.fixture
def ledger(sqlite_database, clock):
    return Ledger(sqlite_database, clock=clock)


@pytest.fixture
def user(sqlite_database, make_user):
    return make_user(sqlite_database)


def entries(db, user_id):
    with db.session() as s:
        return s.exec(select(LedgerEntry).where(LedgerEntry.user_id == user_id).order_by(LedgerEntry.id)).all()


def grant_all_kinds(ledger, clock, user_id, amount=10):
    """One bucket of each kind, created in reverse spend order so creation order differs."""
    ids = {}
    for kind in reversed(SPEND_ORDER):
        expires = clock.now + timedelta(days=30) if kind in ("subscription", "team") else None
        ids[kind] = ledger.grant(
            user_id=user_id, amount=amount, kind=kind, idempotency_key=f"{kind}:{user_id}", expires_at=expires
        ).grant_id
    return ids


# Spend order ------------------------------------------------------------------------------------


def test_spend_order_is_team_subscription_trial_admin_pack(ledger, clock, user):
    ids = grant_all_kinds(ledger, clock, user.id)
    hold = ledger.reserve(user_id=user.id, amount=45, job_id="job-1")
    assert hold.split == {
        str(ids["team"]): 10, str(ids["subscription"]): 10, str(ids["trial"]): 10, str(ids["admin"]): 10,
        str(ids["pack"]): 5,
    }
    assert ledger.balance(user.id).buckets == {"team": 0, "subscription": 0, "trial": 0, "admin": 0, "pack": 5}


def test_oldest_bucket_first_within_a_kind(ledger, user):
    first = ledger.grant(user_id=user.id, amount=5, kind="pack", idempotency_key="p1").grant_id
    second = ledger.grant(user_id=user.id, amount=5, kind="pack", idempotency_key="p2").grant_id
    hold = ledger.reserve(user_id=user.id, amount=7, job_id="job-1")
    assert hold.split == {str(first): 5, str(second): 2}


def test_expired_bucket_is_skipped_and_never_counts(ledger, clock, user):
    ledger.grant(user_id=user.id, amount=10, kind="admin", idempotency_key="a",
                 expires_at=clock.now + timedelta(hours=1))
    pack = ledger.grant(user_id=user.id, amount=10, kind="pack", idempotency_key="p").grant_id
    clock.advance(hours=2)
    assert ledger.balance(user.id).total == 10  # before expire_due books anything
    assert ledger.balance(user.id).buckets["admin"] == 0
    assert ledger.reconcile(user.id) == []
    with pytest.raises(InsufficientCredits) as err:
        ledger.reserve(user_id=user.id, amount=15, job_id="too-much")
    assert (err.value.needed, err.value.available, err.value.shortfall) == (15, 10, 5)
    hold = ledger.reserve(user_id=user.id, amount=10, job_id="job")
    assert hold.split == {str(pack): 10}
    kinds = [e.kind for e in entries(ledger.db, user.id)]
    assert kinds == ["grant", "grant", "expiry", "hold"]  # the write booked the expiry first
    assert ledger.reconcile(user.id) == []


# Holds ------------------------------------------------------------------------------------------


def test_hold_capture_release_bookkeeping(ledger, user):
    ledger.grant(user_id=user.id, amount=50, kind="pack", idempotency_key="p")
    hold = ledger.reserve(user_id=user.id, amount=20, job_id="job-1")
    b = ledger.balance(user.id)
    assert (b.total, b.held) == (30, 20)
    captured = ledger.capture(hold)
    assert captured.status == "captured"
    assert ledger.capture(hold.id).status == "captured"  # again: no-op
    assert ledger.release(hold, "late failure").status == "captured"  # never both
    b = ledger.balance(user.id)
    assert (b.total, b.held) == (30, 0)

    other = ledger.reserve(user_id=user.id, amount=10, job_id="job-2")
    assert ledger.release(other, "provider failed").status == "released"
    assert ledger.release(other, "again").status == "released"
    assert ledger.capture(other).status == "released"
    b = ledger.balance(user.id)
    assert (b.total, b.held) == (30, 0)
    got = [(e.kind, e.delta, e.held_delta, e.balance_after) for e in entries(ledger.db, user.id)]
    assert got == [
        ("grant", 50, 0, 50), ("hold", 0, 20, 30), ("capture", -20, -20, 30),
        ("hold", 0, 10, 20), ("release", 0, -10, 30),
    ]
    assert ledger.reconcile(user.id) == []


def test_release_restores_the_same_buckets(ledger, clock, user):
    ids = grant_all_kinds(ledger, clock, user.id, amount=5)
    hold = ledger.reserve(user_id=user.id, amount=12, job_id="job")
    ledger.release(hold, "failed")
    with ledger.db.session() as s:
        remaining = {g.id: g.remaining for g in s.exec(select(CreditGrant)).all()}
    assert remaining == dict.fromkeys(ids.values(), 5)


def test_release_into_a_bucket_that_expired_meanwhile_expires_at_once(ledger, clock, user):
    ledger.grant(user_id=user.id, amount=10, kind="admin", idempotency_key="a",
                 expires_at=clock.now + timedelta(minutes=5))
    ledger.grant(user_id=user.id, amount=10, kind="pack", idempotency_key="p")
    hold = ledger.reserve(user_id=user.id, amount=15, job_id="job")
    clock.advance(minutes=10)
    ledger.release(hold, "failed")
    assert ledger.balance(user.id).total == 10
    tail = [(e.kind, e.delta - e.held_delta, e.balance_after) for e in entries(ledger.db, user.id)][-2:]
    assert tail == [("release", 15, 20), ("expiry", -10, 10)]
    assert ledger.reconcile(user.id) == []


def test_reserve_is_idempotent_per_job(ledger, user, make_user):
    ledger.grant(user_id=user.id, amount=30, kind="pack", idempotency_key="p")
    first = ledger.reserve(user_id=user.id, amount=10, job_id="job")
    again = ledger.reserve(user_id=user.id, amount=10, job_id="job")
    assert again.id == first.id
    assert ledger.balance(user.id).total == 20
    with pytest.raises(Conflict):
        ledger.reserve(user_id=user.id, amount=20, job_id="job")
    stranger = make_user(ledger.db)
    ledger.grant(user_id=stranger.id, amount=30, kind="pack", idempotency_key="p2")
    with pytest.raises(Conflict):
        ledger.reserve(user_id=stranger.id, amount=10, job_id="job")
    assert ledger.balance(stranger.id).total == 30


def test_insufficient_credits_changes_nothing(ledger, user):
    ledger.grant(user_id=user.id, amount=5, kind="trial", idempotency_key="t")
    with pytest.raises(InsufficientCredits) as err:
        ledger.reserve(user_id=user.id, amount=10, job_id="job")
    assert "10 credits" in str(err.value)
    assert ledger.get_hold("job") is None
    assert ledger.balance(user.id).total == 5
    assert len(entries(ledger.db, user.id)) == 1


def test_sweep_captures_stored_and_expires_the_rest(ledger, clock, user):
    ledger.grant(user_id=user.id, amount=30, kind="pack", idempotency_key="p")
    stored = ledger.reserve(user_id=user.id, amount=10, job_id="stored")
    lost = ledger.reserve(user_id=user.id, amount=10, job_id="lost")
    fresh = ledger.reserve(user_id=user.id, amount=10, job_id="fresh")
    clock.advance(seconds=ledger.hold_ttl.total_seconds() - 1)
    assert ledger.sweep_stale_holds(is_stored=lambda job: True) == {"captured": 0, "released": 0, "errors": 0}
    clock.advance(seconds=2)
    fresh = ledger.capture(fresh)  # settled normally before the sweep
    counts = ledger.sweep_stale_holds(is_stored=lambda job: job == "stored")
    assert counts == {"captured": 1, "released": 1, "errors": 0}
    assert ledger.get_hold("stored").status == "captured"
    assert ledger.get_hold("lost").status == "expired"
    assert ledger.get_hold("fresh").status == "captured"
    assert ledger.balance(user.id).total == 10
    assert stored.id != lost.id
    assert ledger.reconcile(user.id) == []


def test_sweep_leaves_a_hold_whose_check_failed(ledger, clock, user):
    ledger.grant(user_id=user.id, amount=10, kind="pack", idempotency_key="p")
    ledger.reserve(user_id=user.id, amount=10, job_id="job")
    clock.advance(hours=1)

    def broken(job_id):
        raise OSError("storage unreachable")

    assert ledger.sweep_stale_holds(is_stored=broken) == {"captured": 0, "released": 0, "errors": 1}
    assert ledger.get_hold("job").status == "pending"


# Subscription refresh, expiry, clawback, adjust ------------------------------------------------


def test_refresh_expires_leftover_subscription_without_rollover(ledger, clock, user):
    end1 = clock.now + timedelta(days=30)
    first = ledger.refresh_subscription(user_id=user.id, allowance=100, period_end=end1, idempotency_key="in_1")
    ledger.capture(ledger.reserve(user_id=user.id, amount=30, job_id="job"))
    clock.advance(days=29)
    end2 = clock.now + timedelta(days=30)
    second = ledger.refresh_subscription(user_id=user.id, allowance=100, period_end=end2, idempotency_key="in_2")
    assert second.grant_id != first.grant_id
    assert second.balance == 100
    b = ledger.balance(user.id)
    assert b.total == 100 and b.buckets["subscription"] == 100
    assert b.subscription_expires_at == end2 and b.next_expiry == end2
    kinds = [(e.kind, e.delta) for e in entries(ledger.db, user.id)]
    assert kinds[-2:] == [("expiry", -70), ("grant", 100)]
    assert ledger.reconcile(user.id) == []


def test_out_of_date_refresh_changes_nothing(ledger, clock, user):
    end2 = clock.now + timedelta(days=60)
    ledger.refresh_subscription(user_id=user.id, allowance=100, period_end=end2, idempotency_key="in_2")
    stale = ledger.refresh_subscription(
        user_id=user.id, allowance=100, period_end=clock.now + timedelta(days=30), idempotency_key="in_1"
    )
    assert (stale.grant_id, stale.amount, stale.balance) == (None, 0, 100)
    assert ledger.balance(user.id).subscription_expires_at == end2
    assert ledger.history(user.id).total == 1
    assert ledger.reconcile(user.id) == []


def test_refresh_while_a_hold_is_pending(ledger, clock, user):
    ledger.refresh_subscription(user_id=user.id, allowance=50, period_end=clock.now + timedelta(days=30),
                                idempotency_key="in_1")
    hold = ledger.reserve(user_id=user.id, amount=20, job_id="job")
    ledger.refresh_subscription(user_id=user.id, allowance=50, period_end=clock.now + timedelta(days=60),
                                idempotency_key="in_2")
    assert ledger.balance(user.id).total == 50
    ledger.release(hold, "failed")  # returned to the old period's bucket, which is over
    assert ledger.balance(user.id).total == 50
    assert ledger.reconcile(user.id) == []


def test_expire_due_books_each_expired_bucket_once(ledger, clock, user, make_user):
    other = make_user(ledger.db)
    for uid in (user.id, other.id):
        ledger.grant(user_id=uid, amount=10, kind="trial", idempotency_key=f"t{uid}",
                     expires_at=clock.now + timedelta(days=7))
        ledger.grant(user_id=uid, amount=10, kind="pack", idempotency_key=f"p{uid}")
    assert ledger.expire_due() == 0
    clock.advance(days=8)
    assert ledger.expire_due(user_id=user.id) == 1
    assert ledger.expire_due() == 1
    assert ledger.expire_due() == 0
    for uid in (user.id, other.id):
        assert ledger.balance(uid).total == 10
        assert [e.kind for e in entries(ledger.db, uid)] == ["grant", "grant", "expiry"]
    assert ledger.reconcile() == []


def test_clawback_takes_what_is_left_never_below_zero(ledger, user):
    ledger.grant(user_id=user.id, amount=100, kind="pack", idempotency_key="stripe:cs_1")
    ledger.grant(user_id=user.id, amount=50, kind="pack", idempotency_key="stripe:cs_2")
    ledger.capture(ledger.reserve(user_id=user.id, amount=80, job_id="job"))
    assert ledger.clawback(user_id=user.id, source_ref="stripe:cs_1", idempotency_key="refund:1") == 20
    assert ledger.clawback(user_id=user.id, source_ref="stripe:cs_1", idempotency_key="refund:1") == 20  # replay
    assert ledger.clawback(user_id=user.id, source_ref="stripe:cs_1", idempotency_key="refund:1b") == 0
    assert ledger.clawback(user_id=user.id, source_ref="stripe:cs_2", idempotency_key="refund:2",
                           amount=30) == 30
    assert ledger.balance(user.id).total == 20
    with pytest.raises(NotFound):
        ledger.clawback(user_id=user.id, source_ref="stripe:cs_unknown", idempotency_key="refund:3")
    assert ledger.reconcile(user.id) == []


def test_adjust_up_and_down_never_below_zero(ledger, clock, user):
    ledger.grant(user_id=user.id, amount=10, kind="trial", idempotency_key="t")
    up = ledger.adjust(user_id=user.id, amount=15, idempotency_key="adj:1", note="goodwill")
    assert (up.amount, up.balance) == (15, 25)
    down = ledger.adjust(user_id=user.id, amount=-12, idempotency_key="adj:2")
    assert (down.amount, down.balance) == (-12, 13)
    assert ledger.balance(user.id).buckets == {"team": 0, "subscription": 0, "trial": 0, "admin": 13, "pack": 0}
    floor = ledger.adjust(user_id=user.id, amount=-100, idempotency_key="adj:3")
    assert (floor.amount, floor.balance) == (-13, 0)
    assert ledger.adjust(user_id=user.id, amount=-100, idempotency_key="adj:3").replayed
    assert ledger.reconcile(user.id) == []


# Idempotency ------------------------------------------------------------------------------------


def test_grant_replay_returns_first_result_and_changes_nothing(ledger, user):
    first = ledger.grant(user_id=user.id, amount=40, kind="trial", idempotency_key="signup:1")
    again = ledger.grant(user_id=user.id, amount=999, kind="pack", idempotency_key="signup:1")
    assert not first.replayed and again.replayed
    assert (again.grant_id, again.amount, again.balance) == (first.grant_id, 40, 40)
    assert ledger.balance(user.id).total == 40
    assert len(entries(ledger.db, user.id)) == 1


def test_key_used_by_another_user_is_a_conflict(ledger, user, make_user):
    other = make_user(ledger.db)
    ledger.grant(user_id=user.id, amount=10, kind="pack", idempotency_key="stripe:cs_1")
    with pytest.raises(Conflict):
        ledger.grant(user_id=other.id, amount=10, kind="pack", idempotency_key="stripe:cs_1")
    assert ledger.balance(other.id).total == 0


def test_grant_joins_the_callers_transaction(ledger, user):
    with pytest.raises(RuntimeError), ledger.db.transaction() as s:
        ledger.grant(user_id=user.id, amount=40, kind="trial", idempotency_key="t", session=s)
        raise RuntimeError("sign-up failed later")
    assert ledger.balance(user.id).total == 0
    with ledger.db.transaction() as s:
        ledger.grant(user_id=user.id, amount=40, kind="trial", idempotency_key="t", session=s)
        hold = ledger.reserve(user_id=user.id, amount=10, job_id="job", session=s)
        ledger.capture(hold, session=s)
    assert ledger.balance(user.id).total == 30
    assert ledger.reconcile(user.id) == []


# Bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize("amount", [0, -5, 1.5, "10", True, None, 10**9])
def test_bad_amounts_are_refused(ledger, user, amount):
    with pytest.raises(ValidationFailed):
        ledger.grant(user_id=user.id, amount=amount, kind="pack", idempotency_key="k")
    with pytest.raises(ValidationFailed):
        ledger.reserve(user_id=user.id, amount=amount, job_id="job")
    assert entries(ledger.db, user.id) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "gold"},
        {"idempotency_key": ""},
        {"idempotency_key": "x" * 256},
        {"note": "n" * 501},
        {"expires_at": datetime(2030, 1, 1)},  # naive
        {"expires_at": datetime(2000, 1, 1, tzinfo=UTC)},  # past
        {"kind": "subscription"},  # needs an expiry
        {"user_id": 0},
    ],
)
def test_bad_grants_are_refused(ledger, user, kwargs):
    args = {"user_id": user.id, "amount": 10, "kind": "pack", "idempotency_key": "k"} | kwargs
    with pytest.raises(ValidationFailed):
        ledger.grant(**args)
    assert entries(ledger.db, user.id) == []


def test_other_bad_input_is_refused(ledger, clock, user):
    with pytest.raises(NotFound):
        ledger.grant(user_id=user.id + 1000, amount=10, kind="pack", idempotency_key="k")
    with pytest.raises(NotFound):
        ledger.reserve(user_id=user.id + 1000, amount=10, job_id="job")
    with pytest.raises(ValidationFailed):
        ledger.reserve(user_id=user.id, amount=10, job_id="")
    with pytest.raises(ValidationFailed):
        ledger.refresh_subscription(user_id=user.id, allowance=10, period_end=clock.now, idempotency_key="i")
    with pytest.raises(ValidationFailed):
        ledger.adjust(user_id=user.id, amount=0, idempotency_key="a")
    with pytest.raises(ValidationFailed):
        ledger.clawback(user_id=user.id, source_ref="", idempotency_key="c")
    with pytest.raises(NotFound):
        ledger.capture(12345)
    with pytest.raises(ValidationFailed):
        ledger.release("12", "why")
    with pytest.raises(ValidationFailed):
        ledger.history(user.id, page=0)
    assert entries(ledger.db, user.id) == []


# History ----------------------------------------------------------------------------------------


def test_history_pages_newest_first_with_not_charged(ledger, user):
    ledger.grant(user_id=user.id, amount=100, kind="pack", idempotency_key="p")
    for i in range(12):
        hold = ledger.reserve(user_id=user.id, amount=5, job_id=f"job-{i}")
        if i % 3 == 0:
            ledger.release(hold, "provider failed")
        else:
            ledger.capture(hold)
    # 1 grant + 12 holds + 4 releases shown; captures change nothing visible and are not listed
    first = ledger.history(user.id, page=1, per_page=5)
    assert (first.total, first.pages, first.page) == (17, 4, 1)
    assert [r.kind for r in first.rows] == ["hold", "hold", "release", "hold", "hold"]
    assert first.rows[2].what.startswith("Not charged")
    assert first.rows[2].delta == 5
    assert first.rows[0].balance_after == ledger.balance(user.id).total == 60
    last = ledger.history(user.id, page=4, per_page=5)
    assert [(r.kind, r.what, r.delta, r.balance_after) for r in last.rows] == [
        ("hold", "Image generation", -5, 95), ("grant", "Credit pack", 100, 100),
    ]
    assert ledger.history(user.id, page=99, per_page=5).page == 4
    everything = ledger.history(user.id, per_page=200).rows
    for newer, older in zip(everything, everything[1:], strict=False):
        assert newer.balance_after == older.balance_after + newer.delta


def test_history_of_a_new_user_is_one_empty_page(ledger, user):
    page = ledger.history(user.id)
    assert (page.rows, page.page, page.pages, page.total) == ([], 1, 1, 0)


# Reconcile --------------------------------------------------------------------------------------


def test_reconcile_reports_tampering(ledger, user):
    ledger.grant(user_id=user.id, amount=30, kind="pack", idempotency_key="p")
    hold = ledger.reserve(user_id=user.id, amount=10, job_id="job")
    assert ledger.reconcile() == []
    with ledger.db.transaction() as s:
        s.execute(update(CreditGrant).values(remaining=CreditGrant.remaining + 5))
    problems = ledger.reconcile(user.id)
    assert any("buckets hold 25, ledger says 20" in p for p in problems)
    with ledger.db.transaction() as s:
        s.execute(update(CreditGrant).values(remaining=CreditGrant.remaining - 5))
        s.execute(update(Hold).where(Hold.id == hold.id).values(status="captured"))
    problems = ledger.reconcile(user.id)
    assert any(f"hold {hold.id} (captured)" in p for p in problems)
    assert any("pending holds 0" in p for p in problems)
    with ledger.db.transaction() as s:
        s.execute(update(Hold).where(Hold.id == hold.id).values(status="pending"))
        s.execute(update(LedgerEntry).where(LedgerEntry.kind == "grant").values(balance_after=31))
    assert any("expected" in p for p in ledger.reconcile())
    with ledger.db.session() as s:
        assert s.exec(select(func.count()).select_from(LedgerEntry)).one() == 2
