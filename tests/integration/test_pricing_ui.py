"""The Pricing tab's handlers, built in a real gr.Blocks and called as Gradio calls them, against
real services (SQLite) and the fake Stripe server."""

from __future__ import annotations

import html
import json
from functools import partial
from pathlib import Path

import gradio as gr
import pytest
from gradio.i18n import I18nData

from services.accounts import Accounts
from services.billing import Billing, make_gateway
from services.catalog import Catalog
from services.container import Services
from services.ledger import Ledger
from services.mailer import make_mailer
from services.pricing import Pricing
from services.settings import load_settings
from tests.fakes.stripe_server import FakeStripe
from ui import pricing as pricing_ui
from ui.common import Shell
from ui.web import pricing_html

ASSETS = Path(__file__).resolve().parents[2] / "assets"


def build_tab(db, tmp_path, *, stripe_url: str | None, catalog: Catalog | None = None, demo_out: list | None = None):
    settings = load_settings(env_file=None, data_dir=tmp_path, stripe_secret_key="sk_test_1" if stripe_url else None,
                             stripe_api_base=stripe_url, public_url="https://studio.example")
    ledger = Ledger(db)
    pricing = Pricing.load(ASSETS)
    billing = Billing(db=db, ledger=ledger, pricing=pricing, gateway=make_gateway(settings), settings=settings)
    services = Services(settings=settings, db=db, ledger=ledger, pricing=pricing, billing=billing,
                        catalog=catalog or Catalog.load(ASSETS),
                        studio=None, accounts=Accounts(db=db, ledger=ledger, settings=settings,
                                                       mailer=make_mailer(settings)))
    shell = Shell(services)
    with gr.Blocks() as demo:
        pricing_ui.build(services, shell)
    demo.english = partial(shown_in, shell.translations().translations_dict["en"])
    if demo_out is not None:
        demo_out += [demo, services]
    # Handlers by what a person does: the label of the button or radio that triggers them, and
    # "shown" for what runs when the tab is shown.
    handlers: dict[str, list] = {}
    for block_fn in demo.fns.values():
        for block_id, _event in block_fn.targets:
            handlers.setdefault(demo.english(demo.blocks[block_id].label or demo.blocks[block_id].value),
                                []).append(block_fn.fn)
    for fn, _inputs, _outputs in shell.tab_loaders:
        handlers.setdefault("shown", []).append(fn)
    return billing, handlers


def shown_in(words: dict, value):
    """A component's value or label as the page shows it in a language (gr.I18n keys looked up)."""
    if isinstance(value, I18nData):
        return words[value.key]
    if isinstance(value, str) and value.startswith("__i18n__"):
        return words[json.loads(value.removeprefix("__i18n__"))["key"]]
    return value


def buttons(handlers: dict, prefix: str) -> list:
    return [fn for label, fns in handlers.items() if str(label).startswith(prefix) for fn in fns]


def as_user(user) -> gr.Request:
    return gr.Request(username=str(user.id))


def test_offer_shows_and_buy_explains_without_stripe(sqlite_database, tmp_path, make_user):
    user = make_user(sqlite_database)
    built: list = []
    _, h = build_tab(sqlite_database, tmp_path, stripe_url=None, demo_out=built)
    status, _, manage = h["shown"][0](as_user(user))
    assert status == pricing_ui.PAYMENTS_OFF and manage["visible"] is False
    buy_buttons = [b for b in built[0].blocks.values() if isinstance(b, gr.Button)
                   and built[0].english(b.value).startswith(("Buy ", "Subscribe to "))]
    assert len(buy_buttons) == 5 and all(b.interactive is False for b in buy_buttons), "drawn disabled"
    manage_button = next(b for b in built[0].blocks.values()
                         if built[0].english(getattr(b, "value", None)) == "Manage subscription")
    assert manage_button.visible is False
    # The handlers still refuse if called anyway (a stale page, a crafted event).
    for buy in buttons(h, "Subscribe to "):
        with pytest.raises(gr.Error, match="not configured"):
            buy("month", as_user(user))
    for buy in buttons(h, "Buy "):
        with pytest.raises(gr.Error, match="not configured"):
            buy(as_user(user))
    annual = h["Billing"][0]("year", gr.Request())
    # 12 x $9.99 - $41.96 and 12 x $24.99 - $104.96, in money and in percent
    assert "save $77.92 a year** (65%)" in annual[0] and "save $194.92 a year** (65%)" in annual[1]
    assert "$9.99" in h["Billing"][0]("month", gr.Request())[0]
    with pytest.raises(gr.Error, match="sign in"):
        h["shown"][0](gr.Request())


def test_buy_and_manage_give_stripe_links(sqlite_database, tmp_path, make_user):
    user = make_user(sqlite_database)
    with FakeStripe() as fake:
        billing, h = build_tab(sqlite_database, tmp_path, stripe_url=fake.url)
        billing.sync_catalog()
        with pytest.raises(gr.Error, match="nothing|no subscription"):
            h["Manage subscription"][0](as_user(user))
        status, _, manage = h["shown"][0](as_user(user))
        assert "no subscription" in status and manage["visible"] is False

        plan_buys = buttons(h, "Subscribe to ")
        html = plan_buys[-1]("year", as_user(user))  # the last plan, billed annually
        assert f'href="{fake.url}/pay/cs_' in html and "a year" in html
        req = fake.requests_to("POST", "/v1/checkout/sessions")[-1]
        assert req.params["metadata"] == {"user_id": str(user.id), "product": billing.pricing.plans[-1].annual.key}

        pack_buys = buttons(h, "Buy ")
        html = pack_buys[0](as_user(user))
        session_id = html.split("/pay/", 1)[1].split('"', 1)[0]
        billing.fulfil_checkout_session(fake.complete_checkout(session_id)["id"], user_id=user.id)
        assert billing.ledger.balance(user.id).total == billing.pricing.packs[0].credits

        portal = h["Manage subscription"][0](as_user(user))
        assert f'href="{fake.url}/portal/bps_' in portal
        status, _, manage = h["shown"][0](as_user(user))
        assert "no subscription" in status and manage["visible"] is False, "a pack is not a plan"

        plan_html = plan_buys[0]("month", as_user(user))
        session_id = plan_html.split("/pay/", 1)[1].split('"', 1)[0]
        billing.fulfil_checkout_session(fake.complete_checkout(session_id)["id"], user_id=user.id)
        status, _, manage = h["shown"][0](as_user(user))
        assert "Your plan:" in status and billing.pricing.plans[0].name in status
        assert manage["visible"] is True, "Manage subscription shows for a subscriber"


def test_the_tab_and_the_public_page_state_the_catalog_prices(sqlite_database, tmp_path):
    """Prices are data: with other prices in catalog.json both pages show those, in the same words."""
    styles = json.loads((ASSETS / "styles.json").read_text())
    doc = json.loads((ASSETS / "catalog.json").read_text())
    for resolution, price in zip(doc["resolutions"], (7, 1, 55), strict=True):
        resolution["price"] = price
    built: list = []
    build_tab(sqlite_database, tmp_path, stripe_url=None, catalog=Catalog.from_dicts(styles, doc), demo_out=built)
    demo, services = built
    texts = [demo.english(block.value) for block in demo.blocks.values() if isinstance(block, gr.Markdown)]
    headline = next(t for t in texts if t.startswith("## Pricing"))
    public = pricing_html(services)

    costs = "1K: 7 credits · 2K: 1 credit · 4K: 55 credits"
    assert pricing_ui.image_costs(services.catalog) == costs
    assert f"One image costs {costs}." in headline
    assert f"One image costs {html.escape(costs)}." in public
    for rule in (pricing_ui.PLAN_CREDITS_RULE, pricing_ui.PACK_CREDITS_RULE):
        assert rule in headline and html.escape(rule) in public
    assert "10" not in headline.split("One image costs", 1)[1], "no price written into the code"
