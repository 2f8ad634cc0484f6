"""The offer: credit packs and plans, read from assets/pricing.json.

Every product the shop sells has one key. A pack is sold under its own key; a plan is sold
under two keys, one per billing interval: `<plan>_monthly` (interval "month", the plan's monthly
allowance each month) and `<plan>_annual` (interval "year", twelve months of allowance once a
year, since the billing cycle is the year). Credit amounts always come from here, never from a
payment event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    field_validator,
    model_validator,
)

from services.catalog import read_json, source_name, validate
from services.errors import ValidationFailed

# ISO currencies Stripe treats as having no minor unit (amounts are whole units).
ZERO_DECIMAL_CURRENCIES = frozenset(
    ["bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"]
)
CURRENCY_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "cad": "CA$", "aud": "A$"}
INTERVAL_SUFFIX = {"month": "monthly", "year": "annual"}
MAX_UNIT_AMOUNT = 99_999_999  # Stripe's largest unit_amount


class PricingError(ValueError):
    """assets/pricing.json is not valid; the message names the file and the field."""


# assets/pricing.json, as written by an operator --------------------------------------------

_STRICT = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _product_key(key: str) -> str:
    if not re.fullmatch(r"[a-z0-9_]{1,64}", key):
        raise ValueError(f"{key!r} must be lower-case letters, digits and _ (at most 64)")
    return key


_ProductKey = Annotated[str, StringConstraints(strict=True), AfterValidator(_product_key)]
_Amount = Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]  # "9.99": a decimal string, in `currency`
_Credits = Annotated[StrictInt, Field(gt=0, le=100_000_000)]


class PlanEntry(BaseModel):
    model_config = _STRICT
    key: _ProductKey
    name: str | None = None  # the key when absent
    description: str = ""
    credits_per_month: _Credits
    monthly_price: _Amount
    annual_price: _Amount


class PackEntry(BaseModel):
    model_config = _STRICT
    key: _ProductKey
    name: str | None = None
    description: str = ""
    credits: _Credits
    price: _Amount


class PricingFile(BaseModel):
    """assets/pricing.json"""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    comment: str | None = Field(default=None, alias="_comment")
    currency: str = "usd"
    lookup_key_prefix: str = "studio_"
    stripe_price_ids: dict[str, str] = Field(default_factory=dict)  # product key -> Stripe price id
    plans: list[PlanEntry] = Field(default_factory=list)
    packs: list[PackEntry] = Field(default_factory=list)

    @field_validator("currency")
    @classmethod
    def _currency(cls, currency: str) -> str:
        if len(currency) != 3 or not currency.isascii() or not currency.isalpha():
            raise ValueError(f"{currency!r} is not a 3-letter ISO code")
        return currency.lower()

    @model_validator(mode="after")
    def _consistent(self) -> PricingFile:
        keys = [k for plan in self.plans for k in (f"{plan.key}_monthly", f"{plan.key}_annual")]
        keys += [pack.key for pack in self.packs]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"duplicate product key {', '.join(dupes)}")
        unknown = set(self.stripe_price_ids) - set(keys)
        if unknown:
            raise ValueError(f"stripe_price_ids names unknown products: {', '.join(sorted(unknown))}")
        decimals = self.minor_unit_digits
        prices = [(f"plans[{i}].{name}", getattr(plan, name)) for i, plan in enumerate(self.plans)
                  for name in ("monthly_price", "annual_price")]
        prices += [(f"packs[{i}].price", pack.price) for i, pack in enumerate(self.packs)]
        for where, amount in prices:
            minor = amount.scaleb(decimals)
            if minor != minor.to_integral_value():
                raise ValueError(f"{where}: {amount} has more than {decimals} decimals in {self.currency.upper()}")
            if minor > MAX_UNIT_AMOUNT:
                raise ValueError(f"{where}: {amount} is more than the payment provider accepts")
        return self

    @property
    def minor_unit_digits(self) -> int:
        return 0 if self.currency in ZERO_DECIMAL_CURRENCIES else 2

    def unit_amount(self, amount: Decimal) -> int:
        """`amount` in the currency's minor unit (cents), as Stripe wants it."""
        return int(amount.scaleb(self.minor_unit_digits))


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
        data = read_json(path, PricingError)
        if price_ids and isinstance(data, dict):
            data = {**data, "stripe_price_ids": {**(data.get("stripe_price_ids") or {}), **price_ids}}
        return cls.from_dict(data, source=source_name(path))

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "pricing.json") -> Pricing:
        doc = validate(PricingFile, data, source, PricingError)
        currency, prefix, price_ids = doc.currency, doc.lookup_key_prefix, doc.stripe_price_ids
        products: dict[str, Product] = {}

        def add(product: Product) -> Product:
            products[product.key] = product
            return product

        plans = []
        for item in doc.plans:
            name = item.name or item.key
            made = {}
            for interval, amount, allowance in (("month", item.monthly_price, item.credits_per_month),
                                                ("year", item.annual_price, item.credits_per_month * 12)):
                key = f"{item.key}_{INTERVAL_SUFFIX[interval]}"
                made[interval] = add(Product(
                    key=key, kind="plan", name=name, description=item.description, credits=allowance,
                    unit_amount=doc.unit_amount(amount), currency=currency, lookup_key=f"{prefix}{key}",
                    stripe_product_id=f"{prefix}{item.key}", interval=interval, plan=item.key,
                    stripe_price_id=price_ids.get(key),
                ))
            plans.append(Plan(key=item.key, name=name, description=item.description,
                              credits_per_month=item.credits_per_month, monthly=made["month"], annual=made["year"]))
        packs = [add(Product(
            key=item.key, kind="pack", name=item.name or item.key, description=item.description,
            credits=item.credits, unit_amount=doc.unit_amount(item.price), currency=currency,
            lookup_key=f"{prefix}{item.key}", stripe_product_id=f"{prefix}{item.key}",
            stripe_price_id=price_ids.get(item.key),
        )) for item in doc.packs]
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
