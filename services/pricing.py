"""The offer: credit packs and plans, read from assets/pricing.json.

Every product the shop sells has one key. A pack is sold under its own key; a plan is sold
under two keys, one per billing interval: `<plan>_monthly` (interval "month", the plan's monthly
allowance each month) and `<plan>_annual` (interval "year", twelve months of allowance once a
year, since the billing cycle is the year). Credit amounts always come from here, never from a
payment event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Literal

from services.errors import ValidationFailed

# ISO currencies Stripe treats as having no minor unit (amounts are whole units).
ZERO_DECIMAL_CURRENCIES = frozenset(
    ["bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"]
)
CURRENCY_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "cad": "CA$", "aud": "A$"}
INTERVAL_SUFFIX = {"month": "monthly", "year": "annual"}


class PricingError(ValueError):
    """assets/pricing.json is not valid; the message says where."""


@dataclass(frozen=True)
class Product:
    """One thing a user can buy: a pack, or a plan billed at one interval."""

    key: str
    kind: Literal["pack", "plan"]
    name: str
    description: str
    credits: int  # granted per purchase (pack) or per billing cycle (plan)
    unit_amount: int  # in the currency's minor unit (cents), as Stripe wants it
    currency: str
    lookup_key: str
    stripe_product_id: str
    interval: Literal["month", "year"] | None = None
    plan: str | None = None  # the plan key, for plans
    stripe_price_id: str | None = None  # set in the catalog to skip the lookup_key search

    @property
    def price(self) -> Decimal:
        if self.currency in ZERO_DECIMAL_CURRENCIES:
            return Decimal(self.unit_amount)
        return (Decimal(self.unit_amount) / 100).quantize(Decimal("0.01"))

    @property
    def display_price(self) -> str:
        return format_money(self.unit_amount, self.currency)

    @property
    def recurring(self) -> bool:
        return self.kind == "plan"


@dataclass(frozen=True)
class Plan:
    key: str
    name: str
    description: str
    credits_per_month: int
    monthly: Product
    annual: Product

    @property
    def annual_saving_percent(self) -> int:
        """How much cheaper a year billed annually is than twelve monthly payments, rounded."""
        twelve = Decimal(self.monthly.unit_amount) * 12
        saving = (1 - Decimal(self.annual.unit_amount) / twelve) * 100
        return int(saving.quantize(Decimal("1"), rounding=ROUND_HALF_UP))

    @property
    def annual_monthly_equivalent(self) -> str:
        per_month = (Decimal(self.annual.unit_amount) / 12).quantize(Decimal("1"), rounding=ROUND_HALF_UP)
        return format_money(int(per_month), self.annual.currency)

    def product(self, interval: str) -> Product:
        return self.annual if interval in ("year", "annual") else self.monthly


@dataclass(frozen=True)
class Pricing:
    currency: str
    plans: tuple[Plan, ...]
    packs: tuple[Product, ...]
    products: dict[str, Product] = field(default_factory=dict)

    @classmethod
    def load(cls, assets_dir: str | Path, *, price_ids: dict[str, str] | None = None) -> Pricing:
        """Read assets/pricing.json. `price_ids` (from STRIPE_PRICE_IDS) override its stripe_price_ids."""
        path = Path(assets_dir) / "pricing.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise PricingError(f"{path}: {exc}") from None
        if price_ids and isinstance(data, dict):
            data = {**data, "stripe_price_ids": {**(data.get("stripe_price_ids") or {}), **price_ids}}
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "pricing") -> Pricing:
        def fail(msg: str):
            raise PricingError(f"{source}: {msg}")

        if not isinstance(data, dict):
            fail("must be a JSON object")
        currency = str(data.get("currency", "usd")).lower()
        if len(currency) != 3 or not currency.isalpha():
            fail(f"currency {currency!r} is not a 3-letter ISO code")
        prefix = str(data.get("lookup_key_prefix", "studio_"))
        price_ids = data.get("stripe_price_ids") or {}
        if not isinstance(price_ids, dict):
            fail("stripe_price_ids must map product keys to Stripe price ids")

        def amount(value, where: str) -> int:
            try:
                dec = Decimal(str(value))
            except (InvalidOperation, ValueError):
                fail(f"{where}: {value!r} is not a price")
            minor = dec if currency in ZERO_DECIMAL_CURRENCIES else dec * 100
            if dec <= 0 or minor != minor.to_integral_value():
                fail(f"{where}: {value!r} must be positive with at most "
                     f"{0 if currency in ZERO_DECIMAL_CURRENCIES else 2} decimals")
            return int(minor)

        def credits(value, where: str) -> int:
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                fail(f"{where}: credits must be a positive whole number")
            return value

        def key_of(item: dict, where: str) -> str:
            key = item.get("key")
            if not isinstance(key, str) or not key.replace("_", "").isalnum() or not key.islower():
                fail(f"{where}: key {key!r} must be lower-case letters, digits and _")
            return key

        products: dict[str, Product] = {}

        def add(product: Product) -> Product:
            if product.key in products:
                fail(f"duplicate product key {product.key!r}")
            products[product.key] = product
            return product

        plans = []
        for i, item in enumerate(data.get("plans") or []):
            where = f"plans[{i}]"
            key = key_of(item, where)
            per_month = credits(item.get("credits_per_month"), where)
            common = dict(
                kind="plan", name=str(item.get("name") or key), description=str(item.get("description", "")),
                currency=currency, stripe_product_id=f"{prefix}{key}", plan=key,
            )
            made = {}
            for interval, price_field, allowance in (
                ("month", "monthly_price", per_month), ("year", "annual_price", per_month * 12)
            ):
                pkey = f"{key}_{INTERVAL_SUFFIX[interval]}"
                made[interval] = add(Product(
                    key=pkey, credits=allowance, unit_amount=amount(item.get(price_field), f"{where}.{price_field}"),
                    lookup_key=f"{prefix}{pkey}", interval=interval, stripe_price_id=price_ids.get(pkey),
                    **common,
                ))
            plans.append(Plan(key=key, name=common["name"], description=common["description"],
                              credits_per_month=per_month, monthly=made["month"], annual=made["year"]))

        packs = []
        for i, item in enumerate(data.get("packs") or []):
            where = f"packs[{i}]"
            key = key_of(item, where)
            packs.append(add(Product(
                key=key, kind="pack", name=str(item.get("name") or key), description=str(item.get("description", "")),
                credits=credits(item.get("credits"), where), unit_amount=amount(item.get("price"), f"{where}.price"),
                currency=currency, lookup_key=f"{prefix}{key}", stripe_product_id=f"{prefix}{key}",
                stripe_price_id=price_ids.get(key),
            )))
        unknown = set(price_ids) - set(products)
        if unknown:
            fail(f"stripe_price_ids names unknown products: {', '.join(sorted(unknown))}")
        return cls(currency=currency, plans=tuple(plans), packs=tuple(packs), products=products)

    # Lookups ----------------------------------------------------------------------------------

    def product(self, key: str) -> Product:
        """The product with this key; ValidationFailed (nothing changes) otherwise."""
        product = self.products.get(key) if isinstance(key, str) else None
        if product is None:
            raise ValidationFailed("That product is not on sale. Choose one on the Pricing tab.")
        return product

    def find(self, key: str | None) -> Product | None:
        return self.products.get(key) if key else None

    def by_lookup_key(self, lookup_key: str | None) -> Product | None:
        if not lookup_key:
            return None
        return next((p for p in self.products.values() if p.lookup_key == lookup_key), None)

    def plan(self, key: str) -> Plan | None:
        return next((p for p in self.plans if p.key == key), None)

    @property
    def cheapest_monthly(self) -> Product | None:
        return min((p.monthly for p in self.plans), key=lambda p: p.unit_amount, default=None)

    def products_json(self) -> dict[str, dict]:
        """`{key: {"kind", "credits", "price", "interval", ...}}` for `python app.py catalog`."""
        out: dict[str, dict] = {}
        for p in self.products.values():
            entry = {
                "kind": p.kind,
                "name": p.name,
                "credits": p.credits,
                "price": float(p.price),
                "unit_amount": p.unit_amount,
                "currency": p.currency,
                "interval": p.interval,
                "lookup_key": p.lookup_key,
            }
            if p.kind == "plan":
                plan = self.plan(p.plan)
                entry["plan"] = p.plan
                entry["credits_per_month"] = plan.credits_per_month
                if p.interval == "year":
                    entry["saving_percent_vs_monthly"] = plan.annual_saving_percent
            out[p.key] = entry
        return out


def format_money(unit_amount: int, currency: str) -> str:
    currency = currency.lower()
    value = Decimal(unit_amount) if currency in ZERO_DECIMAL_CURRENCIES else Decimal(unit_amount) / 100
    text = f"{value:,.0f}" if currency in ZERO_DECIMAL_CURRENCIES else f"{value:,.2f}"
    symbol = CURRENCY_SYMBOLS.get(currency)
    return f"{symbol}{text}" if symbol else f"{text} {currency.upper()}"
