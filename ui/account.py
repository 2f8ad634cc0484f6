"""Account tab: balance with its split, held credits, paginated history, API keys."""

from __future__ import annotations

import gradio as gr

from models.ledger import CREDIT_KIND_LABELS
from services.container import Services
from ui import devices
from ui.common import Shell, user_facing

HISTORY_COLUMNS = ["Date (UTC)", "What", "Change", "Balance"]
KEY_COLUMNS = ["Name", "Key", "Created (UTC)", "Last used (UTC)", "Status"]


def _when(dt) -> str:
    return dt.strftime("%Y-%m-%d %H:%M") if dt else "—"


def balance_markdown(b) -> str:
    """The Account tab's balance panel for a services.ledger.Balance."""
    lines = [f"## {b.total} credits available", ""]
    for kind in ("subscription", "trial", "admin", "pack"):
        amount = b.buckets.get(kind, 0)
        if not amount:
            continue
        label = CREDIT_KIND_LABELS[kind]
        if kind == "subscription" and b.subscription_expires_at:
            label += f" (until {b.subscription_expires_at:%Y-%m-%d})"
        lines.append(f"- {label}: **{amount}**")
    if b.held:
        lines.append(f"- Held by generations in progress: **{b.held}**")
    if b.next_expiry:
        lines.append(f"\nNext expiry: {b.next_expiry:%Y-%m-%d %H:%M} UTC")
    if b.total == 0 and not b.held:
        lines.append("You have no credits left. Buy a pack or a plan on the **Pricing** tab.")
    return "\n".join(lines)


def build(services: Services, shell: Shell) -> None:
    page = gr.State(1)
    balance_md = gr.Markdown()
    with gr.Accordion("History", open=True):
        history = gr.Dataframe(headers=HISTORY_COLUMNS, interactive=False, wrap=True)
        with gr.Row():
            prev_btn = gr.Button("← Newer", size="sm")
            page_label = gr.Markdown()
            next_btn = gr.Button("Older →", size="sm")
    with gr.Accordion("API keys", open=False):
        gr.Markdown(
            "Use a key as `Authorization: Bearer <key>`, e.g. "
            "`gradio_client.Client(url, headers={\"Authorization\": \"Bearer <key>\"})`. "
            "A key is shown once, when you create it."
        )
        with gr.Row():
            key_name = gr.Textbox(label="Name", placeholder="e.g. laptop script", max_length=100, scale=3)
            create_btn = gr.Button("Create key", variant="primary", scale=1)
        new_key = gr.Textbox(label="Your new key (copy it now: it will not be shown again)",
                             visible=False, buttons=["copy"], interactive=False)
        keys = gr.Dataframe(headers=KEY_COLUMNS, interactive=False)
        with gr.Row():
            revoke_choice = gr.Dropdown(label="Revoke a key", choices=[], scale=3)
            revoke_btn = gr.Button("Revoke", variant="stop", scale=1)

    devices.build(services, shell)  # signed-in devices, sign-in methods (ui/devices.py)
    with gr.Accordion("Administration", open=False, visible=False) as admin_box:
        admin_overview = gr.Markdown()
        with gr.Row():
            grant_email = gr.Textbox(label="User email", scale=3)
            # precision=None: precision=0 would round 1.5 to 2 before the handler could refuse it.
            grant_amount = gr.Number(label="Credits", value=100, precision=None, minimum=1, scale=1)
            grant_note = gr.Textbox(label="Note", scale=2)
            grant_btn = gr.Button("Grant credits", variant="primary", scale=1)
        grant_result = gr.Markdown()
        rejections = gr.Dataframe(headers=["Date (UTC)", "User", "Source", "Prompt"], interactive=False,
                                  wrap=True, label="Recent moderation rejections")

    @user_facing
    def render(page_no: int, request: gr.Request):
        user = shell.user(request)
        hist = services.ledger.history(user.id, page=max(1, int(page_no or 1)), per_page=20)
        balance = services.ledger.balance(user.id)
        rows = [[_when(r.at), r.what, f"{r.delta:+d}" if r.delta else "0", r.balance_after] for r in hist.rows]
        return (
            balance_markdown(balance),
            rows,
            f"Page {hist.page} of {max(1, hist.pages)}",
            hist.page,
            shell.balance_text(user.id, balance),
        )

    @user_facing
    def render_keys(request: gr.Request):
        user = shell.user(request)
        rows, choices = [], []
        for k in services.accounts.list_api_keys(user_id=user.id):
            status = "revoked" if k.revoked_at else "active"
            rows.append([k.name or "—", f"{k.prefix}…", _when(k.created_at), _when(k.last_used_at), status])
            if not k.revoked_at:
                choices.append((f"{k.name or 'unnamed'} ({k.prefix}…)", k.id))
        return rows, gr.Dropdown(choices=choices, value=None)

    @user_facing
    def create_key(name: str, request: gr.Request):
        user = shell.user(request)
        _, plaintext = services.accounts.create_api_key(user_id=user.id, name=name)
        rows, dropdown = render_keys(request)
        return gr.Textbox(value=plaintext, visible=True), rows, dropdown, ""

    @user_facing
    def revoke_key(key_id, request: gr.Request):
        user = shell.user(request)
        if key_id is None:
            raise gr.Error("Choose a key to revoke.")
        try:
            key_id = int(key_id)
        except (TypeError, ValueError):
            raise gr.Error("No such API key.") from None
        services.accounts.revoke_api_key(user_id=user.id, key_id=key_id)
        return render_keys(request)

    @user_facing
    def render_admin(request: gr.Request):
        user = shell.user(request)
        if not user.is_admin:
            return gr.Accordion(visible=False), "", []
        o = services.admin.overview(actor=user)
        text = (f"**{o.users}** users · last 24 h: **{o.generations_24h}** generations, "
                f"{o.failed_24h} failed (not charged), {o.rejections_24h} moderation rejections")
        rows = [[_when(e.created_at), email, e.source, e.prompt[:200]]
                for e, email in services.admin.recent_rejections(actor=user, limit=50)]
        return gr.Accordion(visible=True), text, rows

    @user_facing
    def admin_grant(email: str, amount, note: str, request: gr.Request):
        user = shell.user(request)
        # the service refuses what is not a whole number (1.5, None), never rounds it
        balance = services.admin.grant_credits(actor=user, email=email, amount=amount, note=note)
        return f"Granted. {email.strip().lower()} now has **{balance}** credits."

    @user_facing
    def newer(page_no: int, request: gr.Request):
        return render(max(1, page_no - 1), request)

    @user_facing
    def older(page_no: int, request: gr.Request):
        return render(page_no + 1, request)

    outputs = [balance_md, history, page_label, page, shell.balance]
    prev_btn.click(newer, [page], outputs, api_visibility="private")
    next_btn.click(older, [page], outputs, api_visibility="private")
    create_btn.click(create_key, [key_name], [new_key, keys, revoke_choice, key_name], api_visibility="private")
    revoke_btn.click(revoke_key, [revoke_choice], [keys, revoke_choice], api_visibility="private")
    shell.on_show(render, [page], outputs)
    grant_btn.click(admin_grant, [grant_email, grant_amount, grant_note], [grant_result], api_visibility="private")
    shell.on_show(render_keys, [], [keys, revoke_choice])
    shell.on_show(render_admin, [], [admin_box, admin_overview, rejections])
