"""The offer in assets/pricing.json: shipped defaults match the terms; bad data is refused clearly."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from services.errors import ValidationFailed
from services.pricing import Pricing, PricingError, format_money

ASSETS = Path(__file__).resolve().parents[2] / "assets"


@pytest.fixture(scope="module")
def raw() -> dict:
    return json.loads((ASSETS / "pricing.json").read_text())


def test_defaults_match_the_terms():
    pricing = Pricing.load(ASSETS)
    assert pricing.cheapest_monthly.display_price == "$9.99"  # plans "from $9.99" a month
    assert pricing.plans, "at least one plan"
    assert pricing.packs, "at least one pack"
    for plan in pricing.plans:
        assert plan.annual_saving_percent == 65
        assert plan.annual.credits == 12 * plan.monthly.credits == 12 * plan.credits_per_month
        assert plan.monthly.interval == "month" and plan.annual.interval == "year"
    for pack in pricing.packs:
        assert pack.interval is None and pack.kind == "pack"


def test_products_json_shape():
    products = Pricing.load(ASSETS).products_json()
    assert products["basic_monthly"] == {
        "kind": "plan", "name": "Basic", "credits": 300, "price": 9.99, "unit_amount": 999, "currency": "usd",
        "interval": "month", "lookup_key": "studio_basic_monthly", "plan": "basic", "credits_per_month": 300,
    }
    assert products["basic_annual"]["interval"] == "year"
    assert products["basic_annual"]["saving_percent_vs_monthly"] == 65
    assert products["pack_500"]["kind"] == "pack"
    assert products["pack_500"]["interval"] is None
    assert products["pack_500"]["credits"] == 500
    assert json.loads(json.dumps(products)) == products  # plain JSON


def test_unknown_product_is_a_clear_refusal():
    pricing = Pricing.load(ASSETS)
    with pytest.raises(ValidationFailed, match="not on sale"):
        pricing.product("pack_999999")
    assert pricing.find(None) is None


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["packs"][0].update(price="-1"), "packs[0].price: Input should be greater than 0"),
        (lambda d: d["packs"][0].update(price="4.999"), "packs[0].price: 4.999 has more than 2 decimals in USD"),
        (lambda d: d["packs"][0].update(price="abc"), "packs[0].price: Input should be a valid decimal"),
        (lambda d: d["packs"][0].update(price="NaN"), "packs[0].price: Input should be a finite number"),
        (lambda d: d["packs"][2].update(price="1000000"), "packs[2].price: 1000000 is more than the payment"),
        (lambda d: d["plans"][1].update(annual_price=True), "plans[1].annual_price: Decimal input should be"),
        (lambda d: d["packs"][0].update(credits=0), "packs[0].credits: Input should be greater than 0"),
        (lambda d: d["packs"][0].update(credits=True), "packs[0].credits: Input should be a valid integer"),
        (lambda d: d["plans"][0].update(credits_per_month="300"),
         "plans[0].credits_per_month: Input should be a valid integer"),
        (lambda d: d["plans"][0].pop("annual_price"), "plans[0].annual_price: Field required"),
        (lambda d: d["plans"][0].update(anual_price="9"), "plans[0].anual_price: unknown field"),
        (lambda d: d["packs"][1].update(key=d["packs"][0]["key"]), "duplicate product key pack_100"),
        (lambda d: d["packs"][0].update(key="basic_monthly"), "duplicate product key basic_monthly"),
        (lambda d: d["packs"][0].update(key="Pack One"),
         "packs[0].key: 'Pack One' must be lower-case letters, digits and _"),
        (lambda d: d.update(currency="dollars"), "currency: 'dollars' is not a 3-letter ISO code"),
        (lambda d: d.update(stripe_price_ids={"nope": "price_1"}), "stripe_price_ids names unknown products: nope"),
        (lambda d: d.update(packs={"key": "x"}), "packs: Input should be a valid list"),
    ],
)
def test_bad_catalog_is_refused_naming_the_file_and_the_field(raw, mutate, message):
    data = copy.deepcopy(raw)
    mutate(data)
    with pytest.raises(PricingError) as refused:
        Pricing.from_dict(data, source="pricing.json")
    assert str(refused.value).startswith(f"pricing.json: {message}")


def test_a_bad_file_on_disk_is_named_as_found_in_the_project(raw, tmp_path):
    with pytest.raises(PricingError, match=r"^assets/pricing\.json: stripe_price_ids names unknown products: x$"):
        Pricing.load(ASSETS, price_ids={"x": "price_1"})
    (tmp_path / "pricing.json").write_text(json.dumps({**raw, "currency": 840}))
    with pytest.raises(PricingError) as refused:
        Pricing.load(tmp_path)
    assert str(refused.value) == f"{tmp_path / 'pricing.json'}: currency: Input should be a valid string"
    (tmp_path / "pricing.json").write_text("[1, 2")
    with pytest.raises(PricingError, match="pricing.json is not valid JSON"):
        Pricing.load(tmp_path)


def test_configured_price_ids_and_zero_decimal_currency(raw):
    data = copy.deepcopy(raw)
    data["currency"] = "jpy"
    data["packs"] = [{"key": "pack_a", "name": "A", "credits": 100, "price": "500"}]
    data["plans"] = []
    data["stripe_price_ids"] = {"pack_a": "price_123"}
    pricing = Pricing.from_dict(data)
    assert pricing.product("pack_a").unit_amount == 500
    assert pricing.product("pack_a").stripe_price_id == "price_123"
    assert pricing.product("pack_a").display_price == "¥500"


def test_format_money():
    assert format_money(999, "usd") == "$9.99"
    assert format_money(123456, "eur") == "€1,234.56"
    assert format_money(1000, "chf") == "10.00 CHF"


def test_price_ids_from_the_environment_override_the_catalog(tmp_path):
    from services.settings import ConfigError, load_settings

    settings = load_settings(env_file=None, DATA_DIR=str(tmp_path),
                             STRIPE_PRICE_IDS="pack_100=price_env100, pro_monthly=price_envpro")
    assets = Path(__file__).resolve().parents[2] / "assets"
    pricing = Pricing.load(assets, price_ids=settings.stripe_price_id_map)
    assert pricing.product("pack_100").stripe_price_id == "price_env100"
    assert pricing.product("pro_monthly").stripe_price_id == "price_envpro"
    assert Pricing.load(assets).product("pack_100").stripe_price_id is None
    with pytest.raises(PricingError):
        Pricing.load(assets, price_ids={"no_such_product": "price_x"})
    with pytest.raises(ConfigError, match="STRIPE_PRICE_IDS"):
        load_settings(env_file=None, DATA_DIR=str(tmp_path), STRIPE_PRICE_IDS="pack_100")
