"""Stripe webhooks: the signature check, and one handler per event type that reads the object
the event names from Stripe (never the event's copy) and prepares the work to book."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable

import stripe
from sqlmodel import select

from models.payment import Fulfillment
from services.billing.checkout import SESSION_ID
from services.billing.fulfilment import Purchase, Refund, SubscriptionState, Work, cents, ignored
from services.billing.gateway import id_of, is_service_line, parse_user_id, subscription_of, timestamp
from services.errors import NotFound, PaymentError, PaymentsNotConfigured, WebhookRejected

log = logging.getLogger(__name__)

WEBHOOK_TOLERANCE_SECONDS = 300
# A paid invoice with one of these reasons starts a service period, so it refreshes the plan's
# credits. "subscription_update" counts only when it bills a new period (a non-proration line:
# e.g. switching monthly → annual restarts the cycle); a mid-cycle plan change bills prorations
# only, and the new plan's credits come with the next renewal.
REFRESH_REASONS = ("subscription_create", "subscription_cycle", "subscription_update")
INVOICE_ID = re.compile(r"^in_[A-Za-z0-9_]{1,250}$")


class WebhookMixin:
    """Part of Billing (service.py), which provides `settings`, `pricing`, `db`, `booking`,
    `_require_gateway`, the price lookups and the small reads (`_customer_of`, `_user_exists`, ...)."""

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
        prepare = (lambda: handler(obj)) if handler else (lambda: ignored(f"unhandled event type {event_type}"))
        try:
            result = self.booking.run(prepare, event=(event_id, event_type))
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

    def _handlers(self) -> dict[str, Callable[[dict], Work]]:
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

    def _on_checkout(self, session: dict) -> Work:
        session_id = session.get("id")
        if not isinstance(session_id, str) or not SESSION_ID.match(session_id):
            return ignored("checkout event without a session id")
        self._require_gateway()
        return self._prepare_checkout(session_id)

    def _on_invoice_paid(self, event_invoice: dict) -> Work:
        # Only the invoice id comes from the event: status, lines, prices, metadata and customer
        # are Stripe's current answer (a signed event is delivered, not proof of a payment).
        invoice_id = event_invoice.get("id")
        if not isinstance(invoice_id, str) or not INVOICE_ID.match(invoice_id):
            return ignored("invoice event without an invoice id")
        gateway = self._require_gateway()
        invoice = gateway.retrieve_invoice(invoice_id)
        purchase, why = self._invoice_purchase(invoice, None)
        if purchase is None:
            return ignored(f"invoice {invoice.get('id')}: {why}")
        work = Work(purchases=[purchase])
        if invoice.get("customer"):
            work.customers.append((purchase.user_id, id_of(invoice["customer"])))
        sub_id = subscription_of(invoice)
        state = self._subscription_state(gateway.retrieve_subscription(sub_id), purchase.user_id)
        if state is not None:
            work.subscriptions.append(state)
        return work

    def _invoice_purchase(self, invoice: dict, user_id: int | None) -> tuple[Purchase | None, str]:
        """The plan credits a paid subscription invoice buys, or (None, why not)."""
        if invoice.get("status") != "paid":
            return None, "invoice not paid"
        if invoice.get("billing_reason") not in REFRESH_REASONS:
            return None, f"billing reason {invoice.get('billing_reason')}"
        sub_id = subscription_of(invoice)
        if not sub_id:
            return None, "not a subscription invoice"
        line = next((x for x in (invoice.get("lines") or {}).get("data") or [] if is_service_line(x)), None)
        if line is None:
            return None, "no subscription line"
        product = self._product_for_price(((line.get("pricing") or {}).get("price_details") or {}).get("price"))
        if product is None or product.kind != "plan":
            return None, "its price is not a plan in the catalog"
        details = (invoice.get("parent") or {}).get("subscription_details") or {}
        user_id = (
            parse_user_id((details.get("metadata") or {}).get("user_id"))
            or user_id
            or self._user_of_subscription(sub_id)
            or self._user_of_customer(id_of(invoice.get("customer")))
        )
        if user_id is None or not self._user_exists(user_id):
            return None, "no known user"
        period_end = timestamp((line.get("period") or {}).get("end"))
        if period_end is None:
            return None, "no service period on the line"
        return Purchase(ref=invoice["id"], user_id=user_id, product=product, period_end=period_end,
                        amount_cents=cents(invoice.get("amount_paid")), currency=invoice.get("currency")), ""

    def _on_subscription(self, sub: dict) -> Work:
        sub_id = sub.get("id")
        if not isinstance(sub_id, str):
            return ignored("subscription event without an id")
        # Stripe's current state, never the event's copy: events arrive in any order, and a
        # made-up subscription must not unlock a plan (NotFound: see handle_webhook).
        sub = self._require_gateway().retrieve_subscription(sub_id)
        state = self._subscription_state(sub, None)
        if state is None:
            return ignored(f"subscription {sub_id}: no known user or plan")
        work = Work(subscriptions=[state])
        if sub.get("customer"):
            work.customers.append((state.user_id, id_of(sub["customer"])))
        return work

    def _subscription_state(self, sub: dict, user_id: int | None) -> SubscriptionState | None:
        items = (sub.get("items") or {}).get("data") or []
        if not items:
            return None
        item = items[0]
        price = item.get("price") or {}
        product = self._product_for_price(price)
        user_id = (
            parse_user_id((sub.get("metadata") or {}).get("user_id"))
            or user_id
            or self._user_of_subscription(sub["id"])
            or self._user_of_customer(id_of(sub.get("customer")))
        )
        if product is None or user_id is None or not self._user_exists(user_id):
            log.warning("subscription %s: unknown plan or user, not tracked", sub.get("id"))
            return None
        return SubscriptionState(
            id=sub["id"], user_id=user_id, product=product.key,
            interval=((price.get("recurring") or {}).get("interval")) or product.interval or "month",
            status=str(sub.get("status") or "active"),
            current_period_end=timestamp(item.get("current_period_end")),
            cancel_at_period_end=bool(sub.get("cancel_at_period_end")),
        )

    def _on_charge_refunded(self, event_charge: dict) -> Work:
        # The event's copy only says where to look; the amounts are read from Stripe's charge.
        payment_intent = id_of(event_charge.get("payment_intent"))
        charge_id = event_charge.get("id")
        if not payment_intent or not isinstance(charge_id, str) or not charge_id:
            return ignored("refund without a payment intent")
        gateway = self._require_gateway()
        with self.db.session() as s:
            known = s.exec(select(Fulfillment.id).where(
                Fulfillment.payment_intent == payment_intent, Fulfillment.kind == "pack")).first()
        session = None
        if known is None:
            session = gateway.find_checkout_session(payment_intent=payment_intent)
            if session is None or session.get("mode") != "payment":
                return ignored(f"charge {charge_id}: not a pack bought here")
        charge = gateway.retrieve_charge(charge_id)
        if id_of(charge.get("payment_intent")) != payment_intent:
            log.error("charge.refunded: charge %s does not pay for %s at Stripe: nothing taken back",
                      charge_id, payment_intent)
            return ignored(f"charge {charge_id}: not the payment the event names")
        refund = Refund(charge_id=charge_id, payment_intent=payment_intent,
                        amount=int(charge.get("amount") or 0), amount_refunded=int(charge.get("amount_refunded") or 0))
        if refund.amount <= 0 or refund.amount_refunded <= 0:
            return ignored(f"charge {charge_id}: nothing refunded")
        if known is not None:
            return Work(refund=refund)
        # The refund arrived before the purchase was fulfilled: fulfil it first, in the same transaction.
        work = self._prepare_checkout(session["id"])
        if not work.purchases:
            return work
        work.refund = refund
        return work
