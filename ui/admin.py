"""The Admin tab (shown to admins only) and its CSV export route.

Hiding the tab is only for the eye: every event calls services/admin.py, which checks the role of
the user behind the request, in the database, on every call. The CSV route (/admin/export/…) serves
one of the service's named tables, never a path from the request.
"""

from __future__ import annotations

import html
import re
from urllib.parse import quote

import gradio as gr
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from services import i18n
from services.container import Services
from services.errors import DomainError
from services.ledger.reads import CREDIT_KIND_LABELS, credit_label
from ui.common import Shell, language_of, tr, user_facing

EXPORT_PATH = "/admin/export"


def export_link(name: str, label: str, query: str = "") -> str:
    q = f"?q={quote(query)}" if query else ""
    return f'<a class="admin-export" href="{EXPORT_PATH}/{name}.csv{q}" download>{html.escape(label)}</a>'


def build(services: Services, shell: Shell, *, tab: gr.Tab) -> None:
    admin = services.admin
    overview = gr.Markdown()
    with gr.Accordion(shell.text("ui.admin.members"), open=True):
        with gr.Row():
            search = gr.Textbox(label=shell.text("ui.admin.search"), scale=4)
            search_btn = gr.Button(shell.text("ui.gallery.search_go"), scale=1)
        members = gr.Dataframe(interactive=False, wrap=True, label=shell.text("ui.admin.members"))
        members_csv = gr.HTML(shell.words("ui.admin.csv.members", lambda lang: export_link("members", i18n.t(lang, "admin.csv_members"))))
        with gr.Row():
            email = gr.Textbox(label=shell.text("ui.admin.member_email"), scale=3)
            # precision=None: precision=0 would round 1.5 to 2 before the service could refuse it.
            amount = gr.Number(label=shell.text("ui.admin.credits"), value=100, precision=None, minimum=1, scale=1)
            note = gr.Textbox(label=shell.text("ui.admin.note"), scale=2)
        with gr.Row():
            grant_btn = gr.Button(shell.text("ui.admin.grant"), variant="primary")
            take_btn = gr.Button(shell.text("ui.admin.take_back"))
            disable_btn = gr.Button(shell.text("ui.admin.disable"), variant="stop")
            enable_btn = gr.Button(shell.text("ui.admin.enable"))
        result = gr.Markdown()
    with gr.Accordion(shell.text("ui.admin.invitations"), open=False):
        with gr.Row():
            invite_email = gr.Textbox(label=shell.text("ui.admin.invite_email"), scale=3)
            invite_days = gr.Number(label=shell.text("ui.admin.invite_days"), value=services.settings.invite_days, precision=None,
                                    minimum=1, maximum=365, scale=1)
            invite_btn = gr.Button(shell.text("ui.admin.invite"), variant="primary", scale=1)
        invite_link = gr.Textbox(label=shell.text("ui.admin.invite_link"), visible=False,
                                 buttons=["copy"], interactive=False)
        invites = gr.Dataframe(interactive=False, label=shell.text("ui.admin.invitations"))
    with gr.Accordion(shell.text("ui.admin.usage"), open=False):
        usage_daily = gr.Dataframe(interactive=False, label=shell.text("ui.admin.usage_daily"))
        gr.HTML(shell.words("ui.admin.csv.usage_daily", lambda lang: export_link("usage_daily", i18n.t(lang, "admin.csv"))))
        usage = gr.Dataframe(interactive=False, label=shell.text("ui.admin.usage_kind"))
        gr.HTML(shell.words("ui.admin.csv.usage", lambda lang: export_link("usage", i18n.t(lang, "admin.csv"))))
        rejections = gr.Dataframe(headers=REJECTION_HEADERS, interactive=False,
                                  wrap=True, label=shell.text("ui.admin.rejections"))
    with gr.Accordion(shell.text("ui.admin.money"), open=False):
        gr.Markdown(shell.text("ui.admin.money_note"))
        money_daily = gr.Dataframe(interactive=False, label=shell.text("ui.admin.money_daily"))
        gr.HTML(shell.words("ui.admin.csv.money_daily", lambda lang: export_link("money_daily", i18n.t(lang, "admin.csv"))))
        money_plans = gr.Dataframe(interactive=False, label=shell.text("ui.admin.money_plans"))
        gr.HTML(shell.words("ui.admin.csv.money_plans", lambda lang: export_link("money_plans", i18n.t(lang, "admin.csv"))))

    def frame(table, language: str | None = None) -> dict:
        """A console table as shown: its headers in the page's language (the CSV keeps them in English)."""
        return gr.Dataframe(value=table.rows, headers=[header_text(h, language) for h in table.headers])

    def members_view(actor, query: str, language: str | None = None):
        table = admin.members(actor=actor, query=query or "")
        return frame(table, language), export_link("members", i18n.t(language, "admin.csv_members"), (query or "").strip())

    @user_facing
    def admin_load(query: str, request: gr.Request):
        actor = shell.user(request)
        o = admin.overview(actor=actor)
        language = language_of(request)
        text = i18n.t(language, "admin.overview", users=o.users, generations=o.generations_24h, failed=o.failed_24h,
                      rejections=o.rejections_24h)
        table, link = members_view(actor, query, language)
        per_kind, per_day = admin.usage(actor=actor)
        daily, plans = admin.money(actor=actor)
        refused = gr.Dataframe(value=[[f"{e.created_at:%Y-%m-%d %H:%M}", who, e.source, e.prompt[:200]]
                                      for e, who in admin.recent_rejections(actor=actor, limit=50)],
                               headers=[header_text(h, language) for h in REJECTION_HEADERS])
        return (text, table, link, frame(admin.invites(actor=actor), language), frame(per_day, language),
                frame(per_kind, language), refused, frame(daily, language), frame(plans, language))

    @user_facing
    def admin_search(query: str, request: gr.Request):
        return members_view(shell.user(request), query, language_of(request))

    @user_facing
    def admin_grant(member: str, credits, text: str, request: gr.Request):
        actor = shell.user(request)
        # the service refuses what is not a whole number (1.5, None), never rounds it
        balance = admin.grant_credits(actor=actor, email=member, amount=credits, note=text)
        language = language_of(request)
        shown_note = i18n.t(language, "admin.note_shown", note=html.escape(text.strip())) if text and text.strip() else ""
        return i18n.t(language, "admin.granted", label=credit_label("admin", language), credits=int(credits),
                      note=shown_note, email=html.escape(member.strip().lower()), balance=balance)

    @user_facing
    def admin_take_back(member: str, credits, text: str, request: gr.Request):
        actor = shell.user(request)
        taken, balance = admin.take_back_credits(actor=actor, email=member, amount=credits, note=text)
        asked = int(credits)
        language = language_of(request)
        short = i18n.t(language, "admin.asked", asked=asked) if taken < asked else ""
        return i18n.t(language, "admin.taken", taken=taken, short=short, email=html.escape(member.strip().lower()),
                      balance=balance)

    @user_facing
    def admin_disable(member: str, request: gr.Request):
        user = admin.set_disabled(actor=shell.user(request), email=member, disabled=True)
        return tr(request, "admin.disabled", email=html.escape(user.email))

    @user_facing
    def admin_enable(member: str, request: gr.Request):
        user = admin.set_disabled(actor=shell.user(request), email=member, disabled=False)
        return tr(request, "admin.enabled", email=html.escape(user.email))

    @user_facing
    def admin_invite(for_email: str, days, request: gr.Request):
        actor = shell.user(request)
        invite = admin.create_invite(actor=actor, email=for_email or None, days=days)
        return gr.Textbox(value=invite.url, visible=True), frame(admin.invites(actor=actor), language_of(request))

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


REJECTION_HEADERS = ["Date (UTC)", "User", "Source", "Prompt"]
_KIND_OF_LABEL = {label: kind for kind, label in CREDIT_KIND_LABELS.items()}


def header_text(header: str, language: str | None) -> str:
    """A console table's column name (services/admin.py names them in English) in the language:
    "admin.col.<name>", a credit kind's label, "Revenue (USD)" with its currency; else as it is."""
    if language in (None, i18n.FALLBACK):
        return header
    if header in _KIND_OF_LABEL:
        return i18n.t(language, f"credit.kind.{_KIND_OF_LABEL[header]}")
    revenue = re.fullmatch(r"Revenue \((.+)\)", header)
    if revenue:
        return i18n.t(language, "admin.col.revenue", currency=revenue.group(1))
    key = "admin.col." + re.sub(r"[^a-z0-9]+", "_", header.lower()).strip("_")
    return i18n.t(language, key) if key in i18n.messages(i18n.FALLBACK) else header
