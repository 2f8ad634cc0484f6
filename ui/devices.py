"""Account tab: signed-in devices (sign one out, or every other one), sign-in methods (linked
providers with unlink, "Link …" buttons) and the email verification status.

Each handler takes the user from the authenticated request and the current session from its
cookie; the service re-checks that a session or provider belongs to that user."""

from __future__ import annotations

import html

import gradio as gr

from services.container import Services
from ui.common import Shell, user_facing
from ui.web import SESSION_COOKIE

DEVICE_COLUMNS = ["Device (approximate)", "Signed in (UTC)", "Last seen (UTC)", ""]
PROVIDER_COLUMNS = ["Provider", "Email", "Linked (UTC)"]


def _when(dt) -> str:
    return dt.strftime("%Y-%m-%d %H:%M") if dt else "—"


def _session_token(request: gr.Request) -> str | None:
    return request.cookies.get(SESSION_COOKIE) if request is not None else None


def build(services: Services, shell: Shell) -> None:
    accounts = services.accounts
    labels = {p.name: p.label for p in accounts.oidc_providers()}
    with gr.Accordion(Shell.text("ui.devices.title"), open=False):
        devices = gr.Dataframe(headers=DEVICE_COLUMNS, interactive=False, wrap=True)
        with gr.Row():
            device_choice = gr.Dropdown(label=Shell.text("ui.devices.choice"), choices=[], scale=3)
            sign_out_btn = gr.Button(Shell.text("ui.devices.sign_out"), variant="stop", scale=1)
        sign_out_others_btn = gr.Button(Shell.text("ui.devices.sign_out_others"), variant="secondary")
        devices_note = gr.Markdown()
    with gr.Accordion(Shell.text("ui.devices.methods"), open=False):
        methods_md = gr.Markdown()
        providers = gr.Dataframe(headers=PROVIDER_COLUMNS, interactive=False)
        with gr.Row():
            unlink_choice = gr.Dropdown(label=Shell.text("ui.devices.unlink_choice"), choices=[], scale=3)
            unlink_btn = gr.Button(Shell.text("ui.devices.unlink"), variant="stop", scale=1)
        link_html = gr.HTML()
        resend_btn = gr.Button(Shell.text("ui.devices.resend"), visible=False)

    @user_facing
    def render_devices(request: gr.Request):
        user = shell.user(request)
        rows, choices = [], []
        for d in accounts.list_sessions(user_id=user.id, current_token=_session_token(request)):
            rows.append([d.device, _when(d.created_at), _when(d.last_seen_at), "this device" if d.current else ""])
            if not d.current:
                choices.append((f"{d.device}, signed in {_when(d.created_at)}", d.id))
        return rows, gr.Dropdown(choices=choices, value=None)

    @user_facing
    def sign_out_device(session_id, request: gr.Request):
        user = shell.user(request)
        try:
            session_id = int(session_id)
        except (TypeError, ValueError):
            raise gr.Error("Choose a device to sign out.") from None
        accounts.revoke_session(user_id=user.id, session_id=session_id)
        rows, dropdown = render_devices(request)
        return rows, dropdown, "That device is signed out."

    @user_facing
    def sign_out_others(request: gr.Request):
        user = shell.user(request)
        count = accounts.revoke_other_sessions(user_id=user.id, current_token=_session_token(request))
        rows, dropdown = render_devices(request)
        return rows, dropdown, f"Signed out everywhere else ({count} session{'s' if count != 1 else ''})."

    @user_facing
    def render_methods(request: gr.Request):
        user = shell.user(request)
        linked = accounts.list_identities(user_id=user.id)
        rows = [[labels.get(i.provider, i.provider), i.email or "—", _when(i.created_at)] for i in linked]
        choices = [(f"{labels.get(i.provider, i.provider)} ({i.email or i.subject[:12]})", i.id) for i in linked]
        ways = ((["a password"] if user.password_hash else [])
                + sorted({labels.get(i.provider, i.provider) for i in linked})) or ["no sign-in method"]
        verified = ("Your email address is verified." if user.email_verified_at else
                    "Your email address is not verified yet." + (
                        " Open the link we sent you" + (" to receive your free trial credits."
                                                        if services.settings.trial_requires_verified_email else ".")
                        if services.settings.mail_configured else ""))
        text = f"You sign in with {', '.join(ways[:-1]) + ' and ' if len(ways) > 1 else ''}{ways[-1]}. {verified}"
        proof = html.escape(accounts.link_proof(_session_token(request)))
        linked_names = {i.provider for i in linked}
        forms = "".join(
            f'<form method="post" action="/auth/oidc/{html.escape(p.name)}/link" style="display:inline-block;'
            f'margin:4px 8px 4px 0"><input type="hidden" name="csrf" value="{proof}">'
            f'<button type="submit">Link {html.escape(p.label)}</button></form>'
            for p in accounts.oidc_providers() if p.name not in linked_names)
        resend = gr.Button(visible=services.settings.mail_configured and user.email_verified_at is None)
        return text, rows, gr.Dropdown(choices=choices, value=None), forms, resend

    @user_facing
    def unlink(identity_id, request: gr.Request):
        user = shell.user(request)
        try:
            identity_id = int(identity_id)
        except (TypeError, ValueError):
            raise gr.Error("Choose a provider to unlink.") from None
        accounts.unlink_identity(user_id=user.id, identity_id=identity_id)
        return render_methods(request)

    @user_facing
    def resend(request: gr.Request):
        user = shell.user(request)
        accounts.resend_verification(user_id=user.id, verify_url=f"{services.settings.base_url}/verify-email",
                                     ip=request.client.host if request.client else None)
        gr.Info(f"A new verification link is on its way to {user.email}.")

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
