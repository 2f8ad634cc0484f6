"""Compare tab (the style lab): one prompt in up to COMPARE_MAX_STYLES styles side by side, priced
before it runs ("6 images × 10 credits = 60 · you have 140"); each cell fills as its image arrives
(live previews first) and offers "Use this style" (the Generate tab, filled in), the PNG and the
gallery. Variations: the first chosen style, 2-4 images. The style picker shows each style's
thumbnail (files in assets/styles/, rendered once by bench/render_style_thumbs.py), name and
description, the user's own styles marked as theirs. My styles: create, edit, delete, duplicate a
built-in, share code export and import. Recent prompts: the last 50, one click to reuse.

Public API (gradio_client with `Authorization: Bearer <api key>`):
  /compare (prompt, styles: list of style names, aspect_ratio, resolution) -> (images, message, balance)
      images: the delivered images in the order asked (a failed style has none); message: one line
      per style ("<style>: done · 10 credits charged" or "<style>: Generation failed — you were not
      charged. …") and a summary; a set refused up front raises gr.Error (nothing charged)
  /variations (prompt, style, count, aspect_ratio, resolution) -> (images, message, balance)
  /my_styles () -> [{id, name, template, aspect_ratio, resolution, base_style, shared}]
  /save_style (style_id (0 for a new one), name, template, aspect_ratio, resolution) -> style
  /delete_style (style_id) -> message;  /duplicate_style (style) -> style
  /export_style (style_id) -> code;  /import_style (code) -> style;  /prompt_history () -> [prompt]
Saved styles are also usable by name in /generate. Every other event here is private.
"""

from __future__ import annotations

import asyncio
import html
import re
import time
from pathlib import Path

import anyio
import gradio as gr
from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse

from services import i18n
from services.container import Services
from services.errors import DomainError
from services.studio.compare import Cell
from ui.common import Shell, image_url, language_of, report_unexpected, tr, user_facing
from ui.generate import (
    GenerateForm,
    aspect_choices,
    image_file,
    notice,
    preview_url,
    resolution_choices,
    style_choices,
    style_label,
)

ASSETS = Path(__file__).resolve().parent.parent / "assets"
THUMBS = ASSETS / "styles"
THUMB_ROUTE = "/style-thumbs"
THUMB_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,80}\.webp")
TICK_SECONDS = 1.0
GALLERY_LINK = "/?tab=gallery"

PICKER_CSS = """
.sl-wall { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 8px; }
.sl-card { border: 2px solid var(--border-color-primary); border-radius: 10px; overflow: hidden; cursor: pointer;
  background: var(--background-fill-secondary); padding: 0; text-align: left; font: inherit; color: inherit; }
.sl-card img { display: block; width: 100%; aspect-ratio: 4 / 3; object-fit: cover; }
.sl-card .sl-text { padding: 4px 8px 6px; }
.sl-card b { display: block; font-size: 0.95rem; }
.sl-card small { display: block; color: var(--body-text-color-subdued); line-height: 1.25; font-size: 0.78rem;
  white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.sl-card.sl-on { border-color: var(--color-accent); box-shadow: 0 0 0 2px var(--color-accent); }
.sl-card .sl-mine { font-size: 0.7rem; font-weight: 600; color: var(--color-accent); margin-left: 4px; }
"""
PICKER_JS = """
element.addEventListener('click', (e) => {
  const card = e.target.closest('.sl-card');
  if (card) trigger('select', {name: card.dataset.name});
});
"""


def thumb_file(style_name: str) -> str:
    """The thumbnail's file name in assets/styles/: "pixel art" → "pixel-art.webp"."""
    return re.sub(r"[^a-z0-9]+", "-", style_name.lower()).strip("-") + ".webp"


def thumb_url(style) -> str:
    base = getattr(style, "base_style", None) if getattr(style, "owned", False) else style.name
    name = thumb_file(base or "none")
    return f"{THUMB_ROUTE}/{name}"


def style_routes() -> APIRouter:
    """GET /style-thumbs/{name}: a style's thumbnail (operator files, the same for everyone)."""
    router = APIRouter()

    @router.get(THUMB_ROUTE + "/{name}", include_in_schema=False)
    def get_thumb(name: str):
        path = THUMBS / name
        if not THUMB_NAME.fullmatch(name) or not path.is_file():
            return JSONResponse({"detail": "Not found"}, status_code=404)
        return FileResponse(path, media_type="image/webp",
                            headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})

    return router


def _style_dict(row) -> dict:
    return {"id": row.id, "name": row.name, "template": row.template, "aspect_ratio": row.aspect_ratio,
            "resolution": row.resolution, "base_style": row.base_style, "shared": row.share_code is not None}


def build(services: Services, shell: Shell, *, form: GenerateForm | None = None, tabs: gr.Tabs | None = None) -> None:
    """The tab. `form` is the Generate tab's inputs ("Use this style" fills them; its style list
    gets the user's own styles); `tabs` switches to it."""
    catalog, compare, my = services.catalog, services.compare, services.styles
    most = compare.max_styles

    def all_styles(user_id: int) -> list:
        """The built-in styles, then the user's own (as Styles the studio uses)."""
        return [*catalog.styles, *(my.as_style(row) for row in my.list(user_id=user_id))]

    def label_of(s, language: str | None) -> str:
        """A built-in style's name in the language; the user's own as they named it."""
        return s.label if getattr(s, "owned", False) else style_label(s, language)

    def description_of(s, language: str | None) -> str:
        if getattr(s, "owned", False):
            return s.description
        return i18n.catalog_text(language, "styles", s.name, "description", s.description)

    def cell_label(cell, language: str | None) -> str:
        built_in = next((s for s in catalog.styles if s.name == cell.style), None)
        return style_label(built_in, language) if built_in is not None else cell.label

    def choices(styles, language: str | None = None) -> list[tuple[str, str]]:
        return [(i18n.t(language, "compare.yours_label", label=s.label) if getattr(s, "owned", False)
                 else style_label(s, language), s.name) for s in styles]

    def picker_html(styles, chosen, language: str | None = None) -> str:
        on = {c.lower() for c in (chosen or [])}
        cards = []
        for s in styles:
            mine = (f'<span class="sl-mine">{html.escape(i18n.t(language, "compare.yours"))}</span>'
                    if getattr(s, "owned", False) else "")
            label, description = label_of(s, language), description_of(s, language)
            cards.append(
                f'<button type="button" class="sl-card{" sl-on" if s.name.lower() in on else ""}" '
                f'data-name="{html.escape(s.name, quote=True)}" aria-pressed="{str(s.name.lower() in on).lower()}">'
                f'<img src="{thumb_url(s)}" alt="" loading="lazy" width="160" height="120">'
                f'<span class="sl-text"><b>{html.escape(label)}{mine}</b>'
                f'<small title="{html.escape(description, quote=True)}">{html.escape(description)}</small>'
                f'</span></button>')
        return f'<div class="sl-wall">{"".join(cards)}</div>'

    # Components -------------------------------------------------------------------------------
    with gr.Row(equal_height=False), gr.Column(scale=2, min_width=320):
            prompt = gr.Textbox(label=shell.text("ui.generate.prompt"), lines=3, max_lines=10, max_length=4000,
                                elem_id="compare-prompt", placeholder=shell.text("ui.compare.placeholder"))
            history = gr.Dropdown([], value=None, label=shell.text("ui.compare.history"), elem_id="compare-history",
                                  allow_custom_value=False)
            picker = gr.HTML("", js_on_load=PICKER_JS, css_template=PICKER_CSS, elem_id="compare-picker",
                             apply_default_css=False)
            shell.words("ui.compare.styles", lambda lang: i18n.t(lang, "compare.styles_label", most=most))
            chosen = gr.CheckboxGroup(style_choices(services, shell), value=[], label=shell.text("ui.compare.styles"),
                                      elem_id="compare-styles")
            aspect_ratio = gr.Radio(aspect_choices(services, shell), value=catalog.default_aspect_ratio,
                                    label=shell.text("ui.generate.aspect_ratio"), elem_classes="studio-compact")
            resolution = gr.Radio(resolution_choices(services, shell), value=catalog.default_resolution,
                                  label=shell.text("ui.generate.resolution"), elem_classes="studio-compact")
            cost = gr.Markdown(elem_id="compare-cost", elem_classes="cost-line")
            with gr.Row():
                go = gr.Button(shell.text("ui.compare.go"), variant="primary", scale=3, elem_id="compare-go",
                               interactive=False)
                count = gr.Dropdown([2, 3, 4], value=2, label=shell.text("ui.compare.variations"), scale=1, min_width=90)
                vary = gr.Button(shell.text("ui.compare.vary"), scale=2, elem_id="compare-vary", interactive=False)
            notice_box = gr.HTML("", elem_id="compare-notice")
    status = gr.Markdown(elem_id="compare-status")
    cells_state = gr.State([])  # what each cell shows: style, generation id (for "Use this style")
    cell_parts = []
    with gr.Row(elem_id="compare-cells", equal_height=False):
        for i in range(most):
            with gr.Column(visible=False, min_width=220, elem_classes="compare-cell") as column:
                img = gr.Image(type="filepath", format="webp", interactive=False, show_label=False, height=260,
                               buttons=["fullscreen"], elem_id=f"compare-cell-{i}")
                caption = gr.Markdown(elem_id=f"compare-caption-{i}")
                links = gr.HTML("")
                use = gr.Button(shell.text("ui.compare.use"), size="sm", elem_id=f"compare-use-{i}", interactive=False)
            cell_parts.append((column, img, caption, links, use))

    with gr.Accordion(shell.text("ui.compare.my_styles"), open=False, elem_id="my-styles"):
        with gr.Row():
            mine = gr.Dropdown([], value=None, label=shell.text("ui.compare.your_styles"), elem_id="my-style-pick",
                               scale=2, allow_custom_value=True)  # the owner check is the service's
            builtin = gr.Dropdown(style_choices(services, shell), value=catalog.default_style,
                                  label=shell.text("ui.compare.start_from"), scale=2)
            duplicate = gr.Button(shell.text("ui.compare.duplicate"), scale=1, size="sm")
        style_name = gr.Textbox(label=shell.text("ui.compare.name"), max_length=60, elem_id="my-style-name")
        # The label shows "{prompt}" itself (a literal, not one of i18n.t's values).
        template = gr.Textbox(label=shell.words("ui.compare.template", lambda lang: i18n.t(lang, "compare.template_label")),
                              max_length=1000, lines=2, elem_id="my-style-template")
        with gr.Row():
            default_ratio = gr.Dropdown([(shell.text("ui.compare.no_default"), ""), *aspect_choices(services, shell)],
                                        value="", label=shell.text("ui.compare.default_ratio"))
            default_res = gr.Dropdown([(shell.text("ui.compare.no_default"), ""),
                                       *[(r.key, r.key) for r in catalog.resolutions]], value="",
                                      label=shell.text("ui.compare.default_resolution"))
        with gr.Row():
            save = gr.Button(shell.text("ui.compare.save"), variant="primary", elem_id="my-style-save")
            new = gr.Button(shell.text("ui.compare.new"))
            delete = gr.Button(shell.text("ui.compare.delete"), variant="stop")
            export = gr.Button(shell.text("ui.compare.share"))
        with gr.Row():
            code_out = gr.Textbox(label=shell.text("ui.compare.code_out"), interactive=False, scale=2)
            code_in = gr.Textbox(label=shell.text("ui.compare.code_in"), max_length=64, scale=2)
            do_import = gr.Button(shell.text("ui.compare.import"), scale=1)
        styles_note = gr.Markdown(elem_id="my-style-note")

    # The public API's plain inputs (a list of names, not the checkbox choices) ------------------
    with gr.Group(visible=False):
        api_styles = gr.JSON(label="styles")
        api_style = gr.Textbox(label="style")
        api_count = gr.Number(label="count", precision=0)
        api_ratio = gr.Textbox(label="aspect_ratio")
        api_res = gr.Textbox(label="resolution")
        api_images = gr.Gallery(label="images", format="webp")
        api_message = gr.Markdown()
        api_balance = gr.Number(label="balance", precision=0)
        api_compare = gr.Button("compare")
        api_vary = gr.Button("variations")

    # Reading ------------------------------------------------------------------------------------

    def cost_for(user, names, resolution_key, language: str | None = None):
        """(the cost line, Compare, Variations)."""
        def say(key: str, **params) -> str:
            return i18n.t(language, key, **params)

        try:
            quote = compare.quote(user_id=user.id, count=max(1, len(names or [])), resolution=resolution_key)
            block = services.entitlements.resolution_block(user_id=user.id, is_admin=user.is_admin,
                                                           resolution=resolution_key)
        except DomainError as err:
            return err.text(language), gr.Button(interactive=False), gr.Button(interactive=False)
        n = len(names or [])
        if n == 0:
            return (say("compare.choose", most=most, unit=quote.unit, balance=quote.balance),
                    gr.Button(interactive=False), gr.Button(interactive=False))
        text = f"**{quote.text(language)}**"
        ok = quote.affordable and n <= most and not block
        if n > most:
            text += "  \n" + say("compare.too_many", most=most, extra=n - most)
        elif block:
            text += f"  \n{block}"
        elif not quote.affordable:
            could = quote.can_pay_for
            text += "  \n" + say("compare.short", count=n, could=could)
        one = quote.balance >= 2 * quote.unit and not block
        return text, gr.Button(interactive=ok), gr.Button(interactive=one)

    @user_facing
    def cost_line(names, resolution_key, request: gr.Request):
        return cost_for(shell.user(request), names, resolution_key, language_of(request))

    def lists_for(user, names, selected_id=None, language: str | None = None):
        """Everything that shows the user's styles: picker, checkboxes, My styles, the Generate list."""
        styles = all_styles(user.id)
        known = {s.name.lower(): s.name for s in styles}
        kept = [known[n.lower()] for n in (names or []) if n.lower() in known]
        rows = my.list(user_id=user.id)
        mine_choices = [(r.name, r.id) for r in rows]
        out = [picker_html(styles, kept, language), gr.CheckboxGroup(choices=choices(styles, language), value=kept),
               gr.Dropdown(choices=mine_choices, value=selected_id if selected_id in [r.id for r in rows] else None)]
        if form is not None:
            out.append(gr.Dropdown(choices=[(label_of(s, language), s.name) for s in styles]))
        return out

    list_outputs = [picker, chosen, mine] + ([form.style] if form is not None else [])

    @user_facing
    def on_show(names, resolution_key, request: gr.Request):
        user = shell.user(request)
        recent = my.prompt_history(user_id=user.id)
        language = language_of(request)
        return (*lists_for(user, names, language=language), gr.Dropdown(choices=recent, value=None),
                *cost_for(user, names, resolution_key, language))

    @user_facing
    def toggle(names, resolution_key, evt: gr.EventData, request: gr.Request):
        user = shell.user(request)
        data = getattr(evt, "_data", None)
        name = data.get("name") if isinstance(data, dict) else None
        names = list(names or [])
        if isinstance(name, str) and name:
            if name in names:
                names.remove(name)
            elif len(names) >= most:
                gr.Warning(tr(request, "compare.at_most", most=most))
            else:
                names.append(name)
        styles = all_styles(user.id)
        valid = {s.name for s in styles}
        names = [n for n in names if n in valid]
        language = language_of(request)
        return (picker_html(styles, names, language), gr.CheckboxGroup(value=names),
                *cost_for(user, names, resolution_key, language))

    @user_facing
    def ticked(names, resolution_key, request: gr.Request):
        user = shell.user(request)
        language = language_of(request)
        return (picker_html(all_styles(user.id), names, language), *cost_for(user, names, resolution_key, language))

    # Running a set --------------------------------------------------------------------------------

    def cell_view(request, cell: Cell | None, label: str | None = None):
        """(column, image, caption, links, use) for one cell."""
        language = language_of(request)

        def say(key: str, **params) -> str:
            return html.escape(i18n.t(language, key, **params))

        if cell is None and label is None:
            return gr.Column(visible=False), None, "", "", gr.Button(interactive=False)
        if cell is None:
            return gr.Column(visible=True), None, f"**{html.escape(label)}** · {say('compare.waiting')}", "", gr.Button(interactive=False)
        title = f"**{html.escape(cell_label(cell, language))}**"
        if cell.status == "done":
            g = cell.result.generation
            links = (f'<a href="{image_url(request, g.id, "png")}" download>{say("ui.generate.download_png")}</a> · '
                     f'<a href="{GALLERY_LINK}" target="_blank">{say("compare.open_gallery")}</a>')
            return (gr.Column(visible=True), image_file(image_url(request, g.id, "webp"), for_api=False),
                    f"{title} · {html.escape(cell.text(language))}", links, gr.Button(interactive=True))
        if cell.status == "failed":
            return (gr.Column(visible=True), None, f"{title} · ⚠ {html.escape(cell.text(language))}", "",
                    gr.Button(interactive=True))
        if cell.status == "preview" and cell.preview is not None:
            p = cell.preview
            return (gr.Column(visible=True), image_file(preview_url(request, p), for_api=False),
                    f"{title} · {say('compare.preview', index=p.index + 1, total=p.total)}", "",
                    gr.Button(interactive=False))
        return gr.Column(visible=True), None, f"{title} · {say('compare.generating')}", "", gr.Button(interactive=False)

    async def run_set(start, request, shown_labels):
        """Yield the page's outputs while a set runs: every cell, the status line, the notice, the state."""
        started = time.perf_counter()
        language = language_of(request)
        try:
            user = await anyio.to_thread.run_sync(shell.user, request)
        except gr.Error:
            yield (*[gr.skip()] * (5 * most), gr.skip(), notice(i18n.t(language, "compare.sign_in_again")), gr.skip())
            return
        views = []
        for i in range(most):
            views.extend(cell_view(request, None, shown_labels[i] if i < len(shown_labels) else None))
        yield (*views, i18n.t(language, "compare.checking"), "", [])
        updates: asyncio.Queue[Cell] = asyncio.Queue()
        task = asyncio.ensure_future(start(user, updates.put_nowait))
        state = [{"style": label, "id": None} for label in shown_labels]
        try:
            while not task.done():
                getter = asyncio.ensure_future(updates.get())
                done, _ = await asyncio.wait({task, getter}, timeout=TICK_SECONDS, return_when=asyncio.FIRST_COMPLETED)
                elapsed = time.perf_counter() - started
                if getter not in done:
                    getter.cancel()
                    yield (*[gr.skip()] * (5 * most), i18n.t(language, "compare.running", seconds=f"{elapsed:.0f}"), gr.skip(), gr.skip())
                    continue
                changed = {getter.result().index: getter.result()}
                while not updates.empty():
                    cell = updates.get_nowait()
                    changed[cell.index] = cell
                out = []
                for i in range(most):
                    out.extend(cell_view(request, changed[i]) if i in changed else [gr.skip()] * 5)
                    if i in changed:
                        state[i] = {"style": changed[i].style, "id": changed[i].result.id if changed[i].result else None}
                yield (*out, i18n.t(language, "compare.running", seconds=f"{elapsed:.0f}"), gr.skip(), list(state))
            result = task.result()
        except Exception as err:  # noqa: BLE001 - a refusal is shown inline, nothing was charged
            if not task.done():
                task.cancel()
            said = err.text(language) if isinstance(err, DomainError) else report_unexpected(err, "ui.compare", language)
            blank = []
            for _ in range(most):
                blank.extend(cell_view(request, None))
            yield (*blank, "", notice(said), [])
            return
        out = []
        for i in range(most):
            cell = result.cells[i] if i < len(result.cells) else None
            out.extend(cell_view(request, cell) if cell is not None else cell_view(request, None))
        state = [{"style": c.style, "id": c.result.id if c.result else None} for c in result.cells]
        took = time.perf_counter() - started
        yield (*out, f"{html.escape(result.summary_text(language))} ({took:.0f} s)", "", state)

    def labels_of(request, names) -> list[str]:
        """The cells' titles before the set runs (the user's own spelling of their styles)."""
        language = language_of(request)
        styles = {s.name.lower(): label_of(s, language) for s in all_styles(shell.user(request).id)}
        return [styles.get(n.lower(), n) for n in (names or [])]

    @user_facing
    async def compare_ui(prompt_text, names, ratio, res_key, request: gr.Request):
        labels = await anyio.to_thread.run_sync(labels_of, request, list(names or [])[:most])

        def start(user, on_update):
            return compare.compare(user_id=user.id, is_admin=user.is_admin, prompt=prompt_text, styles=names,
                                   aspect_ratio=ratio, resolution=res_key, on_update=on_update)

        async for item in run_set(start, request, labels):
            yield item

    @user_facing
    async def vary_ui(prompt_text, names, n, ratio, res_key, request: gr.Request):
        first = (names or [None])[0]
        label = (await anyio.to_thread.run_sync(labels_of, request, [first]))[0] if first else ""
        n = int(n or 2)

        def start(user, on_update):
            return compare.variations(user_id=user.id, is_admin=user.is_admin, prompt=prompt_text, style=first or "",
                                      count=n, aspect_ratio=ratio, resolution=res_key, on_update=on_update)

        async for item in run_set(start, request, [label] * min(n, most) if first else []):
            yield item

    def api_result(request, result):
        images = [{"image": image_file(image_url(request, c.result.id, "webp"), for_api=True,
                                       name=f"{i + 1}-{re.sub(r'[^a-z0-9]+', '-', c.style.lower())}.webp"),
                   "caption": c.label} for i, c in enumerate(result.cells) if c.result is not None]
        language = language_of(request)
        if language == i18n.FALLBACK:
            return images, result.message, result.balance
        # One line per style and the summary, in the caller's language (Accept-Language).
        lines = [f"{cell_label(c, language)}: {c.text(language)}" for c in result.cells]
        return images, "\n".join([*lines, result.summary_text(language)]), result.balance

    @user_facing
    async def compare_api(prompt_text: str, styles, aspect_ratio_value: str, resolution_value: str,
                          request: gr.Request):
        """One prompt in several styles at once: each image its own charge; a failed one is not charged."""
        user = await anyio.to_thread.run_sync(shell.user, request)
        result = await compare.compare(user_id=user.id, is_admin=user.is_admin, prompt=prompt_text, styles=styles,
                                       aspect_ratio=aspect_ratio_value, resolution=resolution_value)
        return api_result(request, result)

    @user_facing
    async def variations_api(prompt_text: str, style_name: str, n, aspect_ratio_value: str, resolution_value: str,
                             request: gr.Request):
        """2-4 images of the same prompt and style, each priced and held on its own."""
        user = await anyio.to_thread.run_sync(shell.user, request)
        result = await compare.variations(user_id=user.id, is_admin=user.is_admin, prompt=prompt_text,
                                          style=style_name, count=n, aspect_ratio=aspect_ratio_value,
                                          resolution=resolution_value)
        return api_result(request, result)

    @user_facing
    def after_set(names, resolution_key, request: gr.Request):
        user = shell.user(request)
        balance = services.ledger.balance(user.id)
        recent = my.prompt_history(user_id=user.id)
        extra = [shell.balance_text(user.id, balance=balance)] if shell.balance is not None else []
        return (*cost_for(user, names, resolution_key, language_of(request)), gr.Dropdown(choices=recent, value=None),
                *extra)

    # "Use this style": back to Generate, filled in ---------------------------------------------------

    def use_handler(i: int):
        @user_facing
        def use(state, prompt_text, ratio, res_key, request: gr.Request):
            user = shell.user(request)
            picked = state[i] if isinstance(state, list) and i < len(state) and isinstance(state[i], dict) else None
            if not picked:
                raise gr.Error(tr(request, "compare.nothing_to_use"), title=tr(request, "gallery.choose_first_title"))
            style = picked.get("style")
            if isinstance(picked.get("id"), str):  # the image's own settings, checked against the owner
                g = services.studio.get(user_id=user.id, generation_id=picked["id"])
                prompt_text, ratio, res_key, style = g.prompt, g.aspect_ratio, g.resolution, g.style
            switch = [gr.Tabs(selected=form.tab_id)] if tabs is not None else []
            return (prompt_text, style, ratio, res_key, *switch)
        return use

    # My styles ----------------------------------------------------------------------------------------

    def editor(row) -> tuple:
        """(name, template, default ratio, default resolution) of the style being edited."""
        if row is None:
            return "", "", "", ""
        return row.name, row.template, row.aspect_ratio or "", row.resolution or ""

    @user_facing
    def pick_mine(style_id, request: gr.Request):
        user = shell.user(request)
        row = my.get(user_id=user.id, style_id=style_id) if style_id else None
        return (*editor(row), "")

    @user_facing
    def save_ui(style_id, name, tmpl, ratio, res, names, request: gr.Request):
        user = shell.user(request)
        if style_id:
            row = my.update(user_id=user.id, style_id=style_id, name=name, template=tmpl, aspect_ratio=ratio,
                            resolution=res)
            said = tr(request, "compare.saved", name=row.name)
        else:
            row = my.create(user_id=user.id, name=name, template=tmpl, aspect_ratio=ratio, resolution=res)
            said = tr(request, "compare.saved_new", name=row.name)
        gr.Info(said, title=tr(request, "compare.saved_title"))
        return (*lists_for(user, names, row.id, language_of(request)), said)

    @user_facing
    def delete_ui(style_id, names, request: gr.Request):
        user = shell.user(request)
        if not style_id:
            raise gr.Error(tr(request, "compare.choose_mine"), title=tr(request, "compare.choose_mine_title"))
        name = my.delete(user_id=user.id, style_id=style_id)
        return (*lists_for(user, names, language=language_of(request)), *editor(None), tr(request, "compare.deleted", name=name))

    @user_facing
    def duplicate_ui(style, names, request: gr.Request):
        user = shell.user(request)
        row = my.duplicate(user_id=user.id, style=style)
        return (*lists_for(user, names, row.id, language_of(request)), *editor(row),
                tr(request, "compare.copied", name=row.name))

    @user_facing
    def export_ui(style_id, request: gr.Request):
        user = shell.user(request)
        if not style_id:
            raise gr.Error(tr(request, "compare.choose_mine"), title=tr(request, "compare.choose_mine_title"))
        return my.export(user_id=user.id, style_id=style_id)

    @user_facing
    def import_ui(code, names, request: gr.Request):
        user = shell.user(request)
        row = my.import_code(user_id=user.id, code=code)
        return (*lists_for(user, names, row.id, language_of(request)), *editor(row),
                tr(request, "compare.imported", name=row.name))

    # The API's style operations (gr.api: typed, public) ---------------------------------------------

    def my_styles(request: gr.Request) -> list:
        """Your saved styles: [{id, name, template, aspect_ratio, resolution, base_style, shared}]."""
        return [_style_dict(r) for r in my.list(user_id=shell.user(request).id)]

    def save_style(style_id: int, name: str, template: str, aspect_ratio: str, resolution: str,
                   request: gr.Request) -> dict:
        """Create (style_id 0) or change one of your styles: name 1-60 characters, template with {prompt}
        exactly once (≤ 1,000 characters, no control characters), optional default ratio and resolution."""
        user = shell.user(request)
        if style_id:
            row = my.update(user_id=user.id, style_id=style_id, name=name, template=template,
                            aspect_ratio=aspect_ratio or None, resolution=resolution or None)
        else:
            row = my.create(user_id=user.id, name=name, template=template, aspect_ratio=aspect_ratio or None,
                            resolution=resolution or None)
        return _style_dict(row)

    def delete_style(style_id: int, request: gr.Request) -> str:
        """Delete one of your styles (its share code stops working)."""
        return tr(request, "compare.deleted", name=my.delete(user_id=shell.user(request).id, style_id=style_id))

    def duplicate_style(style: str, request: gr.Request) -> dict:
        """A copy of a built-in style (or of one of yours) as a new style of yours."""
        return _style_dict(my.duplicate(user_id=shell.user(request).id, style=style))

    def export_style(style_id: int, request: gr.Request) -> str:
        """The share code of one of your styles: another user imports a copy with it."""
        return my.export(user_id=shell.user(request).id, style_id=style_id)

    def import_style(code: str, request: gr.Request) -> dict:
        """Import a shared style by its code, as your own independent copy."""
        return _style_dict(my.import_code(user_id=shell.user(request).id, code=code))

    def prompt_history(request: gr.Request) -> list:
        """Your last 50 distinct prompts, most recent first."""
        return my.prompt_history(user_id=shell.user(request).id)

    for fn in (my_styles, save_style, delete_style, duplicate_style, export_style, import_style, prompt_history):
        gr.api(user_facing(fn), api_name=fn.__name__)

    # Wiring ------------------------------------------------------------------------------------------
    cell_outputs = [part for parts in cell_parts for part in parts]
    run_outputs = [*cell_outputs, status, notice_box, cells_state]
    after_outputs = [cost, go, vary, history] + ([shell.balance] if shell.balance is not None else [])

    api_compare.click(compare_api, [prompt, api_styles, api_ratio, api_res], [api_images, api_message, api_balance],
                      api_name="compare", api_visibility="public", postprocess=False)
    api_vary.click(variations_api, [prompt, api_style, api_count, api_ratio, api_res],
                   [api_images, api_message, api_balance], api_name="variations", api_visibility="public",
                   postprocess=False)
    go.click(compare_ui, [prompt, chosen, aspect_ratio, resolution], run_outputs, api_name="compare_ui",
             api_visibility="private", postprocess=False, show_progress="hidden") \
        .then(after_set, [chosen, resolution], after_outputs, api_visibility="private", show_progress="hidden")
    vary.click(vary_ui, [prompt, chosen, count, aspect_ratio, resolution], run_outputs, api_name="variations_ui",
               api_visibility="private", postprocess=False, show_progress="hidden") \
        .then(after_set, [chosen, resolution], after_outputs, api_visibility="private", show_progress="hidden")
    picker.select(toggle, [chosen, resolution], [picker, chosen, cost, go, vary], api_name="compare_toggle",
                  api_visibility="private", show_progress="hidden")
    chosen.input(ticked, [chosen, resolution], [picker, cost, go, vary], api_visibility="private",
                 show_progress="hidden")
    resolution.change(cost_line, [chosen, resolution], [cost, go, vary], api_visibility="private",
                      show_progress="hidden")
    history.input(user_facing(lambda picked: picked or gr.skip()), [history], [prompt], api_visibility="private", queue=False,
                  show_progress="hidden")
    if form is not None:
        fill = [form.prompt, form.style, form.aspect_ratio, form.resolution] + ([tabs] if tabs is not None else [])
        refresh_fn, refresh_inputs, refresh_outputs = form.refresh
        for i, (_, _, _, _, use) in enumerate(cell_parts):
            use.click(use_handler(i), [cells_state, prompt, aspect_ratio, resolution], fill,
                      api_name=f"compare_use_{i}", api_visibility="private") \
                .then(refresh_fn, refresh_inputs, refresh_outputs, api_visibility="private", show_progress="hidden")

    editor_outputs = [style_name, template, default_ratio, default_res, styles_note]
    mine.input(pick_mine, [mine], editor_outputs, api_visibility="private", show_progress="hidden")
    @user_facing
    def new_style(request: gr.Request):
        return None, "", "", "", "", tr(request, "compare.new_style")

    new.click(new_style, None,
              [mine, *editor_outputs], api_visibility="private", queue=False)
    save.click(save_ui, [mine, style_name, template, default_ratio, default_res, chosen], [*list_outputs, styles_note],
               api_name="save_style_ui", api_visibility="private")
    delete.click(delete_ui, [mine, chosen], [*list_outputs, *editor_outputs], api_name="delete_style_ui",
                 api_visibility="private")
    duplicate.click(duplicate_ui, [builtin, chosen], [*list_outputs, *editor_outputs], api_name="duplicate_style_ui",
                    api_visibility="private")
    export.click(export_ui, [mine], [code_out], api_name="export_style_ui", api_visibility="private")
    do_import.click(import_ui, [code_in, chosen], [*list_outputs, *editor_outputs], api_name="import_style_ui",
                    api_visibility="private")
    shell.on_show(on_show, [chosen, resolution], [*list_outputs, history, cost, go, vary])
