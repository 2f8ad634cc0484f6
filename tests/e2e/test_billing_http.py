"""Payments through the served app: POST /webhooks/stripe and the checkout return, over HTTP,
with the app's Stripe calls going to the fake Stripe server (STRIPE_API_BASE)."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from sqlmodel import select

from models.payment import StripeEvent
from tests.e2e.conftest import shop, sign_up
from tests.fakes.stripe_server import FakeStripe, signed

SECRET = "whsec_e2e_secret"


@pytest.fixture
def shop_app(serve_app, database_url, fake_stripe):
    return shop(serve_app, database_url=database_url, stripe_url=fake_stripe.url, webhook_secret=SECRET)


def post_event(app, fake_stripe: FakeStripe, type_: str, obj: dict, *, timestamp: int | None = None,
               event_id: str | None = None) -> httpx.Response:
    payload, header = signed(fake_stripe.event(type_, obj, event_id=event_id), SECRET, timestamp=timestamp)
    return httpx.post(f"{app.url}/webhooks/stripe", content=payload,
                      headers={"Stripe-Signature": header, "Content-Type": "application/json"})


def customer(app):
    email = f"buyer-{uuid.uuid4().hex[:10]}@example.com"
    client = sign_up(app, email)
    return client, app.services.accounts.get_user_by_email(email)


def paid_checkout(app, fake_stripe, product: str):
    """A new customer completes Checkout for `product` on the fake Stripe.
    Returns (browser, user, balance before any fulfilment, the checkout session)."""
    browser, user = customer(app)
    start = app.services.ledger.balance(user.id).total
    url = app.services.billing.create_checkout(user=user, product=product)
    return browser, user, start, fake_stripe.complete_checkout(url.rsplit("/", 1)[1])


def events(app) -> int:
    with app.services.db.session() as s:
        return len(s.exec(select(StripeEvent)).all())


def test_webhook_over_http(shop_app, fake_stripe):
    app = shop_app
    _, user, start, session = paid_checkout(app, fake_stripe, "pack_500")

    payload, header = signed(fake_stripe.event("checkout.session.completed", session), SECRET)
    tampered = payload.replace(b"pack_500", b"pack_150", 1)
    r = httpx.post(f"{app.url}/webhooks/stripe", content=tampered, headers={"Stripe-Signature": header})
    assert r.status_code == 400
    stale = post_event(app, fake_stripe, "checkout.session.completed", session, timestamp=int(time.time()) - 600)
    assert stale.status_code == 400
    unsigned = httpx.post(f"{app.url}/webhooks/stripe", content=payload)
    assert unsigned.status_code == 400
    assert events(app) == 0 and app.services.ledger.balance(user.id).total == start

    statuses = []
    for _ in range(5):
        r = httpx.post(f"{app.url}/webhooks/stripe", content=payload, headers={"Stripe-Signature": header})
        assert r.status_code == 200
        statuses.append(r.json()["status"])
    assert statuses == ["granted"] + ["duplicate"] * 4
    assert app.services.ledger.balance(user.id).total == start + 500

    other = post_event(app, fake_stripe, "payment_intent.created", {"id": "pi_x", "object": "payment_intent"})
    assert other.status_code == 200 and other.json()["status"] == "ignored"


def test_failed_handling_is_5xx_and_the_retry_succeeds(shop_app, fake_stripe):
    app = shop_app
    _, user, start, session = paid_checkout(app, fake_stripe, "pack_100")
    event = fake_stripe.event("checkout.session.completed", session)
    payload, header = signed(event, SECRET)

    fake_stripe.fail_next(f"/v1/checkout/sessions/{session['id']}", status=500, times=3)  # Stripe API down
    r = httpx.post(f"{app.url}/webhooks/stripe", content=payload, headers={"Stripe-Signature": header})
    assert r.status_code >= 500
    assert events(app) == 0 and app.services.ledger.balance(user.id).total == start

    r = httpx.post(f"{app.url}/webhooks/stripe", content=payload, headers={"Stripe-Signature": header})
    assert r.status_code == 200 and r.json()["status"] == "granted"
    assert app.services.ledger.balance(user.id).total == start + 100


def test_checkout_return_fulfils_once_with_the_webhook(shop_app, fake_stripe):
    app = shop_app
    browser, user, start, session = paid_checkout(app, fake_stripe, "basic_monthly")

    r = browser.get(f"/billing/success?session_id={session['id']}")
    assert r.status_code == 200 and "Thank you! Your payment was received" in r.text
    assert app.services.ledger.balance(user.id).total == start + 300
    assert post_event(app, fake_stripe, "checkout.session.completed", session).json()["status"] == "already_fulfilled"
    invoice = fake_stripe.invoices[session["invoice"]]
    assert post_event(app, fake_stripe, "invoice.paid", invoice).json()["status"] == "already_fulfilled"
    assert app.services.ledger.balance(user.id).total == start + 300
    assert app.services.billing.current_plan(user.id).product == "basic_monthly"

    # Someone else's session id on the return URL grants them nothing.
    thief, other = customer(app)
    before = app.services.ledger.balance(other.id).total
    thief.get(f"/billing/success?session_id={session['id']}")
    assert app.services.ledger.balance(other.id).total == before


def test_webhook_without_stripe_configured_is_refused(served_app):
    r = httpx.post(f"{served_app.url}/webhooks/stripe", content=b"{}", headers={"Stripe-Signature": "t=1,v1=x"})
    assert r.status_code == 503
