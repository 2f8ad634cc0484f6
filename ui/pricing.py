"""Pricing tab: plans (monthly/annual toggle with the saving), credit packs, the user's plan,
Buy → a link to Stripe's hosted checkout, Manage subscription → a link to the Customer Portal."""

from __future__ import annotations

import functools
import html
from decimal import ROUND_HALF_UP, Decimal

import gradio as gr

from services import i18n
from services.billing import CurrentPlan
from services.catalog import Catalog
from services.container import Services
from services.pricing import CURRENCY_SYMBOLS, ZERO_DECIMAL_CURRENCIES, Plan, Pricing, Product, format_money
from ui.common import Shell, language_of, user_facing

INTERVALS = [("Monthly", "month"), ("Annual", "year")]
# The offer's rules in words, shown on this tab and on the public /pricing page (ui/web.py).
PLAN_CREDITS_RULE = "Plan credits refresh at the start of each billing cycle; unused plan credits do not roll over."
PACK_CREDITS_RULE = "Pack credits never expire."


PAYMENTS_OFF = "Payments are off on this instance: you can see the offer, but not buy yet."


def money(amount: Decimal, currency: str, *, places: int = 2, language: str | None = None) -> str:
    """An amount in the currency's major unit ("$0.050"), to `places` decimals (fewer for yen and the like);
    in another language than English as that language writes it (Babel)."""
    currency = currency.lower()
    places = max(0, places - 2) if currency in ZERO_DECIMAL_CURRENCIES else places
    if language not in (None, i18n.FALLBACK):
        return i18n.money(language, amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP), currency,
                          places=places)
    text = f"{amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP):,.{places}f}"
    symbol = CURRENCY_SYMBOLS.get(currency)
    return f"{symbol}{text}" if symbol else f"{text} {currency.upper()}"


def per_credit(product: Product) -> Decimal:
    """What one credit costs in this product, in the currency's major unit."""
    return product.price / product.credits


def price_text(product: Product, language: str | None = None) -> str:
    """The product's price ("$4.99"), in the language's way of writing money."""
    if language in (None, i18n.FALLBACK):
        return product.display_price
    return i18n.money_units(language, product.unit_amount, product.currency)


def per_credit_text(product: Product, language: str | None = None) -> str:
    return i18n.t(language, "price.per_credit",
                  price=money(per_credit(product), product.currency, places=3, language=language))


def per_image_text(product: Product, catalog: Catalog, language: str | None = None) -> str:
    """"$0.50 per 1K image": the default resolution's price in credits at this product's credit price."""
    resolution = catalog.resolution(catalog.default_resolution)
    return i18n.t(language, "price.per_image", resolution=resolution.label,
                  price=money(per_credit(product) * resolution.price, product.currency, language=language))


def product_name(item, language: str | None) -> str:
    """A pack's or plan's name in the language (assets/i18n/pricing.<language>.json)."""
    section = "plans" if isinstance(item, Plan) else "packs"
    return i18n.catalog_text(language, section, item.key, "name", item.name)


def product_description(item, language: str | None) -> str:
    section = "plans" if isinstance(item, Plan) else "packs"
    return i18n.catalog_text(language, section, item.key, "description", item.description)


def best_value(products) -> Product | None:
    """The product whose credit is cheapest, when there is a choice (ties: the first listed)."""
    products = list(products)
    if len(products) < 2:
        return None
    return min(products, key=per_credit)


def annual_saving(plan: Plan, language: str | None = None) -> str:
    """What annual billing saves against twelve monthly payments, in money ("$77.92")."""
    saving = max(0, plan.monthly.unit_amount * 12 - plan.annual.unit_amount)
    if language not in (None, i18n.FALLBACK):
        return i18n.money_units(language, saving, plan.annual.currency)
    return format_money(saving, plan.annual.currency)


def cheapest_credit(pricing: Pricing) -> Product | None:
    """The cheapest credit on offer, packs and plans at either interval."""
    offers = [*pricing.packs, *(p.product(i) for p in pricing.plans for i in ("month", "year"))]
    return min(offers, key=per_credit, default=None)


def credits_text(count: int, language: str | None = None) -> str:
    return i18n.t(language, "price.one_credit" if count == 1 else "price.credits", count=i18n.number(language, count))


def image_costs(catalog: Catalog, language: str | None = None) -> str:
    """What one image costs at each resolution, from assets/catalog.json: "1K: 10 credits · 2K: 20 credits"."""
    return i18n.t(language, "price.list_separator").join(
        i18n.t(language, "price.image_cost", resolution=r.label, credits=credits_text(r.price, language))
        for r in catalog.resolutions)


def _units(language: str | None, unit_amount: int, currency: str) -> str:
    if language in (None, i18n.FALLBACK):
        return format_money(unit_amount, currency)
    return i18n.money_units(language, unit_amount, currency)


def headline(pricing: Pricing, catalog: Catalog, language: str | None = None) -> str:
    cheapest = pricing.cheapest_monthly
    savings = {p.annual_saving_percent for p in pricing.plans}
    parts = []
    if cheapest:
        parts.append(i18n.t(language, "ui.pricing.headline_plans", price=price_text(cheapest, language)))
    if savings:
        parts.append(i18n.t(language, "ui.pricing.headline_save", percent=max(savings)))
    offer = f"{' · '.join(parts)}{i18n.t(language, 'ui.pricing.sentence_end')}\n\n" if parts else ""
    rules = f"{i18n.t(language, 'price.plan_rule')} {i18n.t(language, 'price.pack_rule')}"
    return (f"## {i18n.t(language, 'nav.pricing')}\n{offer}"
            f"{i18n.t(language, 'ui.pricing.one_image', costs=image_costs(catalog, language))} {rules}")


def best_value_line(language: str | None = None) -> str:
    return i18n.t(language, "ui.pricing.best_value") + "\n"


BEST_VALUE = best_value_line()


def plan_card(plan: Plan, interval: str, catalog: Catalog, *, best: bool = False, language: str | None = None) -> str:
    product = plan.product(interval)
    n = functools.partial(i18n.number, language)
    lines = [f"### {product_name(plan, language)}"] + ([best_value_line(language)] if best else [])
    if product.interval == "year":
        twelve = _units(language, plan.monthly.unit_amount * 12, product.currency)
        per_month = int((Decimal(plan.annual.unit_amount) / 12).quantize(Decimal("1"), rounding=ROUND_HALF_UP))
        lines += [
            i18n.t(language, "ui.pricing.a_year", price=price_text(product, language)) + "  ",
            i18n.t(language, "ui.pricing.annual_detail", twelve=twelve, saving=annual_saving(plan, language),
                   percent=plan.annual_saving_percent, monthly=_units(language, per_month, product.currency)),
            "\n" + i18n.t(language, "ui.pricing.credits_a_year", credits=n(product.credits),
                          monthly=n(plan.credits_per_month)),
        ]
    else:
        lines += [i18n.t(language, "ui.pricing.a_month", price=price_text(product, language)),
                  "\n" + i18n.t(language, "ui.pricing.credits_a_month", credits=n(product.credits))]
    lines.append(f"\n{per_credit_text(product, language)} · {per_image_text(product, catalog, language)}")
    if plan.description:
        lines.append(f"\n{product_description(plan, language)}")
    return "\n".join(lines)


def plan_cards(pricing: Pricing, interval: str, catalog: Catalog, language: str | None = None) -> list[str]:
    best = best_value(p.product(interval) for p in pricing.plans)
    return [plan_card(p, interval, catalog, best=p.product(interval) is best, language=language)
            for p in pricing.plans]


def pack_card(pack: Product, catalog: Catalog, *, best: bool = False, language: str | None = None) -> str:
    lines = [f"### {product_name(pack, language)}"] + ([best_value_line(language)] if best else [])
    lines += [i18n.t(language, "ui.pricing.once", price=price_text(pack, language)),
              "\n" + i18n.t(language, "ui.pricing.pack_credits", credits=i18n.number(language, pack.credits)),
              f"\n{per_credit_text(pack, language)} · {per_image_text(pack, catalog, language)}"]
    if pack.description:
        lines.append(f"\n{product_description(pack, language)}")
    return "\n".join(lines)


def plan_status(plan: CurrentPlan | None, *, enabled: bool, language: str | None = None) -> str:
    if not enabled:
        return i18n.t(language, "ui.pricing.payments_off")
    if plan is None:
        return i18n.t(language, "ui.pricing.no_plan")
    return i18n.t(language, "ui.pricing.your_plan", plan=html.escape(plan.summary))


def checkout_link(url: str, label: str, language: str | None = None) -> str:
    if not url.startswith(("https://", "http://")):
        raise gr.Error(i18n.t(language, "ui.pricing.bad_link"))
    href = html.escape(url, quote=True)
    return (f'<div class="checkout-link"><a href="{href}" rel="noopener">{html.escape(label)} →</a>'
            f"<p>{html.escape(i18n.t(language, 'ui.pricing.stripe_note'))}</p></div>")


def build(services: Services, shell: Shell) -> None:
    pricing: Pricing = services.pricing
    catalog: Catalog = services.catalog
    billing = services.billing
    # Payments are on or off for the life of the process (settings): without them every Buy
    # button is drawn disabled, with the one line below saying why.
    can_buy = billing.enabled

    gr.Markdown(shell.words("ui.pricing.headline", lambda lang: headline(pricing, catalog, lang)))
    with gr.Row(elem_classes="pricing-status"):
        status = gr.Markdown(shell.text("ui.pricing.payments_off") if not can_buy else "")
        manage_btn = gr.Button(shell.text("ui.pricing.manage"), size="sm", scale=0, visible=False)
    link = gr.HTML()

    saving = max((p.annual_saving_percent for p in pricing.plans), default=0)
    interval = gr.Radio(
        [(shell.text("ui.pricing.annual_save") if value == "year" else shell.text("ui.pricing.monthly"), value)
         for _, value in INTERVALS],
        value="month", label=shell.text("ui.pricing.billing"), container=False,
    )
    shell.words("ui.pricing.annual_save", lambda lang: i18n.t(lang, "ui.pricing.annual_save", percent=saving))
    cards: list[gr.Markdown] = []
    with gr.Row(equal_height=True):
        for plan in pricing.plans:
            with gr.Column(variant="panel", min_width=220):
                cards.append(gr.Markdown(shell.words(f"ui.pricing.card.{plan.key}", lambda lang, plan=plan: plan_cards(
                    pricing, "month", catalog, lang)[pricing.plans.index(plan)])))
                buy = gr.Button(shell.words(f"ui.pricing.subscribe.{plan.key}", lambda lang, plan=plan: i18n.t(
                    lang, "ui.pricing.subscribe", plan=product_name(plan, lang))), variant="primary",
                    interactive=can_buy)
                buy.click(_buy_plan(services, shell, plan), [interval], [link], api_visibility="private")

    gr.Markdown(shell.text("ui.pricing.packs"))
    best_pack = best_value(pricing.packs)
    with gr.Row(equal_height=True):
        for pack in pricing.packs:
            with gr.Column(variant="panel", min_width=180):
                gr.Markdown(shell.words(f"ui.pricing.pack.{pack.key}", lambda lang, pack=pack: pack_card(
                    pack, catalog, best=pack is best_pack, language=lang)))
                buy = gr.Button(shell.words(f"ui.pricing.buy.{pack.key}", lambda lang, pack=pack: i18n.t(
                    lang, "ui.pricing.buy_pack", credits=i18n.number(lang, pack.credits))), interactive=can_buy)
                buy.click(_buy_pack(services, shell, pack), None, [link], api_visibility="private")

    from ui.web import support_html  # the way to a person, under the offer (SUPPORT_*)

    gr.HTML(shell.words("ui.pricing.support", lambda lang: support_html(services, lang)),
            elem_classes="pricing-support")

    @user_facing
    def show_interval(value: str, request: gr.Request):
        return plan_cards(pricing, value, catalog, language_of(request))

    @user_facing
    def render(request: gr.Request):
        user = shell.user(request)
        plan = billing.current_plan(user.id) if can_buy else None
        return plan_status(plan, enabled=can_buy, language=language_of(request)), "", gr.update(
            visible=plan is not None)

    @user_facing
    def manage(request: gr.Request):
        url = billing.create_portal(user=shell.user(request))
        language = language_of(request)
        return checkout_link(url, i18n.t(language, "ui.pricing.portal"), language)

    interval.change(show_interval, [interval], cards, api_visibility="private", show_progress="hidden")
    manage_btn.click(manage, None, [link], api_visibility="private")
    shell.on_show(render, [], [status, link, manage_btn])


def _buy_plan(services: Services, shell: Shell, plan: Plan):
    @user_facing
    def buy(interval: str, request: gr.Request):
        user = shell.user(request)
        product = plan.product(interval if interval in ("month", "year") else "month")
        url = services.billing.create_checkout(user=user, product=product.key)
        language = language_of(request)
        per = i18n.t(language, "ui.pricing.per_year" if product.interval == "year" else "ui.pricing.per_month")
        return checkout_link(url, i18n.t(language, "ui.pricing.checkout_plan", plan=product_name(plan, language),
                                         price=price_text(product, language), per=per), language)

    return buy


def _buy_pack(services: Services, shell: Shell, pack: Product):
    @user_facing
    def buy(request: gr.Request):
        url = services.billing.create_checkout(user=shell.user(request), product=pack.key)
        language = language_of(request)
        return checkout_link(url, i18n.t(language, "ui.pricing.checkout_pack", pack=product_name(pack, language),
                                         price=price_text(pack, language)), language)

    return buy
