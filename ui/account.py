"""Account tab: balance with its split, held credits, paginated history (one card per movement,
saying what it was, with a link to the image a generation made), API keys."""

from __future__ import annotations

import html

import gradio as gr

from models.ledger import GRANT_KINDS
from services import i18n
from services.container import Services
from services.ledger.reads import credit_label
from ui import devices
from ui.common import Shell, image_name, language_of, tr, user_facing

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
KEY_COLUMNS = ["name", "key", "created", "last_used", "status"]  # account.column.<name>


def key_columns(language: str | None = None) -> list[str]:
    return [i18n.t(language, f"account.column.{c}") for c in KEY_COLUMNS]


def _when(dt) -> str:
    return dt.strftime("%Y-%m-%d %H:%M") if dt else "—"


def balance_markdown(b, language: str | None = None) -> str:
    """The Account tab's balance panel for a services.ledger.Balance."""
    def say(key: str, **params) -> str:
        return i18n.t(language, key, **params)

    lines = [say("account.available", total=b.total), ""]
    for kind in GRANT_KINDS:
        amount = b.buckets.get(kind, 0)
        if not amount:
            continue
        label = credit_label(kind, language)
        if kind == "subscription" and b.subscription_expires_at:
            label = say("account.until", label=label, date=i18n.day(language, b.subscription_expires_at))
        lines.append(f"- {label}: **{amount}**")
    if b.held:
        lines.append("- " + say("account.held", held=b.held))
    if b.next_expiry:
        lines.append("\n" + say("account.next_expiry", when=i18n.moment(language, b.next_expiry)))
    if b.total == 0 and not b.held:
        lines.append(say("account.no_credits"))
    return "\n".join(lines)


def history_html(rows, language: str | None = None) -> str:
    """The history page as a list of cards (readable at any width: nothing is cut on a phone).
    Every text is escaped; a generation links to its image on the owner-checked /images route."""
    def say(key: str, **params) -> str:
        return html.escape(i18n.t(language, key, **params))

    if not rows:
        return f'<p class="sh-empty">{say("account.no_movements")}</p>'
    cards = []
    for r in rows:
        detail = html.escape(r.detail)
        if r.generation_id and r.image == "gallery":
            url = f"/images/{r.generation_id}/webp/{image_name(r.generation_id, 'webp')}"
            link = (f'<a class="sh-image" href="{html.escape(url)}" target="_blank" rel="noopener">'
                    f'{say("account.view_image")}</a>')
            detail = f"{detail} · {link}" if detail else link
        delta = f"{r.delta:+,d}" if r.delta else "0"
        when = i18n.moment(language, r.at) if r.at else "—"
        cards.append(
            f'<li class="sh-row sh-{html.escape(r.kind)}">'
            f'<span class="sh-what">{html.escape(r.what)}</span>'
            f'<span class="sh-delta{" sh-plus" if r.delta > 0 else ""}">{delta}</span>'
            f'<span class="sh-detail">{detail}</span>'
            f'<span class="sh-balance">{say("account.balance_after", balance=f"{r.balance_after:,}")}</span>'
            f'<span class="sh-when">{say("account.when", when=when)}</span></li>')
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
        keys = gr.Dataframe(headers=key_columns(), interactive=False)
        with gr.Row():
            revoke_choice = gr.Dropdown(label=shell.text("ui.account.revoke_choice"), choices=[], scale=3)
            revoke_btn = gr.Button(shell.text("ui.account.revoke"), variant="stop", scale=1)

    devices.build(services, shell)  # signed-in devices, sign-in methods (ui/devices.py)
    @user_facing
    def render(page_no: int, request: gr.Request):
        user = shell.user(request)
        language = language_of(request)
        hist = services.ledger.history(user.id, page=max(1, int(page_no or 1)), per_page=HISTORY_PER_PAGE,
                                       language=language)
        balance = services.ledger.balance(user.id)
        return (
            balance_markdown(balance, language),
            history_html(hist.rows, language),
            i18n.t(language, "account.page", page=hist.page, pages=max(1, hist.pages)),
            hist.page,
            shell.balance_text(user.id, balance, request),
            gr.Button(interactive=hist.page > 1),
            gr.Button(interactive=hist.page < hist.pages),
        )

    @user_facing
    def render_keys(request: gr.Request):
        user = shell.user(request)
        language = language_of(request)
        rows, choices = [], []
        for k in services.accounts.list_api_keys(user_id=user.id):
            status = i18n.t(language, "account.key_revoked" if k.revoked_at else "account.key_active")
            rows.append([k.name or "—", f"{k.prefix}…", _when(k.created_at), _when(k.last_used_at), status])
            if not k.revoked_at:
                choices.append((f"{k.name or i18n.t(language, 'account.key_unnamed')} ({k.prefix}…)", k.id))
        return {"headers": key_columns(language), "data": rows}, gr.Dropdown(choices=choices, value=None)

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
            raise gr.Error(tr(request, "account.choose_key"))
        try:
            key_id = int(key_id)
        except (TypeError, ValueError):
            raise gr.Error(tr(request, "account.no_such_key")) from None
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
