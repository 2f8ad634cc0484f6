"""The Pricing tab's numbers: per-credit and per-image prices, the best value and the annual saving,
all computed from pricing.json and catalog.json."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from services.catalog import Catalog
from services.pricing import Pricing
from ui import pricing as ui

ASSETS = Path(__file__).resolve().parents[2] / "assets"


def offer(packs, plans=(), currency="usd") -> Pricing:
    return Pricing.from_dict({"currency": currency, "packs": list(packs), "plans": list(plans)})


def test_per_credit_and_per_image_prices_of_the_shipped_offer(catalog):
    pricing = Pricing.load(ASSETS)
    starter, creator, studio = pricing.packs
    assert ui.per_credit(starter) == Decimal("0.0499")
    assert ui.per_credit_text(starter) == "$0.050 per credit"
    assert ui.per_image_text(starter, catalog) == "$0.50 per 1K image"  # 10 credits at $0.0499
    assert ui.per_credit_text(studio) == "$0.033 per credit" and ui.per_image_text(studio, catalog) == "$0.33 per 1K image"
    card = ui.pack_card(creator, catalog)
    assert "$0.040 per credit · $0.40 per 1K image" in card and "Best value" not in card


def test_the_per_image_price_follows_the_catalog():
    styles = json.loads((ASSETS / "styles.json").read_text())
    doc = json.loads((ASSETS / "catalog.json").read_text())
    doc["resolutions"][0]["price"] = 25
    catalog = Catalog.from_dicts(styles, doc)
    pack = offer([{"key": "p", "credits": 100, "price": "5.00"}]).packs[0]
    assert ui.per_image_text(pack, catalog) == "$1.25 per 1K image"


def test_the_best_value_is_the_cheapest_credit_and_moves_with_the_data():
    packs = [{"key": "a", "credits": 100, "price": "5.00"}, {"key": "b", "credits": 500, "price": "20.00"},
             {"key": "c", "credits": 1000, "price": "45.00"}]
    assert ui.best_value(offer(packs).packs).key == "b"
    packs[2]["price"] = "35.00"
    assert ui.best_value(offer(packs).packs).key == "c"
    assert ui.best_value(offer(packs[:1]).packs) is None, "no mark without a choice"
    assert ui.best_value([]) is None


def test_the_shipped_offer_marks_its_cheapest_credit(catalog):
    pricing = Pricing.load(ASSETS)
    assert ui.best_value(pricing.packs).key == "pack_1500"
    month, year = ui.plan_cards(pricing, "month", catalog), ui.plan_cards(pricing, "year", catalog)
    assert [ui.BEST_VALUE in card for card in month] == [False, True]  # Pro: $24.99 / 1,000 credits
    assert [ui.BEST_VALUE in card for card in year] == [False, True]
    assert ui.cheapest_credit(pricing).key == "pro_annual"


def test_the_annual_saving_in_money():
    plans = [{"key": "basic", "credits_per_month": 300, "monthly_price": "9.99", "annual_price": "41.96"},
             {"key": "flat", "credits_per_month": 10, "monthly_price": "1.00", "annual_price": "12.00"}]
    pricing = offer([], plans)
    assert ui.annual_saving(pricing.plans[0]) == "$77.92"  # 12 x 9.99 - 41.96
    assert ui.annual_saving(pricing.plans[1]) == "$0.00"
    card = ui.plan_card(pricing.plans[0], "year", Catalog.load(ASSETS))
    assert "save $77.92 a year** (65%)" in card


def test_money_in_a_zero_decimal_currency():
    pack = offer([{"key": "yen", "credits": 300, "price": "1000"}], currency="jpy").packs[0]
    assert ui.per_credit_text(pack) == "¥3.3 per credit"
    assert ui.money(Decimal("1234.5"), "chf") == "1,234.50 CHF"
