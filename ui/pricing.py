"""Pricing tab: plans (monthly/annual toggle with the saving), credit packs, the user's plan,
Buy → a link to Stripe's hosted checkout, Manage subscription → a link to the Customer Portal."""

from __future__ import annotations

import html
from decimal import ROUND_HALF_UP, Decimal

import gradio as gr

from services import i18n
from services.billing import CurrentPlan
from services.catalog import Catalog
from services.container import Services
from services.pricing import CURRENCY_SYMBOLS, ZERO_DECIMAL_CURRENCIES, Plan, Pricing, Product, format_money
from ui.common import Shell, user_facing

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
        return i18n.money(language, amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP), currency)
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


def headline(pricing: Pricing, catalog: Catalog) -> str:
    cheapest = pricing.cheapest_monthly
    savings = {p.annual_saving_percent for p in pricing.plans}
    parts = []
    if cheapest:
        parts.append(f"Plans from **{cheapest.display_price}** a month")
    if savings:
        parts.append(f"save **{max(savings)}%** with annual billing")
    offer = f"{' · '.join(parts)}.\n\n" if parts else ""
    return f"## Pricing\n{offer}One image costs {image_costs(catalog)}. {PLAN_CREDITS_RULE} {PACK_CREDITS_RULE}"


BEST_VALUE = "**★ Best value**\n"


def plan_card(plan: Plan, interval: str, catalog: Catalog, *, best: bool = False) -> str:
    product = plan.product(interval)
    lines = [f"### {plan.name}"] + ([BEST_VALUE] if best else [])
    if product.interval == "year":
        twelve = format_money(plan.monthly.unit_amount * 12, product.currency)
        lines += [
            f"**{product.display_price}** a year  ",
            f"~~{twelve}~~ · **save {annual_saving(plan)} a year** ({plan.annual_saving_percent}%) · "
            f"{plan.annual_monthly_equivalent} a month",
            f"\n{product.credits:,} credits a year ({plan.credits_per_month:,} a month)",
        ]
    else:
        lines += [f"**{product.display_price}** a month", f"\n{product.credits:,} credits a month"]
    lines.append(f"\n{per_credit_text(product)} · {per_image_text(product, catalog)}")
    if plan.description:
        lines.append(f"\n{plan.description}")
    return "\n".join(lines)


def plan_cards(pricing: Pricing, interval: str, catalog: Catalog) -> list[str]:
    best = best_value(p.product(interval) for p in pricing.plans)
    return [plan_card(p, interval, catalog, best=p.product(interval) is best) for p in pricing.plans]


def pack_card(pack: Product, catalog: Catalog, *, best: bool = False) -> str:
    lines = [f"### {pack.name}"] + ([BEST_VALUE] if best else [])
    lines += [f"**{pack.display_price}** once", f"\n{pack.credits:,} credits, never expire",
              f"\n{per_credit_text(pack)} · {per_image_text(pack, catalog)}"]
    if pack.description:
        lines.append(f"\n{pack.description}")
    return "\n".join(lines)


def plan_status(plan: CurrentPlan | None, *, enabled: bool) -> str:
    if not enabled:
        return PAYMENTS_OFF
    if plan is None:
        return "You have no subscription. Choose a plan or a credit pack below."
    return f"**Your plan:** {html.escape(plan.summary)}"


def checkout_link(url: str, label: str) -> str:
    if not url.startswith(("https://", "http://")):
        raise gr.Error("The payment provider returned an unexpected link.")
    href = html.escape(url, quote=True)
    return (f'<div class="checkout-link"><a href="{href}" rel="noopener">{html.escape(label)} →</a>'
            "<p>You will pay on Stripe's secure page; this app never sees your card.</p></div>")


def build(services: Services, shell: Shell) -> None:
    pricing: Pricing = services.pricing
    catalog: Catalog = services.catalog
    billing = services.billing
    # Payments are on or off for the life of the process (settings): without them every Buy
    # button is drawn disabled, with the one line below saying why.
    can_buy = billing.enabled

    gr.Markdown(headline(pricing, catalog))
    with gr.Row(elem_classes="pricing-status"):
        status = gr.Markdown(PAYMENTS_OFF if not can_buy else "")
        manage_btn = gr.Button("Manage subscription", size="sm", scale=0, visible=False)
    link = gr.HTML()

    interval = gr.Radio(
        [(f"{label} — save {max((p.annual_saving_percent for p in pricing.plans), default=0)}%"
          if value == "year" else label, value) for label, value in INTERVALS],
        value="month", label="Billing", container=False,
    )
    cards: list[gr.Markdown] = []
    with gr.Row(equal_height=True):
        for plan, text in zip(pricing.plans, plan_cards(pricing, "month", catalog), strict=True):
            with gr.Column(variant="panel", min_width=220):
                cards.append(gr.Markdown(text))
                buy = gr.Button(f"Subscribe to {plan.name}", variant="primary", interactive=can_buy)
                buy.click(_buy_plan(services, shell, plan), [interval], [link], api_visibility="private")

    gr.Markdown("### Credit packs")
    best_pack = best_value(pricing.packs)
    with gr.Row(equal_height=True):
        for pack in pricing.packs:
            with gr.Column(variant="panel", min_width=180):
                gr.Markdown(pack_card(pack, catalog, best=pack is best_pack))
                buy = gr.Button(f"Buy {pack.credits:,} credits", interactive=can_buy)
                buy.click(_buy_pack(services, shell, pack), None, [link], api_visibility="private")

    @user_facing
    def show_interval(value: str):
        return plan_cards(pricing, value, catalog)

    @user_facing
    def render(request: gr.Request):
        user = shell.user(request)
        plan = billing.current_plan(user.id) if can_buy else None
        return plan_status(plan, enabled=can_buy), "", gr.update(visible=plan is not None)

    @user_facing
    def manage(request: gr.Request):
        url = billing.create_portal(user=shell.user(request))
        return checkout_link(url, "Open the subscription portal")

    interval.change(show_interval, [interval], cards, api_visibility="private")
    manage_btn.click(manage, None, [link], api_visibility="private")
    shell.on_show(render, [], [status, link, manage_btn])


def _buy_plan(services: Services, shell: Shell, plan: Plan):
    @user_facing
    def buy(interval: str, request: gr.Request):
        user = shell.user(request)
        product = plan.product(interval if interval in ("month", "year") else "month")
        url = services.billing.create_checkout(user=user, product=product.key)
        per = "year" if product.interval == "year" else "month"
        return checkout_link(url, f"Continue to checkout: {plan.name}, {product.display_price} a {per}")

    return buy


def _buy_pack(services: Services, shell: Shell, pack: Product):
    @user_facing
    def buy(request: gr.Request):
        url = services.billing.create_checkout(user=shell.user(request), product=pack.key)
        return checkout_link(url, f"Continue to checkout: {pack.name}, {pack.display_price}")

    return buy
