"""The Admin tab (shown to admins only) and its CSV export route.

Hiding the tab is only for the eye: every event calls services/admin.py, which checks the role of
the user behind the request, in the database, on every call. The CSV route (/admin/export/…) serves
one of the service's named tables, never a path from the request.
"""

from __future__ import annotations

import html
from urllib.parse import quote

import gradio as gr
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from models.ledger import CREDIT_KIND_LABELS
from services.container import Services
from services.errors import DomainError
from ui.common import Shell, user_facing

EXPORT_PATH = "/admin/export"


def export_link(name: str, label: str, query: str = "") -> str:
    q = f"?q={quote(query)}" if query else ""
    return f'<a class="admin-export" href="{EXPORT_PATH}/{name}.csv{q}" download>{html.escape(label)}</a>'


def build(services: Services, shell: Shell, *, tab: gr.Tab) -> None:
    admin = services.admin
    overview = gr.Markdown()
    with gr.Accordion("Members", open=True):
        with gr.Row():
            search = gr.Textbox(label="Search by email", scale=4)
            search_btn = gr.Button("Search", scale=1)
        members = gr.Dataframe(interactive=False, wrap=True, label="Members")
        members_csv = gr.HTML(export_link("members", "Download members (CSV)"))
        with gr.Row():
            email = gr.Textbox(label="Member email", scale=3)
            # precision=None: precision=0 would round 1.5 to 2 before the service could refuse it.
            amount = gr.Number(label="Credits", value=100, precision=None, minimum=1, scale=1)
            note = gr.Textbox(label="Note (kept in the ledger)", scale=2)
        with gr.Row():
            grant_btn = gr.Button("Grant credits", variant="primary")
            take_btn = gr.Button("Take back credits")
            disable_btn = gr.Button("Disable member", variant="stop")
            enable_btn = gr.Button("Enable member")
        result = gr.Markdown()
    with gr.Accordion("Invitations", open=False):
        with gr.Row():
            invite_email = gr.Textbox(label="Only for this email (optional)", scale=3)
            invite_days = gr.Number(label="Valid for (days)", value=services.settings.invite_days, precision=None,
                                    minimum=1, maximum=365, scale=1)
            invite_btn = gr.Button("Create invitation link", variant="primary", scale=1)
        invite_link = gr.Textbox(label="Invitation link (single use; copy it now)", visible=False,
                                 buttons=["copy"], interactive=False)
        invites = gr.Dataframe(interactive=False, label="Invitations")
    with gr.Accordion("Usage (last 30 days)", open=False):
        usage_daily = gr.Dataframe(interactive=False, label="Per day: failures, refunds, moderation refusals")
        gr.HTML(export_link("usage_daily", "Download (CSV)"))
        usage = gr.Dataframe(interactive=False, label="Generations per day by resolution and engine")
        gr.HTML(export_link("usage", "Download (CSV)"))
        rejections = gr.Dataframe(headers=["Date (UTC)", "User", "Source", "Prompt"], interactive=False,
                                  wrap=True, label="Recent moderation refusals")
    with gr.Accordion("Money (last 30 days)", open=False):
        gr.Markdown("Revenue as Stripe recorded it at fulfilment (refunds negative); provider cost estimated "
                    "from each generation's token usage and `PROVIDER_PRICES`.")
        money_daily = gr.Dataframe(interactive=False, label="Margin per day")
        gr.HTML(export_link("money_daily", "Download (CSV)"))
        money_plans = gr.Dataframe(interactive=False, label="Margin per plan (members' current plan)")
        gr.HTML(export_link("money_plans", "Download (CSV)"))

    def frame(table) -> dict:
        return gr.Dataframe(value=table.rows, headers=table.headers)

    def members_view(actor, query: str):
        table = admin.members(actor=actor, query=query or "")
        return frame(table), export_link("members", "Download members (CSV)", (query or "").strip())

    @user_facing
    def admin_load(query: str, request: gr.Request):
        actor = shell.user(request)
        o = admin.overview(actor=actor)
        text = (f"**{o.users}** members · last 24 h: **{o.generations_24h}** generations, "
                f"{o.failed_24h} failed (not charged), {o.rejections_24h} moderation refusals")
        table, link = members_view(actor, query)
        per_kind, per_day = admin.usage(actor=actor)
        daily, plans = admin.money(actor=actor)
        refused = [[f"{e.created_at:%Y-%m-%d %H:%M}", who, e.source, e.prompt[:200]]
                   for e, who in admin.recent_rejections(actor=actor, limit=50)]
        return (text, table, link, frame(admin.invites(actor=actor)), frame(per_day), frame(per_kind), refused,
                frame(daily), frame(plans))

    @user_facing
    def admin_search(query: str, request: gr.Request):
        return members_view(shell.user(request), query)

    @user_facing
    def admin_grant(member: str, credits, text: str, request: gr.Request):
        actor = shell.user(request)
        # the service refuses what is not a whole number (1.5, None), never rounds it
        balance = admin.grant_credits(actor=actor, email=member, amount=credits, note=text)
        shown_note = f" · note: {html.escape(text.strip())}" if text and text.strip() else ""
        return (f"{CREDIT_KIND_LABELS['admin']}: **{int(credits)}** credits{shown_note}. "
                f"{html.escape(member.strip().lower())} now has **{balance}** credits.")

    @user_facing
    def admin_take_back(member: str, credits, text: str, request: gr.Request):
        actor = shell.user(request)
        taken, balance = admin.take_back_credits(actor=actor, email=member, amount=credits, note=text)
        asked = int(credits)
        short = f" (asked {asked}: the balance never goes below zero)" if taken < asked else ""
        return (f"Took back **{taken}** credits{short}. {html.escape(member.strip().lower())} now has "
                f"**{balance}** credits.")

    @user_facing
    def admin_disable(member: str, request: gr.Request):
        user = admin.set_disabled(actor=shell.user(request), email=member, disabled=True)
        return (f"{html.escape(user.email)} is disabled: signed out everywhere, API keys revoked; "
                "sign-in and the API refuse them.")

    @user_facing
    def admin_enable(member: str, request: gr.Request):
        user = admin.set_disabled(actor=shell.user(request), email=member, disabled=False)
        return f"{html.escape(user.email)} is enabled again (they sign in anew and create new API keys)."

    @user_facing
    def admin_invite(for_email: str, days, request: gr.Request):
        actor = shell.user(request)
        invite = admin.create_invite(actor=actor, email=for_email or None, days=days)
        return gr.Textbox(value=invite.url, visible=True), frame(admin.invites(actor=actor))

    load_outputs = [overview, members, members_csv, invites, usage_daily, usage, rejections, money_daily,
                    money_plans]
    # Loaded when an admin opens the tab (a member never sees it; if they call it, the service refuses).
    tab.select(admin_load, [search], load_outputs, api_name="admin_load", api_visibility="private")
    # result.change: after a grant, take-back, disable or enable, the members table shows it
    gr.on([search_btn.click, search.submit, result.change], admin_search, [search], [members, members_csv], api_name="admin_search",
          api_visibility="private")
    grant_btn.click(admin_grant, [email, amount, note], [result], api_name="admin_grant", api_visibility="private")
    take_btn.click(admin_take_back, [email, amount, note], [result], api_name="admin_take_back",
                   api_visibility="private")
    disable_btn.click(admin_disable, [email], [result], api_name="admin_disable", api_visibility="private")
    enable_btn.click(admin_enable, [email], [result], api_name="admin_enable", api_visibility="private")
    invite_btn.click(admin_invite, [invite_email, invite_days], [invite_link, invites], api_name="admin_invite",
                     api_visibility="private")


def routes(services: Services) -> APIRouter:
    """GET /admin/export/{table}.csv: one console table as CSV, for an admin (session or API key)."""
    from ui.web import authenticate

    router = APIRouter()

    @router.get(EXPORT_PATH + "/{name}.csv", include_in_schema=False)
    def export(name: str, request: Request, q: str = ""):
        user = authenticate(services, request)
        if user is None:
            return JSONResponse({"detail": "Not authenticated"}, status_code=401)
        try:
            body = services.admin.table_csv(actor=user, name=name, query=q)
        except DomainError as err:
            return JSONResponse({"detail": err.message}, status_code=err.status_code)
        return Response(body, media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="{name}.csv"', "Cache-Control": "no-store"})

    return router
