"""Billing against a real store (SQLite and PostgreSQL) and the real stripe SDK talking HTTP to a
fake Stripe server on 127.0.0.1. Webhooks are signed exactly as Stripe signs them."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import stripe
from sqlmodel import select

from models.ledger import CreditGrant
from models.payment import Fulfillment, StripeEvent, Subscription
from models.user import User
from services.billing import Billing, StripeGateway
from services.catalog import Catalog
from services.db import Database
from services.entitlements import Entitlements
from services.errors import (
    Conflict,
    NotFound,
    PaymentError,
    PaymentsNotConfigured,
    ValidationFailed,
    WebhookRejected,
)
from services.ledger import Ledger
from services.pricing import Pricing
from services.settings import load_settings
from tests.fakes.stripe_server import FakeStripe, signed

ASSETS = Path(__file__).resolve().parents[2] / "assets"
SECRET = "whsec_test_secret"
PUBLIC_URL = "https://studio.example"


@dataclass
class Shop:
    db: Database
    fake: FakeStripe
    ledger: Ledger
    billing: Billing

    def deliver(self, type_: str, obj: dict, *, event_id: str | None = None) -> dict:
        payload, header = signed(self.fake.event(type_, obj, event_id=event_id), SECRET)
        return self.billing.handle_webhook(payload, header)

    def buy(self, user: User, product: str, *, payment_status: str = "paid") -> dict:
        """The user clicks Buy and pays on Stripe's page; returns the completed session (no webhook yet)."""
        url = self.billing.create_checkout(user=user, product=product)
        return self.fake.complete_checkout(url.rsplit("/", 1)[1], payment_status=payment_status)

    def balance(self, user: User) -> int:
        return self.ledger.balance(user.id).total

    def buckets(self, user: User) -> list[tuple[str, int, int, object]]:
        with self.db.session() as s:
            rows = s.exec(select(CreditGrant).where(CreditGrant.user_id == user.id).order_by(CreditGrant.id)).all()
        return [(g.kind, g.original, g.remaining, g.expires_at) for g in rows]

    def fulfilments(self, user: User) -> list[tuple[str, str, int]]:
        with self.db.session() as s:
            rows = s.exec(select(Fulfillment).where(Fulfillment.user_id == user.id).order_by(Fulfillment.ref)).all()
        return [(f.kind, f.product, f.credits) for f in rows]

    def customer(self, user: User) -> str | None:
        with self.db.session() as s:
            return s.get(User, user.id).stripe_customer_id

    def events(self) -> int:
        with self.db.session() as s:
            return len(s.exec(select(StripeEvent)).all())

    def spend(self, user: User, amount: int, job: str) -> None:
        self.ledger.capture(self.ledger.reserve(user_id=user.id, amount=amount, job_id=job))


def make_billing(db: Database, tmp_path: Path, *, api_base: str | None, key: str | None = "sk_test_123",
                 webhook_secret: str | None = SECRET) -> Billing:
    settings = load_settings(env_file=None, data_dir=tmp_path, public_url=PUBLIC_URL, stripe_secret_key=key,
                             stripe_webhook_secret=webhook_secret, stripe_api_base=api_base)
    return Billing(db=db, ledger=Ledger(db), pricing=Pricing.load(ASSETS),
                   gateway=StripeGateway.from_settings(settings), settings=settings)


def entitlements_of(billing: Billing) -> Entitlements:
    """The plan gates as app.py builds them, over the same store and catalog as `billing`."""
    return Entitlements(db=billing.db, pricing=billing.pricing, catalog=Catalog.load(ASSETS))


@pytest.fixture
def shop(database, fake_stripe, tmp_path) -> Shop:
    billing = make_billing(database, tmp_path, api_base=fake_stripe.url)
    billing.sync_catalog()
    return Shop(db=database, fake=fake_stripe, ledger=billing.ledger, billing=billing)


def price_of(fake: FakeStripe, lookup_key: str) -> dict:
    return next(p for p in fake.prices.values() if p["lookup_key"] == lookup_key)


# Catalog sync ---------------------------------------------------------------------------------------


def test_sync_creates_what_is_missing_once_and_replaces_changed_prices(shop, tmp_path):
    pricing = shop.billing.pricing
    assert len(shop.fake.products) == len(pricing.plans) + len(pricing.packs)
    for product in pricing.products.values():
        price = price_of(shop.fake, product.lookup_key)
        assert price["unit_amount"] == product.unit_amount
        assert (price["recurring"] or {}).get("interval") == product.interval
        assert price["metadata"] == {"product": product.key}

    posts = len(shop.fake.requests_to("POST", "/v1/"))
    again = shop.billing.sync_catalog()
    assert len(shop.fake.requests_to("POST", "/v1/")) == posts, "a second sync creates nothing"
    assert all("exists" in line for line in again)

    # An operator raises a price in pricing.json: the new Stripe price takes over the lookup key.
    raw = Pricing.load(ASSETS)
    data = {"currency": "usd", "packs": [{"key": "pack_500", "name": "500", "credits": 500, "price": "21.99"}],
            "plans": []}
    shop.billing.pricing = Pricing.from_dict(data)
    old = price_of(shop.fake, "studio_pack_500")
    lines = shop.billing.sync_catalog()
    new = price_of(shop.fake, "studio_pack_500")
    assert new["id"] != old["id"] and new["unit_amount"] == 2199
    assert any("replaced" in line for line in lines)
    assert raw.product("pack_500").unit_amount == 1999


def test_checkout_refuses_a_price_that_differs_from_the_catalog(shop):
    price = price_of(shop.fake, "studio_pack_100")
    price["unit_amount"] = 1  # someone edited Stripe, not pricing.json
    shop.billing._prices_at = 0.0
    with pytest.raises(PaymentError, match="cannot be bought"):
        shop.billing.create_checkout(user=User(id=1, email="x@example.com", password_hash="x"), product="pack_100")
    assert not shop.fake.requests_to("POST", "/v1/checkout/sessions")


# Checkout and portal ------------------------------------------------------------------------------------


def test_pack_checkout_carries_price_metadata_and_idempotency_key(shop, make_user):
    user = make_user(shop.db)
    url = shop.billing.create_checkout(user=user, product="pack_500")
    url2 = shop.billing.create_checkout(user=user, product="pack_500")
    assert url.startswith(shop.fake.url + "/pay/cs_") and url != url2
    first, second = shop.fake.requests_to("POST", "/v1/checkout/sessions")
    p = first.params
    assert p["mode"] == "payment"
    assert p["line_items"] == [{"price": price_of(shop.fake, "studio_pack_500")["id"], "quantity": "1"}]
    assert p["metadata"] == {"user_id": str(user.id), "product": "pack_500"}
    assert p["payment_intent_data"] == {"metadata": {"user_id": str(user.id), "product": "pack_500"}}
    assert p["client_reference_id"] == str(user.id)
    assert p["customer_email"] == user.email and "customer" not in p
    assert p["customer_creation"] == "always"
    assert p["success_url"] == f"{PUBLIC_URL}/billing/success?session_id={{CHECKOUT_SESSION_ID}}"
    assert p["cancel_url"] == f"{PUBLIC_URL}/billing/cancel"
    assert first.idempotency_key and first.idempotency_key.startswith(f"checkout:{user.id}:pack_500:")
    assert first.idempotency_key != second.idempotency_key
    assert first.headers["authorization"] == "Bearer sk_test_123"


def test_plan_checkout_puts_metadata_on_the_subscription(shop, make_user):
    user = make_user(shop.db)
    shop.billing.create_checkout(user=user, product="pro_annual")
    (req,) = shop.fake.requests_to("POST", "/v1/checkout/sessions")
    p = req.params
    price = price_of(shop.fake, "studio_pro_annual")
    assert p["mode"] == "subscription"
    assert price["recurring"]["interval"] == "year" and price["unit_amount"] == 10496
    assert p["line_items"] == [{"price": price["id"], "quantity": "1"}]
    meta = {"user_id": str(user.id), "product": "pro_annual"}
    assert p["metadata"] == meta and p["subscription_data"] == {"metadata": meta}
    assert "customer_creation" not in p and "payment_intent_data" not in p


def test_network_retry_reuses_the_idempotency_key(shop, make_user):
    user = make_user(shop.db)
    shop.fake.fail_next("/v1/checkout/sessions", status=500)
    url = shop.billing.create_checkout(user=user, product="pack_100")
    attempts = shop.fake.requests_to("POST", "/v1/checkout/sessions")
    assert len(attempts) == 2
    assert attempts[0].idempotency_key == attempts[1].idempotency_key
    assert len(shop.fake.sessions) == 1 and url.endswith(next(iter(shop.fake.sessions)))


def test_stripe_down_is_a_clear_error(shop, make_user):
    user = make_user(shop.db)
    shop.fake.fail_next("/v1/checkout/sessions", status=500, times=3)
    with pytest.raises(PaymentError, match="could not be reached"):
        shop.billing.create_checkout(user=user, product="pack_100")
    assert len(shop.fake.requests_to("POST", "/v1/checkout/sessions")) == 3  # 1 try + max_network_retries=2


def test_unknown_product_sends_nothing(shop, make_user):
    user = make_user(shop.db)
    with pytest.raises(ValidationFailed):
        shop.billing.create_checkout(user=user, product="pack_free")
    assert not shop.fake.requests_to("POST", "/v1/checkout/sessions")


def test_checkout_reuses_the_customer_and_portal_opens_for_it(shop, make_user):
    user = make_user(shop.db)
    with pytest.raises(ValidationFailed, match="nothing|no subscription"):
        shop.billing.create_portal(user=user)
    session = shop.buy(user, "pack_100")
    shop.deliver("checkout.session.completed", session)
    assert shop.customer(user) == session["customer"]

    shop.billing.create_checkout(user=user, product="basic_monthly")
    last = shop.fake.requests_to("POST", "/v1/checkout/sessions")[-1]
    assert last.params["customer"] == session["customer"] and "customer_email" not in last.params

    url = shop.billing.create_portal(user=user)
    (req,) = shop.fake.requests_to("POST", "/v1/billing_portal/sessions")
    assert url.startswith(shop.fake.url + "/portal/bps_")
    assert req.params == {"customer": session["customer"], "return_url": shop.billing.pricing_url}


def test_a_second_plan_is_refused_while_one_is_live(shop, make_user):
    user = make_user(shop.db)
    shop.deliver("checkout.session.completed", shop.buy(user, "basic_monthly"))
    with pytest.raises(Conflict, match="already have the Basic plan"):
        shop.billing.create_checkout(user=user, product="pro_monthly")
    shop.billing.create_checkout(user=user, product="pack_100")  # packs are still fine


def test_without_stripe_the_offer_shows_and_buying_explains(database, tmp_path, make_user):
    billing = make_billing(database, tmp_path, api_base=None, key=None, webhook_secret=None)
    user = make_user(database)
    assert not billing.enabled
    assert billing.pricing.products_json()  # the offer is still there
    with pytest.raises(PaymentsNotConfigured, match="not configured"):
        billing.create_checkout(user=user, product="pack_100")
    with pytest.raises(PaymentsNotConfigured):
        billing.create_portal(user=user)
    with pytest.raises(PaymentsNotConfigured):
        billing.sync_catalog()
    with pytest.raises(PaymentsNotConfigured):
        billing.handle_webhook(b"{}", "t=1,v1=x")
    assert billing.current_plan(user.id) is None
    assert entitlements_of(billing).can_use_resolution(user.id, None)


# Webhooks: signatures and replays ------------------------------------------------------------------------


def test_pack_webhook_grants_once(shop, make_user):
    user = make_user(shop.db)
    session = shop.buy(user, "pack_500")
    result = shop.deliver("checkout.session.completed", session)
    assert result["status"] == "granted"
    assert shop.balance(user) == 500
    assert shop.buckets(user) == [("pack", 500, 500, None)]
    assert shop.fulfilments(user) == [("pack", "pack_500", 500)]
    assert shop.ledger.reconcile() == []


def test_bad_signatures_change_nothing(shop, make_user):
    user = make_user(shop.db)
    session = shop.buy(user, "pack_500")
    event = shop.fake.event("checkout.session.completed", session)
    payload, header = signed(event, SECRET)

    tampered = payload.replace(b'"livemode": false', b'"livemode": true', 1)
    assert tampered != payload
    stale_payload, stale_header = signed(event, SECRET, timestamp=int(time.time()) - 301)
    _, wrong_secret = signed(event, "whsec_someone_else")
    for body, sig in [
        (tampered, header),
        (stale_payload, stale_header),
        (payload, wrong_secret),
        (payload, None),
        (payload, ""),
        (payload, "garbage"),
        (b"\xff\xfe not utf-8", header),
    ]:
        with pytest.raises(WebhookRejected):
            shop.billing.handle_webhook(body, sig)
    assert shop.balance(user) == 0 and shop.events() == 0
    assert not shop.fake.requests_to("GET", "/v1/checkout/sessions"), "nothing fetched for a bad signature"

    # Signed but not an event: also refused.
    for junk in (b"[1, 2]", b'{"id": "evt_1", "type": "x"}', b"not json"):
        body, sig = junk, stripe.WebhookSignature.generate_signature_header(junk.decode(), SECRET)
        with pytest.raises(WebhookRejected):
            shop.billing.handle_webhook(body, sig)

    # Inside the tolerance (300 s) is accepted; a minute of slack for a busy machine.
    ok_payload, ok_header = signed(event, SECRET, timestamp=int(time.time()) - 240)
    assert shop.billing.handle_webhook(ok_payload, ok_header)["status"] == "granted"
    assert shop.balance(user) == 500


def test_duplicates_and_new_events_for_the_same_payment_change_nothing(shop, make_user):
    user = make_user(shop.db)
    session = shop.buy(user, "pack_100")
    event = shop.fake.event("checkout.session.completed", session)
    payload, header = signed(event, SECRET)
    results = [shop.billing.handle_webhook(payload, header)["status"] for _ in range(5)]
    assert results == ["granted", "duplicate", "duplicate", "duplicate", "duplicate"]
    assert shop.balance(user) == 100

    again = shop.deliver("checkout.session.completed", session)  # a new event id, same session
    assert again["status"] == "already_fulfilled"
    async_event = shop.deliver("checkout.session.async_payment_succeeded", session)
    assert async_event["status"] == "already_fulfilled"
    assert shop.balance(user) == 100
    assert shop.fulfilments(user) == [("pack", "pack_100", 100)]
    assert shop.events() == 3
    assert shop.ledger.reconcile() == []


def test_unknown_event_types_are_acknowledged_and_ignored(shop, make_user):
    user = make_user(shop.db)
    before = len(shop.fake.requests)
    result = shop.deliver("customer.created", {"id": "cus_x", "object": "customer"})
    assert result["status"] == "ignored"
    assert shop.events() == 1 and shop.balance(user) == 0
    assert len(shop.fake.requests) == before, "nothing fetched for an ignored type"


def test_amount_comes_from_the_catalog_not_the_event(shop, make_user):
    user = make_user(shop.db)
    session = shop.buy(user, "pack_100")
    forged = dict(session, metadata={"user_id": str(user.id), "product": "pack_1500"}, amount_total=4999)
    shop.deliver("checkout.session.completed", forged)
    assert shop.balance(user) == 100  # what Stripe's own copy of the session says was bought


def test_a_session_whose_price_does_not_match_its_product_grants_nothing(shop, make_user):
    user = make_user(shop.db)
    client = stripe.StripeClient("sk_test_123", base_addresses={"api": shop.fake.url})
    cs = client.v1.checkout.sessions.create({
        "mode": "payment", "success_url": "https://x", "customer_creation": "always",
        "line_items": [{"price": price_of(shop.fake, "studio_pack_100")["id"], "quantity": 1}],
        "metadata": {"user_id": str(user.id), "product": "pack_1500"},
    })
    session = shop.fake.complete_checkout(cs.id)
    assert shop.deliver("checkout.session.completed", session)["status"] == "ignored"
    assert shop.balance(user) == 0


def test_async_payment_grants_when_it_clears(shop, make_user):
    user = make_user(shop.db)
    session = shop.buy(user, "pack_100", payment_status="unpaid")
    assert shop.deliver("checkout.session.completed", session)["status"] == "pending"
    assert shop.balance(user) == 0
    assert shop.customer(user) == session["customer"]
    shop.fake.sessions[session["id"]]["payment_status"] = "paid"
    assert shop.deliver("checkout.session.async_payment_succeeded", session)["status"] == "granted"
    assert shop.balance(user) == 100


# Subscriptions ----------------------------------------------------------------------------------------------


def test_subscription_lifecycle(shop, make_user):
    user = make_user(shop.db)
    session = shop.buy(user, "basic_monthly")
    sub_id = session["subscription"]
    first_invoice = shop.fake.invoices[session["invoice"]]
    assert shop.deliver("checkout.session.completed", session)["status"] == "granted"
    assert shop.deliver("invoice.paid", first_invoice)["status"] == "already_fulfilled"
    period_end = shop.fake.subscriptions[sub_id]["items"]["data"][0]["current_period_end"]
    [(kind, original, remaining, expires)] = shop.buckets(user)
    assert (kind, original, remaining) == ("subscription", 300, 300)
    assert int(expires.timestamp()) == period_end  # the service period, not invoice.period_end
    assert first_invoice["period_end"] != period_end
    plan = shop.billing.current_plan(user.id)
    assert (plan.product, plan.plan, plan.name, plan.credits, plan.status) == (
        "basic_monthly", "basic", "Basic", 300, "active")
    assert entitlements_of(shop.billing).can_use_resolution(user.id, "paid")

    # Unused subscription credits do not roll over: the renewal sets the bucket to the allowance.
    shop.spend(user, 100, "job-1")
    renewal = shop.fake.renew(sub_id)
    assert shop.deliver("invoice.paid", renewal)["status"] == "granted"
    assert shop.balance(user) == 300
    new_end = shop.fake.subscriptions[sub_id]["items"]["data"][0]["current_period_end"]
    assert shop.ledger.balance(user.id).subscription_expires_at.timestamp() == new_end

    # A plan change in the portal takes effect at the next refresh.
    pro = price_of(shop.fake, "studio_pro_monthly")
    changed = shop.fake.change_price(sub_id, pro["id"])
    assert shop.deliver("customer.subscription.updated", changed)["status"] == "updated"
    assert shop.billing.current_plan(user.id).product == "pro_monthly"
    assert shop.balance(user) == 300
    assert shop.deliver("invoice.paid", shop.fake.renew(sub_id))["status"] == "granted"
    assert shop.balance(user) == 1000

    # Cancelled: no more refreshes, and what was granted stays until the period end.
    before = shop.buckets(user)
    ended = shop.fake.cancel(sub_id)
    assert shop.deliver("customer.subscription.deleted", ended)["status"] == "updated"
    assert shop.billing.current_plan(user.id) is None
    assert not entitlements_of(shop.billing).can_use_resolution(user.id, "paid")
    assert entitlements_of(shop.billing).can_use_resolution(user.id, "purchase")
    assert shop.buckets(user) == before and shop.balance(user) == 1000
    with shop.db.session() as s:
        assert s.get(Subscription, sub_id).status == "canceled"
    assert shop.ledger.reconcile() == []


def test_cancel_at_period_end_is_shown(shop, make_user):
    user = make_user(shop.db)
    session = shop.buy(user, "pro_annual")
    shop.deliver("checkout.session.completed", session)
    assert shop.balance(user) == 12000
    shop.deliver("customer.subscription.updated", shop.fake.cancel(session["subscription"], at_period_end=True))
    plan = shop.billing.current_plan(user.id)
    assert plan.cancel_at_period_end and plan.interval == "year"
    assert "ends" in plan.summary


def test_invoice_before_checkout_ends_in_the_same_state(shop, make_user):
    def final_state(user):
        plan = shop.billing.current_plan(user.id)
        buckets = [(k, o, r) for k, o, r, _ in shop.buckets(user)]
        return (shop.balance(user), buckets, shop.fulfilments(user), shop.customer(user) is not None,
                (plan.product, plan.status, plan.cancel_at_period_end))

    in_order, reversed_ = make_user(shop.db), make_user(shop.db)
    a = shop.buy(in_order, "pro_monthly")
    shop.deliver("checkout.session.completed", a)
    shop.deliver("invoice.paid", shop.fake.invoices[a["invoice"]])
    shop.deliver("customer.subscription.created", shop.fake.subscriptions[a["subscription"]])

    b = shop.buy(reversed_, "pro_monthly")
    shop.deliver("customer.subscription.created", shop.fake.subscriptions[b["subscription"]])
    assert shop.deliver("invoice.paid", shop.fake.invoices[b["invoice"]])["status"] == "granted"
    assert shop.deliver("checkout.session.completed", b)["status"] == "already_fulfilled"

    assert final_state(in_order) == final_state(reversed_) == (
        1000, [("subscription", 1000, 1000)], [("subscription", "pro_monthly", 1000)], True,
        ("pro_monthly", "active", False))


def test_proration_invoices_do_not_refresh(shop, make_user):
    user = make_user(shop.db)
    session = shop.buy(user, "basic_monthly")
    shop.deliver("checkout.session.completed", session)
    sub = shop.fake.subscriptions[session["subscription"]]
    invoice = shop.fake.invoices[shop.fake.renew(sub["id"])["id"]]  # Stripe's copy: the handler reads it
    invoice["billing_reason"] = "subscription_update"
    invoice["lines"]["data"][0]["parent"]["subscription_item_details"]["proration"] = True
    assert shop.deliver("invoice.paid", invoice)["status"] == "ignored"
    manual = shop.fake.invoices["in_manual"] = dict(invoice, id="in_manual", billing_reason="manual")
    assert shop.deliver("invoice.paid", manual)["status"] == "ignored"
    assert shop.buckets(user)[0][:3] == ("subscription", 300, 300) and len(shop.buckets(user)) == 1


def test_switching_to_annual_bills_a_new_period_and_refreshes(shop, make_user):
    user = make_user(shop.db)
    session = shop.buy(user, "basic_monthly")
    shop.deliver("checkout.session.completed", session)
    sub_id = session["subscription"]
    invoice = shop.fake.switch_interval(sub_id, price_of(shop.fake, "studio_basic_annual")["id"])
    assert shop.deliver("invoice.paid", invoice)["status"] == "granted"
    shop.deliver("customer.subscription.updated", shop.fake.subscriptions[sub_id])
    assert shop.balance(user) == 3600
    year_end = shop.fake.subscriptions[sub_id]["items"]["data"][0]["current_period_end"]
    assert shop.ledger.balance(user.id).subscription_expires_at.timestamp() == year_end
    plan = shop.billing.current_plan(user.id)
    assert (plan.product, plan.interval, plan.credits) == ("basic_annual", "year", 3600)


# Refunds ----------------------------------------------------------------------------------------------------


def test_refund_takes_back_what_is_left_never_below_zero(shop, make_user):
    user = make_user(shop.db)
    session = shop.buy(user, "pack_500")
    shop.deliver("checkout.session.completed", session)
    shop.ledger.grant(user_id=user.id, amount=40, kind="trial", idempotency_key=f"trial:{user.id}")
    shop.spend(user, 240, "job-a")  # 40 trial + 200 of the pack
    assert shop.balance(user) == 300

    half = shop.fake.refund(session["payment_intent"], amount=session["amount_total"] // 2)
    result = shop.deliver("charge.refunded", half)
    assert result["status"] == "refunded"
    assert shop.balance(user) == 50  # 250 (half the pack) taken back
    assert shop.deliver("charge.refunded", half)["status"] == "refunded"  # new event, same refund
    assert shop.balance(user) == 50

    rest = shop.fake.refund(session["payment_intent"])
    shop.deliver("charge.refunded", rest)
    assert shop.balance(user) == 0  # the rest, but never below zero
    assert shop.ledger.reconcile() == []


def test_refund_before_purchase_event_ends_in_the_same_state(shop, make_user):
    user = make_user(shop.db)
    session = shop.buy(user, "pack_100")
    charge = shop.fake.refund(session["payment_intent"])
    assert shop.deliver("charge.refunded", charge)["status"] == "refunded"
    assert shop.deliver("checkout.session.completed", session)["status"] == "already_fulfilled"
    assert shop.balance(user) == 0
    assert sorted(shop.fulfilments(user)) == [("pack", "pack_100", 100), ("refund", "pack_100", 100)]


def test_refund_of_something_not_sold_here_is_ignored(shop):
    charge = {"id": "ch_other", "object": "charge", "amount": 500, "amount_refunded": 500,
              "payment_intent": "pi_unknown", "refunded": True}
    assert shop.deliver("charge.refunded", charge)["status"] == "ignored"


# Success redirect ----------------------------------------------------------------------------------------------


def test_success_redirect_fulfils_for_its_owner_only(shop, make_user):
    user, other = make_user(shop.db), make_user(shop.db)
    session = shop.buy(user, "pack_500")
    with pytest.raises(NotFound):
        shop.billing.fulfil_checkout_session(session["id"], user_id=other.id)
    with pytest.raises(ValidationFailed):
        shop.billing.fulfil_checkout_session("../../etc/passwd", user_id=user.id)
    with pytest.raises(NotFound):
        shop.billing.fulfil_checkout_session("cs_test_doesnotexist", user_id=user.id)
    result = shop.billing.fulfil_checkout_session(session["id"], user_id=user.id)
    assert (result.status, result.product, result.credits) == ("granted", "pack_500", 500)
    assert shop.billing.fulfil_checkout_session(session["id"], user_id=user.id).status == "already_fulfilled"
    assert shop.deliver("checkout.session.completed", session)["status"] == "already_fulfilled"
    assert shop.balance(user) == 500 and shop.balance(other) == 0


def test_success_redirect_before_payment_clears_is_pending(shop, make_user):
    user = make_user(shop.db)
    url = shop.billing.create_checkout(user=user, product="pack_100")
    result = shop.billing.fulfil_checkout_session(url.rsplit("/", 1)[1], user_id=user.id)
    assert result.status == "pending" and shop.balance(user) == 0


@pytest.mark.slow
@pytest.mark.parametrize("product", ["pack_500", "pro_monthly"])
def test_redirect_racing_webhooks_grants_once(shop, make_user, product):
    user = make_user(shop.db)
    session = shop.buy(user, product)
    credits = shop.billing.pricing.product(product).credits
    event = shop.fake.event("checkout.session.completed", session)
    payload, header = signed(event, SECRET)
    calls = [lambda: shop.billing.fulfil_checkout_session(session["id"], user_id=user.id)] * 4
    calls += [lambda: shop.billing.handle_webhook(payload, header)] * 4  # one event, delivered 4 times
    calls += [lambda: shop.deliver("checkout.session.completed", session)] * 2  # new event ids
    if product == "pro_monthly":
        calls += [lambda: shop.deliver("invoice.paid", shop.fake.invoices[session["invoice"]])] * 2
    barrier = threading.Barrier(len(calls))
    errors = []

    def run(call):
        try:
            barrier.wait()
            call()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert shop.balance(user) == credits
    assert len(shop.fulfilments(user)) == 1
    assert shop.ledger.reconcile() == []
