"""Hardening of money paths (issue 17, items 13-15; issue 9): on the real store (SQLite and
PostgreSQL) and, for billing, the real stripe SDK talking to the fake Stripe server."""

from __future__ import annotations

import copy
import math
from datetime import timedelta

import pytest
from sqlalchemy import func
from sqlmodel import select

from models.base import utcnow
from models.ledger import CreditGrant, LedgerEntry
from models.payment import Fulfillment, StripeEvent
from services.accounts import Accounts
from services.admin import OPERATOR, Admin, Operator
from services.errors import PaymentError, PermissionDenied, ValidationFailed
from services.ledger import MAX_AMOUNT, MAX_BALANCE, Ledger
from services.mailer import LogMailer
from services.settings import load_settings
from tests.fakes.stripe_server import FakeStripe, new_id
from tests.integration.test_billing import Shop, entitlements_of, make_billing, price_of


def rows(db) -> tuple[int, int]:
    """(credit grants, ledger entries): what a refused call must leave as it was."""
    with db.session() as s:
        return (s.exec(select(func.count()).select_from(CreditGrant)).one(),
                s.exec(select(func.count()).select_from(LedgerEntry)).one())


# 14. A cap on the balance, the same on both stores -------------------------------------------------


def test_grants_stop_at_the_cap_with_a_plain_refusal(database, make_user):
    """Before the cap, PostgreSQL failed with a raw int32 overflow past 2**31; SQLite went on."""
    ledger = Ledger(database)
    user = make_user(database)
    granted, refusals = 0, []
    for i in range(25):  # 25 x 100M would pass 2**31
        try:
            ledger.grant(user_id=user.id, amount=MAX_AMOUNT, kind="pack", idempotency_key=f"fill:{i}")
            granted += 1
        except ValidationFailed as err:
            refusals.append(err.message)
    assert granted * MAX_AMOUNT == MAX_BALANCE
    assert len(refusals) == 25 - granted
    assert "1,000,000,000" in refusals[0] and "Nothing was changed" in refusals[0]
    assert ledger.balance(user.id).total == MAX_BALANCE
    assert ledger.reconcile() == []


def test_every_path_that_adds_credits_counts_held_credits_and_writes_nothing(database, make_user):
    ledger = Ledger(database)
    user = make_user(database)
    period_end = utcnow() + timedelta(days=30)
    for i in range(9):
        ledger.grant(user_id=user.id, amount=MAX_AMOUNT, kind="pack", idempotency_key=f"fill:{i}")
    ledger.grant(user_id=user.id, amount=MAX_AMOUNT - 1000 - 1, kind="admin", idempotency_key="fill:last")
    hold = ledger.reserve(user_id=user.id, amount=5000, job_id="job-held")
    ledger.refresh_subscription(user_id=user.id, allowance=1000, period_end=period_end, idempotency_key="sub:1")
    assert ledger.balance(user.id).total + ledger.balance(user.id).held == MAX_BALANCE - 1

    ledger.grant(user_id=user.id, amount=1, kind="admin", idempotency_key="edge")  # exactly the cap: fine
    before = rows(database)
    attempts = [
        lambda: ledger.grant(user_id=user.id, amount=1, kind="pack", idempotency_key="one-more"),
        lambda: ledger.adjust(user_id=user.id, amount=1, idempotency_key="adjust-up"),
        lambda: ledger.refresh_subscription(user_id=user.id, allowance=1001, period_end=period_end + timedelta(days=30),
                                            idempotency_key="sub:2"),
    ]
    for attempt in attempts:
        with pytest.raises(ValidationFailed, match="at most 1,000,000,000 credits"):
            attempt()
    assert rows(database) == before, "a refusal writes nothing (not even the expiries it booked first)"
    assert ledger.balance(user.id).total == MAX_BALANCE - 5000

    # A refresh that replaces the subscription bucket with no more than it had still works, and so
    # does a release (the held credits were already counted).
    ledger.refresh_subscription(user_id=user.id, allowance=1000, period_end=period_end + timedelta(days=30),
                                idempotency_key="sub:2")
    ledger.release(hold, "provider failed")
    assert ledger.balance(user.id).total == MAX_BALANCE and ledger.balance(user.id).held == 0

    # A refused key was never recorded: once there is room, the same request goes through.
    ledger.adjust(user_id=user.id, amount=-10, idempotency_key="make-room")
    assert not ledger.grant(user_id=user.id, amount=1, kind="pack", idempotency_key="one-more").replayed
    assert ledger.reconcile() == []


# 15 and issue 9. The admin grant: whole numbers only; the CLI acts as OPERATOR ----------------------


@pytest.fixture
def admin_env(sqlite_database, tmp_path):
    settings = load_settings(env_file=None, DATA_DIR=str(tmp_path), ADMIN_EMAILS="boss@example.com", TRIAL_CREDITS=0)
    ledger = Ledger(sqlite_database)
    accounts = Accounts(db=sqlite_database, ledger=ledger, settings=settings, mailer=LogMailer())
    boss = accounts.create_user(email="boss@example.com", password="right password")
    user = accounts.create_user(email="u@example.com", password="right password")
    return Admin(db=sqlite_database, accounts=accounts, ledger=ledger), ledger, boss, user


@pytest.mark.parametrize("amount", [1.5, 2.5, 0.5, True, False, None, "3", 0, -1, -1.0, math.nan, math.inf,
                                    MAX_AMOUNT + 1, float(MAX_AMOUNT + 1)])
def test_admin_grant_refuses_what_is_not_a_whole_positive_number(admin_env, amount):
    admin, ledger, boss, user = admin_env
    before = rows(admin.db)
    with pytest.raises(ValidationFailed, match="whole number of credits"):
        admin.grant_credits(actor=boss, email=user.email, amount=amount)
    assert rows(admin.db) == before and ledger.balance(user.id).total == 0


def test_admin_grant_takes_whole_numbers_and_a_whole_float(admin_env):
    """A number field sends 3.0 for 3: a float with a whole value is that number (documented)."""
    admin, ledger, boss, user = admin_env
    assert admin.grant_credits(actor=boss, email=user.email, amount=2) == 2
    assert admin.grant_credits(actor=boss, email=user.email, amount=3.0) == 5
    assert [g.original for g in _grants(admin.db, user.id)] == [2, 3]


def test_operator_grants_through_the_same_service_and_users_cannot(admin_env):
    admin, ledger, boss, user = admin_env
    assert admin.grant_credits(actor=OPERATOR, email="U@Example.com", amount=7) == 7
    with admin.db.session() as s:
        entry = s.exec(select(LedgerEntry).where(LedgerEntry.user_id == user.id)).one()
    assert entry.idempotency_key.startswith("admin:cli:") and entry.note == "Granted from the CLI"
    for actor in (None, user, "cli", Operator()):  # only the server's own OPERATOR object counts
        with pytest.raises(PermissionDenied):
            admin.grant_credits(actor=actor, email=user.email, amount=1)
    assert ledger.balance(user.id).total == 7 and ledger.reconcile() == []


def _grants(db, user_id):
    with db.session() as s:
        return s.exec(select(CreditGrant).where(CreditGrant.user_id == user_id).order_by(CreditGrant.id)).all()


# 13. Webhooks: Stripe's objects, never the event's copy ---------------------------------------------


@pytest.fixture
def shop(database, tmp_path):
    with FakeStripe() as fake:
        billing = make_billing(database, tmp_path, api_base=fake.url)
        billing.sync_catalog()
        yield Shop(db=database, fake=fake, ledger=billing.ledger, billing=billing)


def subscribed(shop, make_user, product="basic_monthly"):
    user = make_user(shop.db)
    session = shop.buy(user, product)
    assert shop.deliver("checkout.session.completed", session)["status"] == "granted"
    return user, session["subscription"]


def fulfilled(shop, ref: str) -> bool:
    with shop.db.session() as s:
        return s.exec(select(Fulfillment).where(Fulfillment.ref == ref)).first() is not None


def test_an_invoice_stripe_does_not_know_grants_nothing(shop, make_user):
    user, sub_id = subscribed(shop, make_user)
    thief = make_user(shop.db)
    made_up = shop.fake.renew(sub_id)  # a real invoice's shape, but an id Stripe never issued
    del shop.fake.invoices[made_up["id"]]
    made_up["id"] = new_id("in")
    line = made_up["lines"]["data"][0]
    line["pricing"]["price_details"]["price"] = price_of(shop.fake, "studio_pro_monthly")["id"]
    made_up["parent"]["subscription_details"]["metadata"] = {"user_id": str(thief.id)}
    before, events = shop.balance(user), shop.events()

    with pytest.raises(PaymentError, match="no such invoice"):
        shop.deliver("invoice.paid", made_up)
    assert shop.fake.requests_to("GET", f"/v1/invoices/{made_up['id']}"), "the handler asked Stripe"
    assert shop.balance(thief) == 0 and shop.balance(user) == before
    assert not fulfilled(shop, made_up["id"]) and shop.events() == events
    assert shop.ledger.reconcile() == []


def test_stripes_invoice_wins_over_the_events_copy(shop, make_user):
    user, sub_id = subscribed(shop, make_user)
    other = make_user(shop.db)
    real = shop.fake.renew(sub_id)  # Stripe: a paid Basic renewal (300 credits) for `user`
    forged = copy.deepcopy(real)
    forged["customer"] = shop.fake.create_customer()["id"]
    forged["lines"]["data"][0]["pricing"]["price_details"]["price"] = price_of(shop.fake, "studio_pro_monthly")["id"]
    forged["lines"]["data"][0]["period"]["end"] += 3 * 365 * 24 * 3600
    forged["parent"]["subscription_details"]["metadata"] = {"user_id": str(other.id)}

    result = shop.deliver("invoice.paid", forged)
    assert (result["status"], shop.balance(user), shop.balance(other)) == ("granted", 300, 0)
    expires = shop.ledger.balance(user.id).subscription_expires_at.timestamp()
    assert expires == real["lines"]["data"][0]["period"]["end"]
    with shop.db.session() as s:
        row = s.exec(select(Fulfillment).where(Fulfillment.ref == real["id"])).one()
    assert (row.user_id, row.product, row.credits) == (user.id, "basic_monthly", 300)
    assert shop.customer(other) is None


def test_an_invoice_that_is_open_at_stripe_grants_nothing(shop, make_user):
    user, sub_id = subscribed(shop, make_user)
    with shop.fake._lock:
        invoice = shop.fake._new_invoice(shop.fake.subscriptions[sub_id], "subscription_cycle", paid=False)
    claimed = {**invoice, "status": "paid", "amount_paid": invoice["amount_due"]}
    assert shop.deliver("invoice.paid", claimed)["status"] == "ignored"
    assert shop.balance(user) == 300 and not fulfilled(shop, invoice["id"])


def test_a_subscription_stripe_does_not_know_unlocks_no_plan(shop, make_user):
    user = make_user(shop.db)
    pro = price_of(shop.fake, "studio_pro_monthly")
    made_up = {
        "id": new_id("sub"), "object": "subscription", "customer": new_id("cus"), "status": "active",
        "cancel_at_period_end": False, "metadata": {"user_id": str(user.id)},
        "items": {"object": "list", "data": [{"id": new_id("si"), "price": pro,
                                              "current_period_end": int(utcnow().timestamp()) + 86400}]},
    }
    with pytest.raises(PaymentError, match="no such subscription"):
        shop.deliver("customer.subscription.created", made_up)
    assert shop.billing.current_plan(user.id) is None
    assert not entitlements_of(shop.billing).can_use_resolution(user.id, "paid")
    with shop.db.session() as s:
        assert s.exec(select(StripeEvent)).all() == []


def test_a_refund_takes_back_what_stripe_refunded_not_what_the_event_says(shop, make_user):
    user = make_user(shop.db)
    session = shop.buy(user, "pack_500")
    shop.deliver("checkout.session.completed", session)
    half = shop.fake.refund(session["payment_intent"], amount=session["amount_total"] // 2)
    claimed = {**half, "amount_refunded": half["amount"], "refunded": True}  # the event says: all of it
    assert shop.deliver("charge.refunded", claimed)["status"] == "refunded"
    assert shop.balance(user) == 250
    assert shop.ledger.reconcile() == []
