"""Pricing tab: plans (monthly/annual toggle with the saving), credit packs, the user's plan,
Buy → a link to Stripe's hosted checkout, Manage subscription → a link to the Customer Portal."""

from __future__ import annotations

import html

import gradio as gr

from services.billing import CurrentPlan
from services.catalog import Catalog
from services.container import Services
from services.pricing import Plan, Pricing, Product, format_money
from ui.common import Shell, user_facing

INTERVALS = [("Monthly", "month"), ("Annual", "year")]
# The offer's rules in words, shown on this tab and on the public /pricing page (ui/web.py).
PLAN_CREDITS_RULE = "Plan credits refresh at the start of each billing cycle; unused plan credits do not roll over."
PACK_CREDITS_RULE = "Pack credits never expire."


def image_costs(catalog: Catalog) -> str:
    """What one image costs at each resolution, from assets/catalog.json: "1K: 10 credits · 2K: 20 credits"."""
    return " · ".join(f"{r.label}: {r.price} credit{'' if r.price == 1 else 's'}" for r in catalog.resolutions)


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


def plan_card(plan: Plan, interval: str) -> str:
    product = plan.product(interval)
    lines = [f"### {plan.name}"]
    if product.interval == "year":
        twelve = format_money(plan.monthly.unit_amount * 12, product.currency)
        lines += [
            f"**{product.display_price}** a year  ",
            f"~~{twelve}~~ · **save {plan.annual_saving_percent}%** · {plan.annual_monthly_equivalent} a month",
            f"\n{product.credits:,} credits a year ({plan.credits_per_month:,} a month)",
        ]
    else:
        lines += [f"**{product.display_price}** a month", f"\n{product.credits:,} credits a month"]
    if plan.description:
        lines.append(f"\n{plan.description}")
    return "\n".join(lines)


def pack_card(pack: Product) -> str:
    text = f"### {pack.name}\n**{pack.display_price}** once\n\n{pack.credits:,} credits, never expire"
    return text + (f"\n\n{pack.description}" if pack.description else "")


def plan_status(plan: CurrentPlan | None, *, enabled: bool) -> str:
    if not enabled:
        return "Payments are not configured on this instance: you can see the offer, but not buy yet."
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
    billing = services.billing

    gr.Markdown(headline(pricing, services.catalog))
    with gr.Row():
        status = gr.Markdown()
        manage_btn = gr.Button("Manage subscription", size="sm", scale=0)
    link = gr.HTML()

    interval = gr.Radio(
        [(f"{label} — save {max((p.annual_saving_percent for p in pricing.plans), default=0)}%"
          if value == "year" else label, value) for label, value in INTERVALS],
        value="month", label="Billing", container=False,
    )
    plan_cards: list[gr.Markdown] = []
    with gr.Row(equal_height=True):
        for plan in pricing.plans:
            with gr.Column(variant="panel", min_width=220):
                plan_cards.append(gr.Markdown(plan_card(plan, "month")))
                buy = gr.Button(f"Subscribe to {plan.name}", variant="primary")
                buy.click(_buy_plan(services, shell, plan), [interval], [link], api_visibility="private")

    gr.Markdown("### Credit packs")
    with gr.Row(equal_height=True):
        for pack in pricing.packs:
            with gr.Column(variant="panel", min_width=180):
                gr.Markdown(pack_card(pack))
                buy = gr.Button(f"Buy {pack.credits:,} credits")
                buy.click(_buy_pack(services, shell, pack), None, [link], api_visibility="private")

    @user_facing
    def show_interval(value: str):
        return [plan_card(plan, value) for plan in pricing.plans]

    @user_facing
    def render(request: gr.Request):
        user = shell.user(request)
        return plan_status(billing.current_plan(user.id), enabled=billing.enabled), ""

    @user_facing
    def manage(request: gr.Request):
        url = billing.create_portal(user=shell.user(request))
        return checkout_link(url, "Open the subscription portal")

    interval.change(show_interval, [interval], plan_cards, api_visibility="private")
    manage_btn.click(manage, None, [link], api_visibility="private")
    shell.on_show(render, [], [status, link])


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
