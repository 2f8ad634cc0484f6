"""Buying: Checkout Sessions for packs and plans, the Customer Portal, and the success redirect's
fulfilment of a Checkout Session read back from Stripe."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from models.user import User
from services.billing.fulfilment import FulfilmentResult, Purchase, Work, cents, ignored
from services.billing.gateway import id_of, parse_user_id
from services.errors import Conflict, NotFound, PaymentError, ValidationFailed

log = logging.getLogger(__name__)

SESSION_ID = re.compile(r"^cs_[A-Za-z0-9_]{1,250}$")
PRICING_PATH = "/?tab=pricing"
SUCCESS_PATH = "/billing/success"
CANCEL_PATH = "/billing/cancel"


class CheckoutMixin:
    """Part of Billing (service.py), which provides `settings`, `pricing`, `db`, `booking`,
    `_require_gateway`, the price lookups and the small reads (`_customer_of`, `_user_exists`, ...)."""

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
            # Subscriptions: card only (Alipay and WeChat Pay are not offered for recurring payments).
            params["payment_method_types"] = ["card"]
        else:
            params["customer_creation"] = "always"  # so the customer can be reused and see receipts
            params["payment_intent_data"] = {"metadata": metadata}
            methods = self.settings.payment_method_list  # STRIPE_PAYMENT_METHODS, e.g. card,alipay,wechat_pay
            if methods:
                params["payment_method_types"] = methods
                if "wechat_pay" in methods:  # WeChat Pay on Checkout needs the client it runs in
                    params["payment_method_options"] = {"wechat_pay": {"client": "web"}}
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

    def fulfil_checkout_session(self, session_id: str, *, user_id: int | None = None) -> FulfilmentResult:
        """Fulfil a Checkout Session fetched from Stripe (idempotent; the webhook does the same).

        With `user_id` (the success redirect), a session that belongs to someone else is NotFound.
        """
        if not isinstance(session_id, str) or not SESSION_ID.match(session_id):
            raise ValidationFailed("That is not a checkout session id.")
        self._require_gateway()
        return self.booking.run(lambda: self._prepare_checkout(session_id, expected_user_id=user_id))

    def _prepare_checkout(self, session_id: str, *, expected_user_id: int | None = None) -> Work:
        gateway = self._require_gateway()
        cs = gateway.retrieve_checkout_session(session_id)
        meta = cs.get("metadata") or {}
        user_id = parse_user_id(meta.get("user_id")) or parse_user_id(cs.get("client_reference_id"))
        if expected_user_id is not None and user_id != expected_user_id:
            raise NotFound("No such checkout session.")
        if user_id is None or not self._user_exists(user_id):
            return ignored(f"checkout {session_id}: no known user in its metadata")
        product = self.pricing.find(meta.get("product"))
        if product is None:
            log.error("checkout %s names product %r, not in the catalog: nothing granted", session_id,
                      meta.get("product"))
            return ignored(f"checkout {session_id}: unknown product")
        for line in ((cs.get("line_items") or {}).get("data") or []):
            if self._product_for_price(line.get("price")) is not product:
                log.error("checkout %s: a line item's price does not belong to %s: nothing granted",
                          session_id, product.key)
                return ignored(f"checkout {session_id}: price does not match {product.key}")
        work = Work()
        if cs.get("customer"):
            work.customers.append((user_id, cs["customer"]))
        if cs.get("status") != "complete":
            work.pending = "The checkout is not complete."
            return work
        if product.kind == "pack":
            if cs.get("mode") != "payment":
                return ignored(f"checkout {session_id}: a pack sold outside payment mode")
            if cs.get("payment_status") != "paid":
                work.pending = "Your payment is still processing; the credits arrive as soon as it clears."
                return work
            work.purchases.append(Purchase(ref=session_id, user_id=user_id, product=product,
                                           payment_intent=id_of(cs.get("payment_intent")),
                                           amount_cents=cents(cs.get("amount_total")), currency=cs.get("currency")))
            return work
        if cs.get("mode") != "subscription" or not cs.get("subscription"):
            return ignored(f"checkout {session_id}: a plan sold outside subscription mode")
        state = self._subscription_state(gateway.retrieve_subscription(id_of(cs["subscription"])), user_id)
        if state is not None:
            work.subscriptions.append(state)
        invoice_id = id_of(cs.get("invoice"))
        purchase, why = (None, "no invoice yet")
        if invoice_id:
            purchase, why = self._invoice_purchase(gateway.retrieve_invoice(invoice_id), user_id)
        if purchase is None:
            work.pending = "Your subscription payment is still processing; the credits arrive as soon as it clears."
            log.info("checkout %s: subscription not yet fulfilled (%s)", session_id, why)
        else:
            work.purchases.append(purchase)
        return work
