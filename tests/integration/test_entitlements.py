"""Entitlements (issue 9): the resolution gates and their messages, on the real store (SQLite and
PostgreSQL), with purchases and plans bought through the real stripe SDK against the fake Stripe."""

from __future__ import annotations

from dataclasses import replace

import pytest

from services.catalog import Catalog
from services.entitlements import Entitlements
from services.errors import ValidationFailed
from tests.integration.test_billing import Shop, make_billing

PURCHASE = "2K images need a plan or a credit pack. See the Pricing tab."
PAID = "4K images need a paid plan. See the Pricing tab."


def gated(catalog: Catalog) -> Catalog:
    """1K open to all, 2K for a plan or any purchase, 4K for a live plan."""
    needs = {"2K": "purchase", "4K": "paid"}
    return replace(catalog, resolutions=tuple(replace(r, requires=needs.get(r.key)) for r in catalog.resolutions))


@pytest.fixture
def shop(database, fake_stripe, tmp_path) -> Shop:
    billing = make_billing(database, tmp_path, api_base=fake_stripe.url)
    billing.sync_catalog()
    return Shop(db=database, fake=fake_stripe, ledger=billing.ledger, billing=billing)


@pytest.fixture
def entitlements(shop, catalog) -> Entitlements:
    return Entitlements(db=shop.db, pricing=shop.billing.pricing, catalog=gated(catalog))


def blocks(entitlements: Entitlements, user, *, is_admin: bool = False) -> dict[str, str | None]:
    return {key: entitlements.resolution_block(user_id=user.id, is_admin=is_admin, resolution=key)
            for key in ("1K", "2K", "4K")}


def test_each_user_meets_exactly_the_gates_they_paid_for(shop, entitlements, make_user):
    trial, buyer, subscriber = make_user(shop.db), make_user(shop.db), make_user(shop.db)
    admin = make_user(shop.db, role="admin")
    shop.ledger.grant(user_id=trial.id, amount=100, kind="trial", idempotency_key=f"trial:{trial.id}")
    bought = shop.buy(buyer, "pack_100")
    assert shop.billing.fulfil_checkout_session(bought["id"], user_id=buyer.id).status == "granted"
    subscribed = shop.buy(subscriber, "basic_monthly")
    assert shop.billing.fulfil_checkout_session(subscribed["id"], user_id=subscriber.id).status == "granted"

    assert blocks(entitlements, trial) == {"1K": None, "2K": PURCHASE, "4K": PAID}
    assert blocks(entitlements, buyer) == {"1K": None, "2K": None, "4K": PAID}
    assert blocks(entitlements, subscriber) == {"1K": None, "2K": None, "4K": None}
    assert blocks(entitlements, admin, is_admin=True) == {"1K": None, "2K": None, "4K": None}
    # The admin's pass comes from the role, not from a purchase: the gates themselves stay shut.
    assert blocks(entitlements, admin) == {"1K": None, "2K": PURCHASE, "4K": PAID}

    gates = {u.id: [entitlements.can_use_resolution(u.id, r) for r in (None, "purchase", "paid")]
             for u in (trial, buyer, subscriber, admin)}
    assert gates == {trial.id: [True, False, False], buyer.id: [True, True, False],
                     subscriber.id: [True, True, True], admin.id: [True, False, False]}


def test_a_cancelled_plan_closes_the_paid_gate_and_a_pending_payment_opens_none(shop, entitlements, make_user):
    subscriber, waiting = make_user(shop.db), make_user(shop.db)
    session = shop.buy(subscriber, "basic_monthly")
    assert shop.deliver("checkout.session.completed", session)["status"] == "granted"
    assert blocks(entitlements, subscriber)["4K"] is None

    assert shop.deliver("customer.subscription.deleted", shop.fake.cancel(session["subscription"]))["status"] \
        == "updated"
    # The plan's invoice was a purchase: the purchase gate stays open, the plan gate closes.
    assert blocks(entitlements, subscriber) == {"1K": None, "2K": None, "4K": PAID}

    unpaid = shop.buy(waiting, "pack_100", payment_status="unpaid")
    assert shop.deliver("checkout.session.completed", unpaid)["status"] == "pending"
    assert blocks(entitlements, waiting) == {"1K": None, "2K": PURCHASE, "4K": PAID}


def test_unknown_resolutions_and_requirements_are_refused(shop, entitlements, make_user):
    user = make_user(shop.db)
    with pytest.raises(ValidationFailed, match="Unknown resolution"):
        entitlements.resolution_block(user_id=user.id, is_admin=True, resolution="16K")
    assert not entitlements.can_use_resolution(user.id, "gold")
