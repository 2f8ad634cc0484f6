"""The payment provider: what billing needs from Stripe (PaymentGateway), the SDK behind it
(StripeGateway), and the readers of fields in the plain dicts Stripe objects come back as."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import stripe

from services.errors import NotFound, PaymentError

log = logging.getLogger(__name__)


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


# Reading Stripe objects -------------------------------------------------------------------------------


def parse_user_id(value: Any) -> int | None:
    """Our `user_id` metadata (a positive int or its digits), or None for anything else."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and value.isdigit() and 0 < len(value) < 19:
        return int(value)
    return None


def id_of(value: Any) -> str | None:
    """An expandable field's id, whether Stripe sent the id or the object."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def timestamp(value: Any) -> datetime | None:
    """A Stripe Unix timestamp as an aware UTC datetime (None when absent)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return datetime.fromtimestamp(value, UTC)
    return None


def subscription_of(invoice: dict) -> str | None:
    """In this API version the subscription lives on invoice.parent.subscription_details."""
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    return id_of(details.get("subscription"))


def is_service_line(line: dict) -> bool:
    """A line billing a subscription item for its service period (not a proration)."""
    parent = line.get("parent") or {}
    details = parent.get("subscription_item_details")
    return parent.get("type") == "subscription_item_details" and bool(details) and not details.get("proration")
