"""The Gradio UI: a header with the balance, one tab per module, a footer with terms and support."""

from __future__ import annotations

import html

import gradio as gr

from services import i18n
from services.container import Services
from ui import account, admin, compare, gallery, generate, pricing
from ui.common import Shell, language_of, tr, user_facing
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
            gr.Markdown(shell.text("ui.offline_badge"), elem_classes="offline-badge")
        loaders = []

        def tab(label: str, build, **needs):
            """One tab: build it, passing what it needs explicitly; its on_show loaders run when it is selected."""
            with gr.Tab(shell.text(f"ui.tab.{label.lower()}"), id=label.lower()) as block:
                first = len(shell.tab_loaders)
                built = build(services, shell, **needs)
                for fn, inputs, outputs in shell.tab_loaders[first:]:
                    # show_progress hidden: a tab's refresh is quick, and Gradio's "processing" is not translated
                    block.select(fn, inputs, outputs, api_visibility="private", show_progress="hidden")
                    loaders.append((fn, inputs, outputs))
            return built

        with gr.Tabs(overflow_behavior="wrap") as tabs:
            form = tab("Generate", generate.build, tabs=tabs, tab_id="generate")
            tab("Compare", compare.build, form=form, tabs=tabs)
            tab("Gallery", gallery.build, form=form, tabs=tabs)
            tab("Pricing", pricing.build)
            tab("Account", account.build)
            # Shown to admins by the header's load; its events are refused to anyone else (services/admin.py).
            with gr.Tab(shell.text("ui.tab.admin"), id="admin", visible=False) as admin_tab:
                admin.build(services, shell, tab=admin_tab)
        footer = gr.HTML(footer_html(services), elem_classes="studio-footer")

        @user_facing
        def header(request: gr.Request):
            user = shell.user(request)
            session_token = request.cookies.get(SESSION_COOKIE) if request else None
            role = tr(request, "ui.header.admin") if user.is_admin else ""
            params = dict(request.query_params) if request else {}
            tab = params.get("tab", "").lower()
            if params.get("paid") == "1":
                gr.Info(tr(request, "payment.thanks"))
                tab = tab or "account"
            language = language_of(request)
            switch = " · ".join(
                f'<a class="language-link" lang="{tag}" href="/language/{tag}?next=/">{html.escape(name)}</a>'
                for tag, name in i18n.LANGUAGES.items() if tag != language)
            return (
                f'{html.escape(user.email)}{role} · {switch} · <form method="post" action="/logout">'
                f'<input type="hidden" name="csrf" value="{services.accounts.sign_out_proof(session_token)}">'
                f'<button type="submit">{html.escape(tr(request, "ui.header.sign_out"))}</button></form>',
                shell.balance_text(user.id, request=request),
                gr.Tabs(selected=tab) if tab in TAB_IDS else gr.Tabs(),
                gr.Tab(visible=user.is_admin),
                footer_html(services, language),
            )

        demo.load(header, None, [user_html, shell.balance, tabs, admin_tab, footer], api_visibility="private",
                  show_progress="hidden")
        for fn, inputs, outputs in loaders:
            demo.load(fn, inputs, outputs, api_visibility="private", show_progress="hidden")
    demo.i18n_instance = shell.translations()  # what mount_gradio_app(i18n=...) sets
    return demo
