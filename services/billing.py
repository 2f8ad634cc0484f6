"""Billing with Stripe: Checkout for packs and plans, the Customer Portal, webhooks, fulfilment.

How a payment becomes credits, exactly once:
- Both the webhook and the success redirect call the same fulfilment code. It first fetches
  what it needs from the Stripe API (the Checkout Session with its line items, the invoice, the
  subscription, the refunded charge), outside any database transaction, then books everything in ONE transaction:
  the event id (webhooks), a `Fulfillment` row whose UNIQUE `ref` is the checkout session id
  (packs) or the invoice id (plans), and the ledger grant under the key `stripe:<ref>`. Two
  racing deliveries cannot both book: the loser hits the unique ref (or waits for SQLite's
  write lock), rolls back whole, retries and finds the payment already fulfilled.
- An event only names objects: the session, invoice, subscription or refunded charge it is about
  is read from the Stripe API, never taken from the event's copy. An object Stripe does not
  know grants nothing and answers 502, so Stripe retries a real event (see handle_webhook).
- Who is paid for comes from the metadata we set at checkout (`user_id`, `product`; plans copy
  it onto the subscription); how many credits comes from assets/pricing.json, never from Stripe.
- Subscription credits expire at the end of the service period on the invoice line (not at
  `invoice.period_end`, which is the usage period the invoice closes).
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import stripe
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, func, select

from models.base import utcnow
from models.payment import Fulfillment, StripeEvent, Subscription
from models.user import User
from services.db import Database
from services.errors import (
    Conflict,
    NotFound,
    PaymentError,
    PaymentsNotConfigured,
    ValidationFailed,
    WebhookRejected,
)
from services.pricing import Pricing, Product

log = logging.getLogger(__name__)

WEBHOOK_TOLERANCE_SECONDS = 300
ACTIVE_STATUSES = ("active", "trialing", "past_due")
# A paid invoice with one of these reasons starts a service period, so it refreshes the plan's
# credits. "subscription_update" counts only when it bills a new period (a non-proration line:
# e.g. switching monthly → annual restarts the cycle); a mid-cycle plan change bills prorations
# only, and the new plan's credits come with the next renewal.
REFRESH_REASONS = ("subscription_create", "subscription_cycle", "subscription_update")
SESSION_ID = re.compile(r"^cs_[A-Za-z0-9_]{1,250}$")
INVOICE_ID = re.compile(r"^in_[A-Za-z0-9_]{1,250}$")
PRICE_CACHE_SECONDS = 300
PRICING_PATH = "/?tab=pricing"
SUCCESS_PATH = "/billing/success"
CANCEL_PATH = "/billing/cancel"


# The payment provider -------------------------------------------------------------------------


class PaymentGateway(Protocol):
    """What billing needs from Stripe. Objects go in and come out as plain dicts."""

    def create_checkout_session(self, params: dict, *, idempotency_key: str) -> dict: ...

    def retrieve_checkout_session(self, session_id: str) -> dict:
        """The session with `line_items` expanded. NotFound if there is no such session."""

    def find_checkout_session(self, *, payment_intent: str) -> dict | None: ...

    def create_portal_session(self, *, customer: str, return_url: str) -> dict: ...

    def retrieve_subscription(self, subscription_id: str) -> dict: ...

    def retrieve_invoice(self, invoice_id: str) -> dict:
        """The invoice with all its lines."""

    def retrieve_charge(self, charge_id: str) -> dict: ...

    def retrieve_price(self, price_id: str) -> dict: ...

    def prices_by_lookup_key(self, lookup_keys: list[str]) -> dict[str, dict]:
        """Active prices carrying these lookup keys, by lookup key."""

    def retrieve_product(self, product_id: str) -> dict | None: ...

    def create_product(self, params: dict, *, idempotency_key: str) -> dict: ...

    def create_price(self, params: dict, *, idempotency_key: str) -> dict: ...


class StripeGateway:
    """PaymentGateway over the official SDK. Stripe failures become PaymentError / NotFound."""

    def __init__(self, secret_key: str, *, api_base: str | None = None, max_network_retries: int = 2):
        self.client = stripe.StripeClient(
            secret_key,
            max_network_retries=max_network_retries,
            base_addresses={"api": api_base} if api_base else None,
        )

    @classmethod
    def from_settings(cls, settings) -> StripeGateway | None:
        """None when STRIPE_SECRET_KEY is unset: the shop shows its offer but sells nothing."""
        if not settings.stripe_secret_key:
            return None
        return cls(settings.stripe_secret_key, api_base=settings.stripe_api_base)

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            result = fn()
        except stripe.InvalidRequestError as err:
            if err.http_status == 404 or err.code == "resource_missing":
                raise NotFound(f"Stripe has no such {what}.") from None
            log.error("Stripe refused %s: %s (request %s)", what, err.user_message or err, err.request_id)
            raise PaymentError("The payment provider refused the request. Please try again later.") from None
        except stripe.AuthenticationError:
            log.error("Stripe rejected the API key (STRIPE_SECRET_KEY) while calling %s", what)
            raise PaymentError("Payments are misconfigured on this instance. Please contact support.") from None
        except stripe.StripeError as err:
            log.warning("Stripe call failed (%s): %s %s", what, type(err).__name__, err.user_message or err)
            raise PaymentError("The payment provider could not be reached. Please try again.") from None
        return _plain(result)

    def create_checkout_session(self, params: dict, *, idempotency_key: str) -> dict:
        return self._call("checkout session", lambda: self.client.v1.checkout.sessions.create(
            params, options={"idempotency_key": idempotency_key}))

    def retrieve_checkout_session(self, session_id: str) -> dict:
        return self._call("checkout session", lambda: self.client.v1.checkout.sessions.retrieve(
            session_id, {"expand": ["line_items"]}))

    def find_checkout_session(self, *, payment_intent: str) -> dict | None:
        found = self._call("checkout session", lambda: self.client.v1.checkout.sessions.list(
            {"payment_intent": payment_intent, "limit": 1}))
        return found["data"][0] if found.get("data") else None

    def create_portal_session(self, *, customer: str, return_url: str) -> dict:
        return self._call("portal session", lambda: self.client.v1.billing_portal.sessions.create(
            {"customer": customer, "return_url": return_url}))

    def retrieve_subscription(self, subscription_id: str) -> dict:
        return self._call("subscription", lambda: self.client.v1.subscriptions.retrieve(subscription_id))

    def retrieve_invoice(self, invoice_id: str) -> dict:
        invoice = self._call("invoice", lambda: self.client.v1.invoices.retrieve(invoice_id))
        lines = invoice.get("lines") or {}
        if lines.get("has_more"):
            every = self._call("invoice lines", lambda: self.client.v1.invoices.line_items.list(
                invoice_id, {"limit": 100}))
            invoice["lines"] = {"object": "list", "data": every.get("data", []), "has_more": False}
        return invoice

    def retrieve_charge(self, charge_id: str) -> dict:
        return self._call("charge", lambda: self.client.v1.charges.retrieve(charge_id))

    def retrieve_price(self, price_id: str) -> dict:
        return self._call("price", lambda: self.client.v1.prices.retrieve(price_id))

    def prices_by_lookup_key(self, lookup_keys: list[str]) -> dict[str, dict]:
        found: dict[str, dict] = {}
        for i in range(0, len(lookup_keys), 10):  # Stripe takes at most 10 lookup keys per call
            chunk = lookup_keys[i:i + 10]
            page = self._call("prices", lambda chunk=chunk: self.client.v1.prices.list(
                {"lookup_keys": chunk, "active": True, "limit": 100}))
            for price in page.get("data", []):
                found[price["lookup_key"]] = price
        return found

    def retrieve_product(self, product_id: str) -> dict | None:
        try:
            return self._call("product", lambda: self.client.v1.products.retrieve(product_id))
        except NotFound:
            return None

    def create_product(self, params: dict, *, idempotency_key: str) -> dict:
        return self._call("product", lambda: self.client.v1.products.create(
            params, options={"idempotency_key": idempotency_key}))

    def create_price(self, params: dict, *, idempotency_key: str) -> dict:
        return self._call("price", lambda: self.client.v1.prices.create(
            params, options={"idempotency_key": idempotency_key}))


def make_gateway(settings) -> StripeGateway | None:
    """The Stripe gateway for these settings, or None without STRIPE_SECRET_KEY."""
    return StripeGateway.from_settings(settings)


def _plain(obj: Any) -> Any:
    if isinstance(obj, stripe.StripeObject):
        return obj.to_dict()
    return obj


# What the service answers -----------------------------------------------------------------------


@dataclass(frozen=True)
class FulfilmentResult:
    # granted | already_fulfilled | pending | refunded | updated | ignored | duplicate (event seen)
    status: str
    product: str | None = None
    credits: int = 0
    message: str = ""


@dataclass(frozen=True)
class CurrentPlan:
    subscription_id: str
    product: str  # product key, e.g. "pro_monthly"
    plan: str | None  # plan key, e.g. "pro"
    name: str
    interval: str
    credits: int  # allowance per billing cycle
    status: str
    current_period_end: datetime | None
    cancel_at_period_end: bool

    @property
    def summary(self) -> str:
        per = "year" if self.interval == "year" else "month"
        text = f"{self.name} ({self.credits:,} credits a {per})"
        if self.current_period_end:
            verb = "ends" if self.cancel_at_period_end else "renews"
            text += f", {verb} {self.current_period_end:%Y-%m-%d}"
        if self.status == "past_due":
            text += " — payment overdue, update your card in Manage subscription"
        return text


# Work prepared from Stripe, booked in one transaction ---------------------------------------------


@dataclass
class _Purchase:
    ref: str  # cs_... (pack) or in_... (plan): the UNIQUE Fulfillment.ref
    user_id: int
    product: Product
    payment_intent: str | None = None
    period_end: datetime | None = None  # plans: end of the service period paid for

    @property
    def key(self) -> str:
        return f"stripe:{self.ref}"


@dataclass
class _SubscriptionState:
    id: str
    user_id: int
    product: str
    interval: str
    status: str
    current_period_end: datetime | None
    cancel_at_period_end: bool


@dataclass
class _Refund:
    charge_id: str
    payment_intent: str
    amount: int
    amount_refunded: int


@dataclass
class _Work:
    purchases: list[_Purchase] = field(default_factory=list)
    subscriptions: list[_SubscriptionState] = field(default_factory=list)
    customers: list[tuple[int, str]] = field(default_factory=list)  # (user id, Stripe customer id)
    refund: _Refund | None = None
    pending: str | None = None  # why nothing can be granted yet
    ignored: str | None = None  # why this changes nothing


def _ignored(reason: str) -> _Work:
    return _Work(ignored=reason)


# The service ------------------------------------------------------------------------------------------


class Billing:
    """Sells packs and plans through Stripe and turns payments into credits exactly once."""

    def __init__(self, *, db: Database, ledger, pricing: Pricing, gateway: PaymentGateway | None, settings):
        self.db = db
        self.ledger = ledger
        self.pricing = pricing
        self.gateway = gateway
        self.settings = settings
        self._prices: dict[str, dict] = {}  # lookup_key -> Stripe price
        self._prices_at = 0.0
        self._price_products: dict[str, str | None] = {}  # Stripe price id -> product key
        self._cache_lock = threading.Lock()

    # Configuration ---------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self.gateway is not None

    @property
    def success_url(self) -> str:
        return f"{self.settings.base_url}{SUCCESS_PATH}?session_id={{CHECKOUT_SESSION_ID}}"

    @property
    def cancel_url(self) -> str:
        """Checkout's "back" link: the app's route that returns to the pricing tab, nothing changed."""
        return f"{self.settings.base_url}{CANCEL_PATH}"

    @property
    def pricing_url(self) -> str:
        """Where the Customer Portal's return link leads."""
        return f"{self.settings.base_url}{PRICING_PATH}"

    def _require_gateway(self) -> PaymentGateway:
        if self.gateway is None:
            raise PaymentsNotConfigured()
        return self.gateway

    # Buying ---------------------------------------------------------------------------------------

    def create_checkout(self, *, user: User, product: str) -> str:
        """A Stripe Checkout Session for `product`; returns the hosted page's URL."""
        item = self.pricing.product(product)
        gateway = self._require_gateway()
        if item.kind == "plan":
            current = self.current_plan(user.id)
            if current is not None:
                raise Conflict(
                    f"You already have the {current.name} plan. Use “Manage subscription” to change or cancel it."
                )
        price_id = self._price_id(item)
        metadata = {"user_id": str(user.id), "product": item.key}
        params: dict[str, Any] = {
            "mode": "subscription" if item.kind == "plan" else "payment",
            "line_items": [{"price": price_id, "quantity": 1}],
            "success_url": self.success_url,
            "cancel_url": self.cancel_url,
            "client_reference_id": str(user.id),
            "metadata": metadata,
        }
        customer = self._customer_of(user.id)
        if customer:
            params["customer"] = customer
        else:
            params["customer_email"] = user.email
        if item.kind == "plan":
            params["subscription_data"] = {"metadata": metadata}
        else:
            params["customer_creation"] = "always"  # so the customer can be reused and see receipts
            params["payment_intent_data"] = {"metadata": metadata}
        key = f"checkout:{user.id}:{item.key}:{uuid.uuid4().hex}"
        session = gateway.create_checkout_session(params, idempotency_key=key)
        if not session.get("url"):
            raise PaymentError("The payment provider did not return a checkout page. Please try again.")
        return session["url"]

    def create_portal(self, *, user: User) -> str:
        """A Stripe Customer Portal session (cancel, change plan, update card); returns its URL."""
        gateway = self._require_gateway()
        customer = self._customer_of(user.id)
        if not customer:
            raise ValidationFailed("There is no subscription or purchase to manage yet.")
        return gateway.create_portal_session(customer=customer, return_url=self.pricing_url)["url"]

    def current_plan(self, user_id: int) -> CurrentPlan | None:
        """The user's live subscription (active, trialing or past due), if any."""
        with self.db.session() as s:
            row = s.exec(
                select(Subscription)
                .where(Subscription.user_id == user_id, Subscription.status.in_(ACTIVE_STATUSES))
                .order_by(Subscription.updated_at.desc())
            ).first()
        if row is None:
            return None
        product = self.pricing.find(row.product)
        plan = self.pricing.plan(product.plan) if product else None
        return CurrentPlan(
            subscription_id=row.id, product=row.product, plan=product.plan if product else None,
            name=plan.name if plan else row.product, interval=row.interval,
            credits=product.credits if product else 0, status=row.status,
            current_period_end=row.current_period_end, cancel_at_period_end=row.cancel_at_period_end,
        )

    def can_use_resolution(self, user_id: int, requirement: str | None) -> bool:
        """Plan gating: None → everyone; "paid" → a live plan; "purchase" → a plan or any purchase."""
        if not requirement:
            return True
        if requirement == "paid":
            return self.current_plan(user_id) is not None
        if requirement == "purchase":
            if self.current_plan(user_id) is not None:
                return True
            with self.db.session() as s:
                bought = s.exec(
                    select(func.count()).select_from(Fulfillment)
                    .where(Fulfillment.user_id == user_id, Fulfillment.kind.in_(("pack", "subscription")))
                ).one()
            return bought > 0
        log.warning("unknown resolution requirement %r: refused", requirement)
        return False

    # Fulfilment -------------------------------------------------------------------------------------

    def fulfil_checkout_session(self, session_id: str, *, user_id: int | None = None) -> FulfilmentResult:
        """Fulfil a Checkout Session fetched from Stripe (idempotent; the webhook does the same).

        With `user_id` (the success redirect), a session that belongs to someone else is NotFound.
        """
        if not isinstance(session_id, str) or not SESSION_ID.match(session_id):
            raise ValidationFailed("That is not a checkout session id.")
        self._require_gateway()
        return self._run(lambda: self._prepare_checkout(session_id, expected_user_id=user_id))

    def handle_webhook(self, payload: bytes, signature: str | None) -> dict:
        """Verify and handle one Stripe webhook delivery.

        Raises WebhookRejected (→ 400) for a missing, wrong or stale signature or a body that is
        not an event, PaymentsNotConfigured (→ 503) without STRIPE_WEBHOOK_SECRET, PaymentError
        (→ 502) when Stripe cannot be read or does not know the object the event names. Any of
        these, or any other exception, means the event was not recorded (Stripe retries).
        """
        secret = self.settings.stripe_webhook_secret
        if not secret:
            raise PaymentsNotConfigured("Stripe webhooks are not configured on this instance.")
        try:
            stripe.WebhookSignature.verify_header(payload, signature, secret, WEBHOOK_TOLERANCE_SECONDS)
            event = json.loads(payload)
        except stripe.SignatureVerificationError:
            raise WebhookRejected() from None
        except (ValueError, UnicodeDecodeError):
            raise WebhookRejected("The webhook body is not a JSON event.") from None
        if not (
            isinstance(event, dict) and isinstance(event.get("id"), str) and event["id"].startswith("evt_")
            and isinstance(event.get("type"), str) and isinstance((event.get("data") or {}).get("object"), dict)
        ):
            raise WebhookRejected("The webhook body is not a Stripe event.")
        event_id, event_type, obj = event["id"], event["type"], event["data"]["object"]
        if len(event_id) > 255 or len(event_type) > 100:
            raise WebhookRejected("The webhook body is not a Stripe event.")
        handler = self._handlers().get(event_type)
        prepare = (lambda: handler(obj)) if handler else (lambda: _ignored(f"unhandled event type {event_type}"))
        try:
            result = self._run(prepare, event=(event_id, event_type))
        except NotFound as err:
            # Stripe keeps every session, invoice, subscription and charge its events name, so
            # "no such object" for a correctly signed event means a made-up event, or an API key
            # of another account or mode. Nothing is granted or recorded. A 5xx (not a 2xx) so
            # that Stripe retries a real event for three days: fixing STRIPE_SECRET_KEY within
            # that time still fulfils the payment. A forged event is not Stripe's to retry.
            log.error("stripe event %s (%s) names an object Stripe does not know: %s Nothing granted.",
                      event_id, event_type, err.message)
            raise PaymentError(f"{err.message} Nothing was granted or recorded.") from None
        return {"received": True, "event": event_id, "type": event_type, "status": result.status,
                "message": result.message}

    def _handlers(self) -> dict[str, Callable[[dict], _Work]]:
        return {
            "checkout.session.completed": self._on_checkout,
            "checkout.session.async_payment_succeeded": self._on_checkout,
            "invoice.paid": self._on_invoice_paid,
            "customer.subscription.created": self._on_subscription,
            "customer.subscription.updated": self._on_subscription,
            "customer.subscription.deleted": self._on_subscription,
            "charge.refunded": self._on_charge_refunded,
        }

    # Preparing: read Stripe (never inside a database transaction) ---------------------------------

    def _on_checkout(self, session: dict) -> _Work:
        session_id = session.get("id")
        if not isinstance(session_id, str) or not SESSION_ID.match(session_id):
            return _ignored("checkout event without a session id")
        self._require_gateway()
        return self._prepare_checkout(session_id)

    def _prepare_checkout(self, session_id: str, *, expected_user_id: int | None = None) -> _Work:
        gateway = self._require_gateway()
        cs = gateway.retrieve_checkout_session(session_id)
        meta = cs.get("metadata") or {}
        user_id = _user_id(meta.get("user_id")) or _user_id(cs.get("client_reference_id"))
        if expected_user_id is not None and user_id != expected_user_id:
            raise NotFound("No such checkout session.")
        if user_id is None or not self._user_exists(user_id):
            return _ignored(f"checkout {session_id}: no known user in its metadata")
        product = self.pricing.find(meta.get("product"))
        if product is None:
            log.error("checkout %s names product %r, not in the catalog: nothing granted", session_id,
                      meta.get("product"))
            return _ignored(f"checkout {session_id}: unknown product")
        for line in ((cs.get("line_items") or {}).get("data") or []):
            if self._product_for_price(line.get("price")) is not product:
                log.error("checkout %s: a line item's price does not belong to %s: nothing granted",
                          session_id, product.key)
                return _ignored(f"checkout {session_id}: price does not match {product.key}")
        work = _Work()
        if cs.get("customer"):
            work.customers.append((user_id, cs["customer"]))
        if cs.get("status") != "complete":
            work.pending = "The checkout is not complete."
            return work
        if product.kind == "pack":
            if cs.get("mode") != "payment":
                return _ignored(f"checkout {session_id}: a pack sold outside payment mode")
            if cs.get("payment_status") != "paid":
                work.pending = "Your payment is still processing; the credits arrive as soon as it clears."
                return work
            work.purchases.append(_Purchase(ref=session_id, user_id=user_id, product=product,
                                            payment_intent=_id_of(cs.get("payment_intent"))))
            return work
        if cs.get("mode") != "subscription" or not cs.get("subscription"):
            return _ignored(f"checkout {session_id}: a plan sold outside subscription mode")
        state = self._subscription_state(gateway.retrieve_subscription(_id_of(cs["subscription"])), user_id)
        if state is not None:
            work.subscriptions.append(state)
        invoice_id = _id_of(cs.get("invoice"))
        purchase, why = (None, "no invoice yet")
        if invoice_id:
            purchase, why = self._invoice_purchase(gateway.retrieve_invoice(invoice_id), user_id)
        if purchase is None:
            work.pending = "Your subscription payment is still processing; the credits arrive as soon as it clears."
            log.info("checkout %s: subscription not yet fulfilled (%s)", session_id, why)
        else:
            work.purchases.append(purchase)
        return work

    def _on_invoice_paid(self, event_invoice: dict) -> _Work:
        # Only the invoice id comes from the event: status, lines, prices, metadata and customer
        # are Stripe's current answer (a signed event is delivered, not proof of a payment).
        invoice_id = event_invoice.get("id")
        if not isinstance(invoice_id, str) or not INVOICE_ID.match(invoice_id):
            return _ignored("invoice event without an invoice id")
        gateway = self._require_gateway()
        invoice = gateway.retrieve_invoice(invoice_id)
        purchase, why = self._invoice_purchase(invoice, None)
        if purchase is None:
            return _ignored(f"invoice {invoice.get('id')}: {why}")
        work = _Work(purchases=[purchase])
        if invoice.get("customer"):
            work.customers.append((purchase.user_id, _id_of(invoice["customer"])))
        sub_id = _subscription_of(invoice)
        state = self._subscription_state(gateway.retrieve_subscription(sub_id), purchase.user_id)
        if state is not None:
            work.subscriptions.append(state)
        return work

    def _invoice_purchase(self, invoice: dict, user_id: int | None) -> tuple[_Purchase | None, str]:
        """The plan credits a paid subscription invoice buys, or (None, why not)."""
        if invoice.get("status") != "paid":
            return None, "invoice not paid"
        if invoice.get("billing_reason") not in REFRESH_REASONS:
            return None, f"billing reason {invoice.get('billing_reason')}"
        sub_id = _subscription_of(invoice)
        if not sub_id:
            return None, "not a subscription invoice"
        line = next((x for x in (invoice.get("lines") or {}).get("data") or [] if _is_service_line(x)), None)
        if line is None:
            return None, "no subscription line"
        product = self._product_for_price(((line.get("pricing") or {}).get("price_details") or {}).get("price"))
        if product is None or product.kind != "plan":
            return None, "its price is not a plan in the catalog"
        details = (invoice.get("parent") or {}).get("subscription_details") or {}
        user_id = (
            _user_id((details.get("metadata") or {}).get("user_id"))
            or user_id
            or self._user_of_subscription(sub_id)
            or self._user_of_customer(_id_of(invoice.get("customer")))
        )
        if user_id is None or not self._user_exists(user_id):
            return None, "no known user"
        period_end = _ts((line.get("period") or {}).get("end"))
        if period_end is None:
            return None, "no service period on the line"
        return _Purchase(ref=invoice["id"], user_id=user_id, product=product, period_end=period_end), ""

    def _on_subscription(self, sub: dict) -> _Work:
        sub_id = sub.get("id")
        if not isinstance(sub_id, str):
            return _ignored("subscription event without an id")
        # Stripe's current state, never the event's copy: events arrive in any order, and a
        # made-up subscription must not unlock a plan (NotFound: see handle_webhook).
        sub = self._require_gateway().retrieve_subscription(sub_id)
        state = self._subscription_state(sub, None)
        if state is None:
            return _ignored(f"subscription {sub_id}: no known user or plan")
        work = _Work(subscriptions=[state])
        if sub.get("customer"):
            work.customers.append((state.user_id, _id_of(sub["customer"])))
        return work

    def _subscription_state(self, sub: dict, user_id: int | None) -> _SubscriptionState | None:
        items = (sub.get("items") or {}).get("data") or []
        if not items:
            return None
        item = items[0]
        price = item.get("price") or {}
        product = self._product_for_price(price)
        user_id = (
            _user_id((sub.get("metadata") or {}).get("user_id"))
            or user_id
            or self._user_of_subscription(sub["id"])
            or self._user_of_customer(_id_of(sub.get("customer")))
        )
        if product is None or user_id is None or not self._user_exists(user_id):
            log.warning("subscription %s: unknown plan or user, not tracked", sub.get("id"))
            return None
        return _SubscriptionState(
            id=sub["id"], user_id=user_id, product=product.key,
            interval=((price.get("recurring") or {}).get("interval")) or product.interval or "month",
            status=str(sub.get("status") or "active"),
            current_period_end=_ts(item.get("current_period_end")),
            cancel_at_period_end=bool(sub.get("cancel_at_period_end")),
        )

    def _on_charge_refunded(self, event_charge: dict) -> _Work:
        # The event's copy only says where to look; the amounts are read from Stripe's charge.
        payment_intent = _id_of(event_charge.get("payment_intent"))
        charge_id = event_charge.get("id")
        if not payment_intent or not isinstance(charge_id, str) or not charge_id:
            return _ignored("refund without a payment intent")
        gateway = self._require_gateway()
        with self.db.session() as s:
            known = s.exec(select(Fulfillment.id).where(
                Fulfillment.payment_intent == payment_intent, Fulfillment.kind == "pack")).first()
        session = None
        if known is None:
            session = gateway.find_checkout_session(payment_intent=payment_intent)
            if session is None or session.get("mode") != "payment":
                return _ignored(f"charge {charge_id}: not a pack bought here")
        charge = gateway.retrieve_charge(charge_id)
        if _id_of(charge.get("payment_intent")) != payment_intent:
            log.error("charge.refunded: charge %s does not pay for %s at Stripe: nothing taken back",
                      charge_id, payment_intent)
            return _ignored(f"charge {charge_id}: not the payment the event names")
        refund = _Refund(charge_id=charge_id, payment_intent=payment_intent,
                         amount=int(charge.get("amount") or 0), amount_refunded=int(charge.get("amount_refunded") or 0))
        if refund.amount <= 0 or refund.amount_refunded <= 0:
            return _ignored(f"charge {charge_id}: nothing refunded")
        if known is not None:
            return _Work(refund=refund)
        # The refund arrived before the purchase was fulfilled: fulfil it first, in the same transaction.
        work = self._prepare_checkout(session["id"])
        if not work.purchases:
            return work
        work.refund = refund
        return work

    # Booking: one transaction per delivery ----------------------------------------------------------

    def _run(self, prepare: Callable[[], _Work], *, event: tuple[str, str] | None = None) -> FulfilmentResult:
        attempts = 4
        for attempt in range(1, attempts + 1):
            if event is not None and self._event_seen(event[0]):
                return FulfilmentResult("duplicate", message=f"event {event[0]} already handled")
            work = prepare()
            try:
                with self.db.transaction() as s:
                    row = None
                    if event is not None:
                        row = StripeEvent(id=event[0], type=event[1])
                        s.add(row)
                        s.flush()  # a concurrent delivery of the same event fails here
                    result = self._apply(s, work)
                    if row is not None:
                        row.outcome = f"{result.status}: {result.message}"[:255]
                        s.add(row)
                return result
            except (IntegrityError, OperationalError) as exc:
                # Lost a race (the same payment or event booked concurrently) or a deadlock /
                # lock timeout: everything rolled back; look again.
                if attempt == attempts:
                    raise
                log.info("billing transaction retried after %s", type(exc).__name__)
                time.sleep(random.uniform(0.01, 0.05) * attempt)
        raise AssertionError("unreachable")

    def _apply(self, s: Session, work: _Work) -> FulfilmentResult:
        if work.ignored:
            log.info("stripe: %s", work.ignored)
            return FulfilmentResult("ignored", message=work.ignored)
        for user_id, customer in work.customers:
            self._link_customer(s, user_id, customer)
        granted, already = [], []
        for purchase in work.purchases:
            (granted if self._book_purchase(s, purchase) else already).append(purchase)
        for state in work.subscriptions:
            self._store_subscription(s, state)
        clawed = self._book_refund(s, work.refund) if work.refund else None
        if clawed is not None:
            return FulfilmentResult("refunded", message=clawed)
        if granted:
            p = granted[0]
            credits = sum(x.product.credits for x in granted)
            return FulfilmentResult("granted", product=p.product.key, credits=credits,
                                    message=f"{credits:,} credits added ({p.product.name}) for {p.ref}")
        if already:
            p = already[0]
            return FulfilmentResult("already_fulfilled", product=p.product.key, credits=p.product.credits,
                                    message=f"{p.ref} was already fulfilled")
        if work.pending:
            return FulfilmentResult("pending", message=work.pending)
        return FulfilmentResult("updated", message="subscription state updated")

    def _book_purchase(self, s: Session, p: _Purchase) -> bool:
        """Grant a purchase unless its ref was booked before. True when granted now."""
        if s.exec(select(Fulfillment.id).where(Fulfillment.ref == p.ref)).first() is not None:
            return False
        row = Fulfillment(ref=p.ref, user_id=p.user_id, kind="pack" if p.product.kind == "pack" else "subscription",
                          product=p.product.key, credits=p.product.credits, payment_intent=p.payment_intent)
        s.add(row)
        s.flush()  # claims the ref before any credit moves; a racing twin fails (or waits) here
        note = f"{p.product.name} ({p.ref})"
        if p.product.kind == "pack":
            self.ledger.grant(user_id=p.user_id, amount=p.product.credits, kind="pack",
                              idempotency_key=p.key, note=note, session=s)
        elif p.period_end is not None and p.period_end > utcnow():
            result = self.ledger.refresh_subscription(
                user_id=p.user_id, allowance=p.product.credits, period_end=p.period_end,
                idempotency_key=p.key, note=note, session=s,
            )
            row.credits = result.amount
        else:
            log.warning("invoice %s paid for a period that has already ended: no credits", p.ref)
            row.credits = 0
        s.add(row)
        return True

    def _book_refund(self, s: Session, refund: _Refund) -> str:
        pack = s.exec(select(Fulfillment).where(
            Fulfillment.payment_intent == refund.payment_intent, Fulfillment.kind == "pack")).first()
        if pack is None:
            return f"charge {refund.charge_id}: no pack to take back"
        ref = f"refund:{refund.charge_id}:{refund.amount_refunded}"
        if s.exec(select(Fulfillment.id).where(Fulfillment.ref == ref)).first() is not None:
            return f"{ref} was already booked"
        if refund.amount_refunded >= refund.amount:
            target = pack.credits
        else:  # a partial refund takes back the same share of the credits, rounded up
            target = -(-pack.credits * refund.amount_refunded // refund.amount)
        asked_before = s.exec(select(func.coalesce(func.sum(Fulfillment.credits), 0)).where(
            Fulfillment.payment_intent == refund.payment_intent, Fulfillment.kind == "refund")).one()
        ask = target - int(asked_before)
        s.add(Fulfillment(ref=ref, user_id=pack.user_id, kind="refund", product=pack.product,
                          credits=max(ask, 0), payment_intent=refund.payment_intent))
        s.flush()
        if ask <= 0:
            return f"{ref}: nothing more to take back"
        taken = self.ledger.clawback(user_id=pack.user_id, source_ref=f"stripe:{pack.ref}",
                                     idempotency_key=f"stripe:{ref}", amount=ask, session=s)
        return f"{taken} of {ask} credits taken back from {pack.ref}"

    def _store_subscription(self, s: Session, state: _SubscriptionState) -> None:
        row = s.get(Subscription, state.id)
        if row is None:
            row = Subscription(id=state.id, user_id=state.user_id, product=state.product, status=state.status)
        row.user_id = state.user_id
        row.product = state.product
        row.interval = state.interval
        row.status = state.status
        row.current_period_end = state.current_period_end
        row.cancel_at_period_end = state.cancel_at_period_end
        row.updated_at = utcnow()
        s.add(row)
        s.flush()

    def _link_customer(self, s: Session, user_id: int, customer: str | None) -> None:
        """Remember the user's Stripe customer (first one wins) so later checkouts reuse it."""
        if not customer:
            return
        current = s.exec(select(User.stripe_customer_id).where(User.id == user_id)).first()
        if current is not None:
            return
        owner = s.exec(select(User.id).where(User.stripe_customer_id == customer)).first()
        if owner is not None:
            if owner != user_id:
                log.warning("Stripe customer %s already belongs to user %s, not linked to user %s",
                            customer, owner, user_id)
            return
        s.execute(update(User).where(User.id == user_id, User.stripe_customer_id.is_(None))
                  .values(stripe_customer_id=customer))

    # Catalog in Stripe ------------------------------------------------------------------------------

    def sync_catalog(self) -> list[str]:
        """Create the Stripe products and prices the catalog needs (found by lookup_key); idempotent.

        A price whose amount, currency or interval changed in assets/pricing.json gets a new
        Stripe price that takes over the lookup key (existing subscribers keep their old price).
        Returns one line per thing checked or done.
        """
        gateway = self._require_gateway()
        done: list[str] = []
        seen_products: set[str] = set()
        for product in self.pricing.products.values():
            pid = product.stripe_product_id
            if pid in seen_products:
                continue
            seen_products.add(pid)
            if gateway.retrieve_product(pid) is not None:
                done.append(f"product {pid}: exists")
                continue
            name = self.pricing.plan(product.plan).name if product.plan else product.name
            gateway.create_product(
                {"id": pid, "name": name, "description": product.description or None,
                 "metadata": {"studio_product": product.plan or product.key}},
                idempotency_key=f"sync-product:{pid}",
            )
            done.append(f"product {pid}: created ({name})")
        wanted = [p for p in self.pricing.products.values() if not p.stripe_price_id]
        found = gateway.prices_by_lookup_key([p.lookup_key for p in wanted])
        for product in self.pricing.products.values():
            if product.stripe_price_id:
                price = gateway.retrieve_price(product.stripe_price_id)
                verdict = "matches the catalog" if _price_fits(product, price) else "DOES NOT MATCH the catalog"
                done.append(f"price {product.key}: {product.stripe_price_id} set in pricing.json, {verdict}")
                continue
            price = found.get(product.lookup_key)
            if price is not None and _price_fits(product, price):
                done.append(f"price {product.lookup_key}: exists ({price['id']}, {_describe(product)})")
                continue
            params: dict[str, Any] = {
                "product": product.stripe_product_id, "currency": product.currency,
                "unit_amount": product.unit_amount, "lookup_key": product.lookup_key,
                "nickname": f"{product.name} ({product.interval or 'one-time'})",
                "metadata": {"product": product.key},
            }
            if product.interval:
                params["recurring"] = {"interval": product.interval}
            if price is not None:
                params["transfer_lookup_key"] = True
            key = (f"sync-price:{product.lookup_key}:{product.unit_amount}:{product.currency}:"
                   f"{product.interval or 'once'}:{price['id'] if price else 'new'}")
            created = gateway.create_price(params, idempotency_key=key)
            if price is None:
                done.append(f"price {product.lookup_key}: created ({created['id']}, {_describe(product)})")
            else:
                done.append(f"price {product.lookup_key}: replaced {price['id']} with {created['id']} "
                            f"({_describe(product)})")
        with self._cache_lock:
            self._prices, self._prices_at = {}, 0.0
        return done

    def _price_id(self, product: Product) -> str:
        if product.stripe_price_id:
            return product.stripe_price_id
        for fresh in (False, True):
            price = self._cached_prices(refresh=fresh).get(product.lookup_key)
            if price is not None and _price_fits(product, price):
                return price["id"]
        if price is None:
            log.error("no active Stripe price has lookup_key %s: run `python app.py stripe sync`", product.lookup_key)
        else:
            log.error("Stripe price %s (lookup_key %s) differs from assets/pricing.json: run `python app.py stripe sync`",
                      price["id"], product.lookup_key)
        raise PaymentError("This product cannot be bought right now: the shop is not set up yet. Please contact support.")

    def _cached_prices(self, *, refresh: bool) -> dict[str, dict]:
        with self._cache_lock:
            stale = time.monotonic() - self._prices_at > PRICE_CACHE_SECONDS
            if refresh or stale or not self._prices:
                keys = [p.lookup_key for p in self.pricing.products.values() if not p.stripe_price_id]
                self._prices = self._require_gateway().prices_by_lookup_key(keys)
                self._prices_at = time.monotonic()
            return self._prices

    def _product_for_price(self, price: dict | str | None) -> Product | None:
        """The catalog product a Stripe price sells: by our metadata, lookup key, or configured id."""
        if not price:
            return None
        price_id = price if isinstance(price, str) else price.get("id")
        if price_id in self._price_products:
            return self.pricing.find(self._price_products[price_id])
        if isinstance(price, str):
            price = self._require_gateway().retrieve_price(price)
        product = (
            self.pricing.find((price.get("metadata") or {}).get("product"))
            or self.pricing.by_lookup_key(price.get("lookup_key"))
            or next((p for p in self.pricing.products.values() if p.stripe_price_id == price_id), None)
        )
        if product is not None and not _price_fits(product, price, check_amount=False):
            product = None
        with self._cache_lock:
            self._price_products[price_id] = product.key if product else None
        return product

    # Small reads ------------------------------------------------------------------------------------

    def _event_seen(self, event_id: str) -> bool:
        with self.db.session() as s:
            return s.get(StripeEvent, event_id) is not None

    def _customer_of(self, user_id: int) -> str | None:
        with self.db.session() as s:
            return s.exec(select(User.stripe_customer_id).where(User.id == user_id)).first()

    def _user_exists(self, user_id: int) -> bool:
        with self.db.session() as s:
            return s.get(User, user_id) is not None

    def _user_of_subscription(self, sub_id: str | None) -> int | None:
        if not sub_id:
            return None
        with self.db.session() as s:
            return s.exec(select(Subscription.user_id).where(Subscription.id == sub_id)).first()

    def _user_of_customer(self, customer: str | None) -> int | None:
        if not customer:
            return None
        with self.db.session() as s:
            return s.exec(select(User.id).where(User.stripe_customer_id == customer)).first()


# Helpers ------------------------------------------------------------------------------------------------


def _price_fits(product: Product, price: dict, *, check_amount: bool = True) -> bool:
    interval = (price.get("recurring") or {}).get("interval")
    if interval != product.interval or str(price.get("currency", "")).lower() != product.currency:
        return False
    return not check_amount or (price.get("unit_amount") == product.unit_amount and price.get("active", True))


def _describe(product: Product) -> str:
    per = {"month": " a month", "year": " a year"}.get(product.interval or "", "")
    return f"{product.display_price}{per}"


def _user_id(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and value.isdigit() and 0 < len(value) < 19:
        return int(value)
    return None


def _id_of(value: Any) -> str | None:
    """An expandable field's id, whether Stripe sent the id or the object."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _ts(value: Any) -> datetime | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return datetime.fromtimestamp(value, UTC)
    return None


def _subscription_of(invoice: dict) -> str | None:
    """In this API version the subscription lives on invoice.parent.subscription_details."""
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    return _id_of(details.get("subscription"))


def _is_service_line(line: dict) -> bool:
    """A line billing a subscription item for its service period (not a proration)."""
    parent = line.get("parent") or {}
    details = parent.get("subscription_item_details")
    return parent.get("type") == "subscription_item_details" and bool(details) and not details.get("proration")
