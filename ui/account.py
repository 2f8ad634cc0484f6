"""Account tab: balance with its split, held credits, paginated history (one card per movement,
saying what it was, with a link to the image a generation made), API keys."""

from __future__ import annotations

import html

import gradio as gr

from models.ledger import CREDIT_KIND_LABELS, GRANT_KINDS
from services.container import Services
from ui import devices
from ui.common import Shell, image_name, user_facing

HISTORY_PER_PAGE = 20
HISTORY_CSS = """
.sh-list { list-style: none; margin: 0; padding: 0; }
.sh-row { display: grid; grid-template-columns: minmax(0, 1fr) auto; gap: 0.15rem 1rem; padding: 0.6rem 0;
  border-bottom: 1px solid var(--border-color-primary); }
.sh-what { font-weight: 600; overflow-wrap: anywhere; }
.sh-detail { color: var(--body-text-color-subdued); overflow-wrap: anywhere; }
.sh-when { color: var(--body-text-color-subdued); font-size: 0.9em; }
.sh-delta { text-align: right; font-weight: 600; white-space: nowrap; }
.sh-plus { color: #16794a; }
.sh-balance { text-align: right; color: var(--body-text-color-subdued); font-size: 0.9em; white-space: nowrap; }
.sh-empty { color: var(--body-text-color-subdued); }
"""
KEY_COLUMNS = ["Name", "Key", "Created (UTC)", "Last used (UTC)", "Status"]


def _when(dt) -> str:
    return dt.strftime("%Y-%m-%d %H:%M") if dt else "—"


def balance_markdown(b) -> str:
    """The Account tab's balance panel for a services.ledger.Balance."""
    lines = [f"## {b.total} credits available", ""]
    for kind in GRANT_KINDS:
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


def history_html(rows) -> str:
    """The history page as a list of cards (readable at any width: nothing is cut on a phone).
    Every text is escaped; a generation links to its image on the owner-checked /images route."""
    if not rows:
        return '<p class="sh-empty">No credit movements yet.</p>'
    cards = []
    for r in rows:
        detail = html.escape(r.detail)
        if r.generation_id and r.image == "gallery":
            url = f"/images/{r.generation_id}/webp/{image_name(r.generation_id, 'webp')}"
            link = f'<a class="sh-image" href="{html.escape(url)}" target="_blank" rel="noopener">View image</a>'
            detail = f"{detail} · {link}" if detail else link
        delta = f"{r.delta:+,d}" if r.delta else "0"
        cards.append(
            f'<li class="sh-row sh-{html.escape(r.kind)}">'
            f'<span class="sh-what">{html.escape(r.what)}</span>'
            f'<span class="sh-delta{" sh-plus" if r.delta > 0 else ""}">{delta}</span>'
            f'<span class="sh-detail">{detail}</span>'
            f'<span class="sh-balance">balance {r.balance_after:,}</span>'
            f'<span class="sh-when">{_when(r.at)} UTC</span></li>')
    return f'<ul class="sh-list">{"".join(cards)}</ul>'


def build(services: Services, shell: Shell) -> None:
    page = gr.State(1)
    balance_md = gr.Markdown()
    with gr.Accordion(shell.text("ui.account.history"), open=True):
        history = gr.HTML(js_on_load=None, css_template=HISTORY_CSS, elem_id="account-history")
        with gr.Row():
            prev_btn = gr.Button(shell.text("ui.account.newer"), size="sm")
            page_label = gr.Markdown()
            next_btn = gr.Button(shell.text("ui.account.older"), size="sm")
    with gr.Accordion(shell.text("ui.account.api_keys"), open=False):
        gr.Markdown(shell.text("ui.account.api_keys_note"))
        with gr.Row():
            key_name = gr.Textbox(label=shell.text("ui.account.key_name"), placeholder=shell.text("ui.account.key_placeholder"),
                                  max_length=100, scale=3)
            create_btn = gr.Button(shell.text("ui.account.create_key"), variant="primary", scale=1)
        new_key = gr.Textbox(label=shell.text("ui.account.new_key"),
                             visible=False, buttons=["copy"], interactive=False)
        keys = gr.Dataframe(headers=KEY_COLUMNS, interactive=False)
        with gr.Row():
            revoke_choice = gr.Dropdown(label=shell.text("ui.account.revoke_choice"), choices=[], scale=3)
            revoke_btn = gr.Button(shell.text("ui.account.revoke"), variant="stop", scale=1)

    devices.build(services, shell)  # signed-in devices, sign-in methods (ui/devices.py)
    @user_facing
    def render(page_no: int, request: gr.Request):
        user = shell.user(request)
        hist = services.ledger.history(user.id, page=max(1, int(page_no or 1)), per_page=HISTORY_PER_PAGE)
        balance = services.ledger.balance(user.id)
        return (
            balance_markdown(balance),
            history_html(hist.rows),
            f"Page {hist.page} of {max(1, hist.pages)}",
            hist.page,
            shell.balance_text(user.id, balance, request),
            gr.Button(interactive=hist.page > 1),
            gr.Button(interactive=hist.page < hist.pages),
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
    def newer(page_no: int, request: gr.Request):
        return render(max(1, page_no - 1), request)

    @user_facing
    def older(page_no: int, request: gr.Request):
        return render(page_no + 1, request)

    outputs = [balance_md, history, page_label, page, shell.balance, prev_btn, next_btn]
    prev_btn.click(newer, [page], outputs, api_visibility="private")
    next_btn.click(older, [page], outputs, api_visibility="private")
    create_btn.click(create_key, [key_name], [new_key, keys, revoke_choice, key_name], api_visibility="private")
    revoke_btn.click(revoke_key, [revoke_choice], [keys, revoke_choice], api_visibility="private")
    shell.on_show(render, [page], outputs)
    shell.on_show(render_keys, [], [keys, revoke_choice])
