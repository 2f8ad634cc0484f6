"""The Billing facade: what app.py, ui/ and the CLI call. Buying lives in checkout.py, webhooks in
webhooks.py, booking in fulfilment.py; this module holds the configuration, the Stripe price
lookups (cached) and the small reads the other parts share."""

from __future__ import annotations

import logging
import threading
import time

from sqlmodel import select

from models.payment import Subscription
from models.user import User
from services.billing import catalog_sync, plans
from services.billing.catalog_sync import price_fits
from services.billing.checkout import CheckoutMixin
from services.billing.fulfilment import Booking
from services.billing.gateway import PaymentGateway
from services.billing.plans import CurrentPlan
from services.billing.webhooks import WebhookMixin
from services.db import Database
from services.errors import PaymentError, PaymentsNotConfigured
from services.pricing import Pricing, Product

log = logging.getLogger(__name__)

PRICE_CACHE_SECONDS = 300


class Billing(CheckoutMixin, WebhookMixin):
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
        self.booking = Booking(db=db, ledger=ledger)

    @property
    def enabled(self) -> bool:
        return self.gateway is not None

    def _require_gateway(self) -> PaymentGateway:
        if self.gateway is None:
            raise PaymentsNotConfigured()
        return self.gateway

    def current_plan(self, user_id: int) -> CurrentPlan | None:
        """The user's live subscription (active, trialing or past due), if any."""
        return plans.current_plan(db=self.db, pricing=self.pricing, user_id=user_id)

    # Catalog in Stripe ------------------------------------------------------------------------------

    def sync_catalog(self) -> list[str]:
        """Create the Stripe products and prices the catalog needs; idempotent (see catalog_sync.py)."""
        done = catalog_sync.sync_catalog(gateway=self._require_gateway(), pricing=self.pricing)
        with self._cache_lock:
            self._prices, self._prices_at = {}, 0.0
        return done

    def _price_id(self, product: Product) -> str:
        if product.stripe_price_id:
            return product.stripe_price_id
        for fresh in (False, True):
            price = self._cached_prices(refresh=fresh).get(product.lookup_key)
            if price is not None and price_fits(product, price):
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
        if product is not None and not price_fits(product, price, check_amount=False):
            product = None
        with self._cache_lock:
            self._price_products[price_id] = product.key if product else None
        return product

    # Small reads ------------------------------------------------------------------------------------

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
