"""Account tab: signed-in devices (sign one out, or every other one), sign-in methods (linked
providers with unlink, "Link …" buttons) and the email verification status.

Each handler takes the user from the authenticated request and the current session from its
cookie; the service re-checks that a session or provider belongs to that user."""

from __future__ import annotations

import html

import gradio as gr

from services import i18n
from services.container import Services
from ui.common import Shell, language_of, tr, user_facing
from ui.web import SESSION_COOKIE

DEVICE_COLUMNS = ["devices.column.device", "devices.column.signed_in", "devices.column.last_seen", ""]
PROVIDER_COLUMNS = ["devices.column.provider", "devices.column.email", "devices.column.linked"]


def columns(keys: list[str], language: str | None = None) -> list[str]:
    return [i18n.t(language, key) if key else "" for key in keys]


def _when(dt) -> str:
    return dt.strftime("%Y-%m-%d %H:%M") if dt else "—"


def _session_token(request: gr.Request) -> str | None:
    return request.cookies.get(SESSION_COOKIE) if request is not None else None


def build(services: Services, shell: Shell) -> None:
    accounts = services.accounts
    labels = {p.name: p.label for p in accounts.oidc_providers()}
    with gr.Accordion(Shell.text("ui.devices.title"), open=False):
        devices = gr.Dataframe(headers=columns(DEVICE_COLUMNS), interactive=False, wrap=True)
        with gr.Row():
            device_choice = gr.Dropdown(label=Shell.text("ui.devices.choice"), choices=[], scale=3)
            sign_out_btn = gr.Button(Shell.text("ui.devices.sign_out"), variant="stop", scale=1)
        sign_out_others_btn = gr.Button(Shell.text("ui.devices.sign_out_others"), variant="secondary")
        devices_note = gr.Markdown()
    with gr.Accordion(Shell.text("ui.devices.methods"), open=False):
        methods_md = gr.Markdown()
        providers = gr.Dataframe(headers=columns(PROVIDER_COLUMNS), interactive=False)
        with gr.Row():
            unlink_choice = gr.Dropdown(label=Shell.text("ui.devices.unlink_choice"), choices=[], scale=3)
            unlink_btn = gr.Button(Shell.text("ui.devices.unlink"), variant="stop", scale=1)
        link_html = gr.HTML()
        resend_btn = gr.Button(Shell.text("ui.devices.resend"), visible=False)

    @user_facing
    def render_devices(request: gr.Request):
        user = shell.user(request)
        language = language_of(request)
        rows, choices = [], []
        for d in accounts.list_sessions(user_id=user.id, current_token=_session_token(request)):
            rows.append([d.device, _when(d.created_at), _when(d.last_seen_at),
                         i18n.t(language, "devices.this_device") if d.current else ""])
            if not d.current:
                choices.append((i18n.t(language, "devices.choice", device=d.device, when=_when(d.created_at)), d.id))
        return ({"headers": columns(DEVICE_COLUMNS, language), "data": rows},
                gr.Dropdown(choices=choices, value=None))

    @user_facing
    def sign_out_device(session_id, request: gr.Request):
        user = shell.user(request)
        try:
            session_id = int(session_id)
        except (TypeError, ValueError):
            raise gr.Error(tr(request, "devices.choose_device")) from None
        accounts.revoke_session(user_id=user.id, session_id=session_id)
        rows, dropdown = render_devices(request)
        return rows, dropdown, tr(request, "devices.signed_out")

    @user_facing
    def sign_out_others(request: gr.Request):
        user = shell.user(request)
        count = accounts.revoke_other_sessions(user_id=user.id, current_token=_session_token(request))
        rows, dropdown = render_devices(request)
        return rows, dropdown, tr(request, f"devices.signed_out_others_{'one' if count == 1 else 'other'}", count=count)

    @user_facing
    def render_methods(request: gr.Request):
        user = shell.user(request)
        language = language_of(request)

        def say(key: str, **params) -> str:
            return i18n.t(language, key, **params)

        linked = accounts.list_identities(user_id=user.id)
        rows = [[labels.get(i.provider, i.provider), i.email or "—", _when(i.created_at)] for i in linked]
        choices = [(f"{labels.get(i.provider, i.provider)} ({i.email or i.subject[:12]})", i.id) for i in linked]
        ways = (([say("devices.a_password")] if user.password_hash else [])
                + sorted({labels.get(i.provider, i.provider) for i in linked})) or [say("devices.no_method")]
        verified = (say("devices.verified") if user.email_verified_at else
                    say("devices.not_verified") + (
                        say("devices.open_link_trial" if services.settings.trial_requires_verified_email
                            else "devices.open_link")
                        if services.settings.mail_configured else ""))
        said = say("devices.and", first=say("devices.list_separator").join(ways[:-1]), last=ways[-1]) \
            if len(ways) > 1 else ways[-1]
        text = say("devices.sign_in_with", ways=said, verified=verified)
        proof = html.escape(accounts.link_proof(_session_token(request)))
        linked_names = {i.provider for i in linked}
        forms = "".join(
            f'<form method="post" action="/auth/oidc/{html.escape(p.name)}/link" style="display:inline-block;'
            f'margin:4px 8px 4px 0"><input type="hidden" name="csrf" value="{proof}">'
            f'<button type="submit">{html.escape(say("devices.link", provider=p.label))}</button></form>'
            for p in accounts.oidc_providers() if p.name not in linked_names)
        resend = gr.Button(visible=services.settings.mail_configured and user.email_verified_at is None)
        providers_table = {"headers": columns(PROVIDER_COLUMNS, language), "data": rows}
        return text, providers_table, gr.Dropdown(choices=choices, value=None), forms, resend

    @user_facing
    def unlink(identity_id, request: gr.Request):
        user = shell.user(request)
        try:
            identity_id = int(identity_id)
        except (TypeError, ValueError):
            raise gr.Error(tr(request, "devices.choose_provider")) from None
        accounts.unlink_identity(user_id=user.id, identity_id=identity_id)
        return render_methods(request)

    @user_facing
    def resend(request: gr.Request):
        user = shell.user(request)
        accounts.resend_verification(user_id=user.id, verify_url=f"{services.settings.base_url}/verify-email",
                                     ip=request.client.host if request.client else None)
        gr.Info(tr(request, "devices.resent", email=user.email))

    device_outputs = [devices, device_choice]
    method_outputs = [methods_md, providers, unlink_choice, link_html, resend_btn]
    sign_out_btn.click(sign_out_device, [device_choice], device_outputs + [devices_note],
                       api_name="sign_out_device", api_visibility="private")
    sign_out_others_btn.click(sign_out_others, None, device_outputs + [devices_note],
                              api_name="sign_out_other_devices", api_visibility="private")
    unlink_btn.click(unlink, [unlink_choice], method_outputs, api_name="unlink_provider", api_visibility="private")
    resend_btn.click(resend, None, None, api_name="resend_verification", api_visibility="private")
    shell.on_show(render_devices, [], device_outputs)
    shell.on_show(render_methods, [], method_outputs)
