"""The Gradio UI: a header with the balance, one tab per module, a footer with terms and support."""

from __future__ import annotations

import html

import gradio as gr

from services.container import Services
from ui import account, admin, compare, gallery, generate, pricing
from ui.common import Shell, user_facing
from ui.web import SESSION_COOKIE, footer_html

TAB_IDS = {"generate", "compare", "gallery", "pricing", "account"}  # the admin tab is opened by hand


def build_ui(services: Services) -> gr.Blocks:
    shell = Shell(services)
    # delete_cache: whatever Gradio caches (none of our images: they go through /images/...) goes after a day.
    with gr.Blocks(title="Image Studio", analytics_enabled=False, delete_cache=(3600, 86400)) as demo:
        with gr.Row(elem_classes="studio-header"):
            gr.Markdown("## ◐ Image Studio", elem_classes="studio-brand")
            user_html = gr.HTML(elem_classes="studio-user")
            shell.balance = gr.Markdown(elem_classes="studio-balance")
        if not services.settings.use_openai:
            gr.HTML('<span class="offline-badge">Offline preview engine: images are generated locally as '
                    "previews, not by GPT Image. Set OPENAI_API_KEY to use GPT Image.</span>")
        loaders = []

        def tab(label: str, build, **needs):
            """One tab: build it, passing what it needs explicitly; its on_show loaders run when it is selected."""
            with gr.Tab(label, id=label.lower()) as block:
                first = len(shell.tab_loaders)
                built = build(services, shell, **needs)
                for fn, inputs, outputs in shell.tab_loaders[first:]:
                    block.select(fn, inputs, outputs, api_visibility="private")
                    loaders.append((fn, inputs, outputs))
            return built

        with gr.Tabs(overflow_behavior="wrap") as tabs:
            form = tab("Generate", generate.build, tabs=tabs, tab_id="generate")
            tab("Compare", compare.build, form=form, tabs=tabs)
            tab("Gallery", gallery.build, form=form, tabs=tabs)
            tab("Pricing", pricing.build)
            tab("Account", account.build)
            # Shown to admins by the header's load; its events are refused to anyone else (services/admin.py).
            with gr.Tab("Admin", id="admin", visible=False) as admin_tab:
                admin.build(services, shell, tab=admin_tab)
        gr.HTML(footer_html(services), elem_classes="studio-footer")

        @user_facing
        def header(request: gr.Request):
            user = shell.user(request)
            session_token = request.cookies.get(SESSION_COOKIE) if request else None
            role = " (admin)" if user.is_admin else ""
            params = dict(request.query_params) if request else {}
            tab = params.get("tab", "").lower()
            if params.get("paid") == "1":
                gr.Info("Thank you! Your payment was received and your credits are on your account.")
                tab = tab or "account"
            return (
                f'{html.escape(user.email)}{role} · <form method="post" action="/logout">'
                f'<input type="hidden" name="csrf" value="{services.accounts.sign_out_proof(session_token)}">'
                f'<button type="submit">Sign out</button></form>',
                shell.balance_text(user.id),
                gr.Tabs(selected=tab) if tab in TAB_IDS else gr.Tabs(),
                gr.Tab(visible=user.is_admin),
            )

        demo.load(header, None, [user_html, shell.balance, tabs, admin_tab], api_visibility="private")
        for fn, inputs, outputs in loaders:
            demo.load(fn, inputs, outputs, api_visibility="private")
    return demo
