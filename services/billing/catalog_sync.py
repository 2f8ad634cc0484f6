"""`python app.py stripe sync`: the Stripe products and prices assets/pricing.json needs, and
whether a Stripe price still sells what the catalog says."""

from __future__ import annotations

from typing import Any

from services.billing.gateway import PaymentGateway
from services.pricing import Pricing, Product


def sync_catalog(*, gateway: PaymentGateway, pricing: Pricing) -> list[str]:
    """Create the Stripe products and prices the catalog needs (found by lookup_key); idempotent.

    A price whose amount, currency or interval changed in assets/pricing.json gets a new
    Stripe price that takes over the lookup key (existing subscribers keep their old price).
    Returns one line per thing checked or done.
    """
    done: list[str] = []
    seen_products: set[str] = set()
    for product in pricing.products.values():
        pid = product.stripe_product_id
        if pid in seen_products:
            continue
        seen_products.add(pid)
        if gateway.retrieve_product(pid) is not None:
            done.append(f"product {pid}: exists")
            continue
        name = pricing.plan(product.plan).name if product.plan else product.name
        gateway.create_product(
            {"id": pid, "name": name, "description": product.description or None,
             "metadata": {"studio_product": product.plan or product.key}},
            idempotency_key=f"sync-product:{pid}",
        )
        done.append(f"product {pid}: created ({name})")
    wanted = [p for p in pricing.products.values() if not p.stripe_price_id]
    found = gateway.prices_by_lookup_key([p.lookup_key for p in wanted])
    for product in pricing.products.values():
        if product.stripe_price_id:
            price = gateway.retrieve_price(product.stripe_price_id)
            verdict = "matches the catalog" if price_fits(product, price) else "DOES NOT MATCH the catalog"
            done.append(f"price {product.key}: {product.stripe_price_id} set in pricing.json, {verdict}")
            continue
        price = found.get(product.lookup_key)
        if price is not None and price_fits(product, price):
            done.append(f"price {product.lookup_key}: exists ({price['id']}, {describe(product)})")
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
            done.append(f"price {product.lookup_key}: created ({created['id']}, {describe(product)})")
        else:
            done.append(f"price {product.lookup_key}: replaced {price['id']} with {created['id']} "
                        f"({describe(product)})")
    return done


def price_fits(product: Product, price: dict, *, check_amount: bool = True) -> bool:
    """Whether a Stripe price sells this product: interval and currency (and amount, still active)."""
    interval = (price.get("recurring") or {}).get("interval")
    if interval != product.interval or str(price.get("currency", "")).lower() != product.currency:
        return False
    return not check_amount or (price.get("unit_amount") == product.unit_amount and price.get("active", True))


def describe(product: Product) -> str:
    per = {"month": " a month", "year": " a year"}.get(product.interval or "", "")
    return f"{product.display_price}{per}"

