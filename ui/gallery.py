"""Gallery tab: the user's images in a grid that keeps each image's shape, searched by prompt and
filtered by style and resolution; a large preview (arrow keys move, Escape closes) with the
details beside it (with the reference images it was made from), Download PNG, Reuse settings
(fills the Generate tab, references included), Edit (the image becomes the reference and opens in
the region editor), Use as reference (added to the Generate tab's references, no upload) and Delete
(after a confirmation, into the trash); the trash (restore within 30 days); Download all (a zip of
the PNG originals, ui/downloads.py).

The grid and the preview are one gr.HTML rendered here (every value escaped); its script opens
the preview in the page and sends the actions back as events carrying the image id: "delete"
(to the trash), "undo" (restore), "select" (reuse settings), "edit" (Edit), "apply" (Use as
reference). Each handler checks the owner again.
Images come from the owner-checked routes /images/{id}/{thumb|webp|png} (ui/web.py) and, in the
trash, /trash/{id}/{thumb|webp} (ui/downloads.py); nothing goes through Gradio's cache.
"""

from __future__ import annotations

import html
import json

import gradio as gr

from services import i18n
from services.container import Services
from services.studio.gallery import TRASH_DAYS
from ui import references as reference_area
from ui.common import Shell, image_url, language_of, tr, user_facing
from ui.downloads import DOWNLOAD_ALL, trash_url
from ui.generate import GenerateForm, style_choices, style_label

PER_PAGE = 24
GALLERY, TRASH = "Gallery", "Trash"
FIRST_VIEW = {"page": 1, "query": "", "style": "", "resolution": "", "trash": False}

GRID_CSS = """
.sg-grid { display: flex; flex-wrap: wrap; gap: 8px; }
.sg-grid::after { content: ""; flex-grow: 1000000; }
.sg-item { margin: 0; position: relative; cursor: zoom-in; max-width: 100%;
  flex-grow: calc(var(--w) / var(--h) * 100); flex-basis: calc(var(--w) / var(--h) * 190px);
  aspect-ratio: var(--w) / var(--h); border-radius: 8px; overflow: hidden;
  background: var(--background-fill-secondary); }
.sg-item img { display: block; width: 100%; height: 100%; object-fit: contain; }
.sg-item:focus-visible { outline: 3px solid var(--color-accent); outline-offset: 2px; }
.sg-batch { flex: 1 1 100%; display: flex; flex-wrap: wrap; gap: 8px; padding: 6px 8px 8px; border-radius: 10px;
  border: 1px dashed var(--border-color-primary); }
.sg-batch::after { content: ""; flex-grow: 1000000; }
.sg-batch-label { flex-basis: 100%; margin: 0; font-size: 0.85rem; color: var(--body-text-color-subdued); }
.sg-empty { padding: 2rem 0; color: var(--body-text-color-subdued); }
.sg-lightbox { position: fixed; inset: 0; z-index: 1000; background: rgba(10, 10, 18, 0.97);
  color: #f4f4f8; display: grid; grid-template-columns: 3rem minmax(0, 1fr) minmax(16rem, 22rem) 3rem;
  align-items: center; gap: 1rem; padding: 1rem; }
.sg-lightbox[hidden] { display: none; }
.sg-stage { display: flex; justify-content: center; align-items: center; min-height: 0; height: 100%; }
.sg-full { max-width: 100%; max-height: calc(100vh - 2rem); object-fit: contain; border-radius: 6px; }
.sg-details { align-self: center; max-height: calc(100vh - 2rem); overflow: auto; line-height: 1.45; }
.sg-prompt { font-size: 1.05rem; font-weight: 600; margin: 0 0 0.75rem; overflow-wrap: anywhere; }
.sg-details dl { display: grid; grid-template-columns: auto 1fr; gap: 0.25rem 0.75rem; margin: 0 0 1rem; }
.sg-lightbox .sg-details dt, .sg-lightbox .sg-count { color: #b9b9c8; }
.sg-lightbox .sg-details dd, .sg-lightbox .sg-prompt, .sg-lightbox .sg-confirm p, .sg-lightbox button,
.sg-lightbox a.sg-btn { color: #f4f4f8; }
.sg-details dd { margin: 0; }
.sg-actions { display: flex; flex-wrap: wrap; gap: 0.5rem; }
.sg-lightbox button, .sg-lightbox a.sg-btn { font: inherit; border-radius: 6px; padding: 0.45rem 0.8rem;
  border: 1px solid #6d6d80; background: #2a2a3a; color: inherit; cursor: pointer; text-decoration: none; }
.sg-lightbox button.sg-danger { background: #b3261e; border-color: #b3261e; }
.sg-lightbox .sg-nav { font-size: 2rem; line-height: 1; padding: 0.4rem 0.6rem; }
.sg-lightbox .sg-nav:disabled { opacity: 0.3; cursor: default; }
.sg-close { position: absolute; top: 0.75rem; right: 0.75rem; font-size: 1.4rem; }
.sg-confirm { margin-top: 1rem; padding: 0.75rem; border: 1px solid #b3261e; border-radius: 6px; }
.sg-confirm[hidden] { display: none; }
.sg-confirm p { margin: 0 0 0.5rem; }
.sg-count { color: #b9b9c8; margin: 0 0 0.5rem; font-size: 0.9rem; }
.sg-refs { display: flex; flex-wrap: wrap; gap: 6px; margin: 0 0 1rem; }
.sg-refs[hidden], .sg-refs-label[hidden] { display: none; }
.sg-lightbox .sg-refs-label { color: #b9b9c8; margin: 0 0 0.5rem; font-size: 0.9rem; }
.sg-refs img { width: 56px; height: 56px; object-fit: cover; border-radius: 4px; }
@media (max-width: 720px) {
  .sg-item { flex-basis: calc(var(--w) / var(--h) * 100px); }
  .sg-lightbox { grid-template-columns: 1fr 1fr; grid-template-rows: auto auto auto; align-items: start;
    overflow: auto; padding: 3rem 0.75rem 1rem; }
  .sg-stage { grid-column: 1 / 3; grid-row: 1; height: auto; }
  .sg-full { max-height: 60vh; }
  .sg-prev { grid-column: 1; grid-row: 2; justify-self: start; }
  .sg-next { grid-column: 2; grid-row: 2; justify-self: end; }
  .sg-details { grid-column: 1 / 3; grid-row: 3; max-height: none; }
}
"""

# The preview runs in the page (no round trip to move between images); actions go to the server.
GRID_JS = """
let index = -1;
const items = () => [...element.querySelectorAll('.sg-item')];
const box = () => element.querySelector('.sg-lightbox');
function close() {
  const b = box();
  if (b) b.hidden = true;
  index = -1;
  document.body.style.overflow = '';
}
function show(i) {
  const list = items(), b = box();
  if (!list.length || !b) { close(); return; }
  index = Math.max(0, Math.min(i, list.length - 1));
  const d = list[index].dataset;
  const full = b.querySelector('.sg-full');
  full.src = d.full;
  full.alt = d.prompt;
  b.querySelector('.sg-prompt').textContent = d.prompt;
  b.querySelectorAll('[data-field]').forEach(el => { el.textContent = d[el.dataset.field] || ''; });
  const png = b.querySelector('.sg-download');
  if (png) png.href = d.png;
  const refs = b.querySelector('.sg-refs');
  if (refs) {
    refs.replaceChildren();
    const list = d.refs ? JSON.parse(d.refs) : [];
    list.forEach(r => { const img = document.createElement('img'); img.src = r.src; img.alt = r.name;
      img.title = r.name; refs.appendChild(img); });
    refs.hidden = !list.length;
    b.querySelector('.sg-refs-label').hidden = !list.length;
  }
  b.querySelector('.sg-count').textContent = (b.dataset.count || '{n} of {total}')
    .replace('{n}', index + 1).replace('{total}', list.length);
  b.querySelector('.sg-prev').disabled = index === 0;
  b.querySelector('.sg-next').disabled = index === list.length - 1;
  b.querySelector('.sg-confirm').hidden = true;
  const wasHidden = b.hidden;
  b.hidden = false;
  document.body.style.overflow = 'hidden';
  if (wasHidden) b.querySelector('.sg-close').focus();
}
function act(event) {
  const list = items();
  if (index < 0 || index >= list.length) return;
  const id = list[index].dataset.id;
  close();
  trigger(event, {id: id});
}
element.addEventListener('click', (e) => {
  const item = e.target.closest('.sg-item');
  if (item) { show(items().indexOf(item)); return; }
  const button = e.target.closest('button');
  if (!button) {
    if (e.target.classList && e.target.classList.contains('sg-lightbox')) close();
    return;
  }
  const b = box();
  if (button.matches('.sg-close')) close();
  else if (button.matches('.sg-prev')) show(index - 1);
  else if (button.matches('.sg-next')) show(index + 1);
  else if (button.matches('.sg-delete')) { b.querySelector('.sg-confirm').hidden = false;
    b.querySelector('.sg-confirm-delete').focus(); }
  else if (button.matches('.sg-cancel')) b.querySelector('.sg-confirm').hidden = true;
  else if (button.matches('.sg-confirm-delete')) act('delete');
  else if (button.matches('.sg-restore')) act('undo');
  else if (button.matches('.sg-reuse')) act('select');
  else if (button.matches('.sg-edit')) act('edit');
  else if (button.matches('.sg-use')) act('apply');
});
element.addEventListener('keydown', (e) => {
  const item = e.target.closest && e.target.closest('.sg-item');
  if (item && (e.key === 'Enter' || e.key === ' ')) { e.preventDefault(); show(items().indexOf(item)); }
});
document.addEventListener('keydown', (e) => {
  const b = box();
  if (!b || b.hidden) return;
  if (e.key === 'Escape') { e.preventDefault(); close(); }
  else if (e.key === 'ArrowLeft') { e.preventDefault(); show(index - 1); }
  else if (e.key === 'ArrowRight') { e.preventDefault(); show(index + 1); }
});
watch('value', () => { index = -1; document.body.style.overflow = ''; });
"""


def _size(n: int | None) -> str:
    if n is None:
        return "—"
    if n < 1024 * 1024:
        return f"{max(1, round(n / 1024))} KB"
    return f"{n / (1024 * 1024):.1f} MB"


def _attr(value) -> str:
    return html.escape(str(value), quote=True)


def _style_name(name: str, language: str | None) -> str:
    """The style an image was made in: its catalog name in the language (as stored when there is no
    translation, e.g. in English or for a style of the user's own)."""
    return i18n.catalog_text(language, "styles", name, "name", name)


def item_html(request: gr.Request | None, studio, g, *, trash: bool) -> str:
    """One image of the grid; everything the preview shows rides on data-* attributes (escaped)."""
    language = language_of(request)
    width, height = g.width or 1, g.height or 1
    if trash:
        thumb, full, png = trash_url(g.id, "thumb"), trash_url(g.id, "webp"), ""
        expires = studio.trash_expires_at(g)
        when = i18n.t(language, "gallery.deleted_when", deleted=i18n.day(language, g.deleted_at),
                      gone=i18n.day(language, expires))
    else:
        thumb, full, png = (image_url(request, g.id, v) for v in ("thumb", "webp", "png"))
        when = i18n.t(language, "gallery.created_when", when=i18n.moment(language, g.created_at)) \
            if g.created_at else "—"
    data = {
        "id": g.id, "prompt": g.prompt, "style": _style_name(g.style, language), "resolution": f"{g.resolution} · {g.aspect_ratio}",
        "size": f"{width} × {height} px", "bytes": _size(studio.png_size(g)), "date": when,
        "credits": str(g.cost), "full": full, "png": png,
        "refs": json.dumps([{"src": image_url(request, g.id, str(r.get("variant"))) if not trash else "",
                             "name": str(r.get("name") or "")} for r in (g.reference_images or [])
                            ] if not trash else []),
    }
    attrs = " ".join(f'data-{k}="{_attr(v)}"' for k, v in data.items())
    opens = i18n.t(language, "gallery.open", prompt=g.prompt[:120])
    return (f'<figure class="sg-item" tabindex="0" role="button" aria-label="{_attr(opens)}" '
            f'style="--w:{int(width)};--h:{int(height)}" {attrs}>'
            f'<img src="{_attr(thumb)}" alt="{_attr(g.prompt[:300])}" width="{int(width)}" height="{int(height)}" '
            f'loading="lazy"></figure>')


def lightbox_html(*, trash: bool, language: str | None = None) -> str:
    def say(key: str, **params) -> str:
        return html.escape(i18n.t(language, key, **params))

    if trash:
        actions = f'<button type="button" class="sg-restore">{say("gallery.restore")}</button>'
        confirm = ""
    else:
        actions = (f'<a class="sg-btn sg-download" href="" download>{say("gallery.download_png")}</a>'
                   f'<button type="button" class="sg-reuse">{say("gallery.reuse")}</button>'
                   f'<button type="button" class="sg-edit">{say("gallery.edit")}</button>'
                   f'<button type="button" class="sg-use">{say("gallery.use_reference")}</button>'
                   f'<button type="button" class="sg-delete sg-danger">{say("gallery.delete")}</button>')
        confirm = (f'<p>{say("gallery.confirm_delete", days=TRASH_DAYS)}</p>'
                   f'<button type="button" class="sg-confirm-delete sg-danger">{say("gallery.move_to_trash")}</button> '
                   f'<button type="button" class="sg-cancel">{say("gallery.cancel")}</button>')
    fields = [("gallery.field.style", "style"), ("gallery.field.resolution", "resolution"),
              ("gallery.field.size", "size"), ("gallery.field.file", "bytes"),
              ("gallery.field.deleted" if trash else "gallery.field.created", "date"),
              ("gallery.field.credits", "credits")]
    rows = "".join(f'<dt>{say(label)}</dt><dd data-field="{name}"></dd>' for label, name in fields)
    return (
        f'<div class="sg-lightbox" hidden role="dialog" aria-modal="true" aria-label="{say("gallery.preview")}" '
        f'data-count="{say("gallery.count")}">'
        f'<button type="button" class="sg-close" aria-label="{say("gallery.close")}">✕</button>'
        f'<button type="button" class="sg-nav sg-prev" aria-label="{say("gallery.previous")}">‹</button>'
        '<div class="sg-stage"><img class="sg-full" alt=""></div>'
        f'<aside class="sg-details"><p class="sg-count"></p><p class="sg-prompt"></p><dl>{rows}</dl>'
        f'<p class="sg-refs-label" hidden>{say("gallery.made_from")}</p><div class="sg-refs" hidden></div>'
        f'<div class="sg-actions">{actions}</div><div class="sg-confirm" hidden>{confirm}</div></aside>'
        f'<button type="button" class="sg-nav sg-next" aria-label="{say("gallery.next")}">›</button>'
        '</div>'
    )


def grid_html(request, studio, items, *, trash: bool, empty: str) -> str:
    language = language_of(request)
    if not items:
        return f'<p class="sg-empty">{html.escape(empty)}</p>'
    cells = []
    for batch_id, group in _batches(items):
        inner = "".join(item_html(request, studio, g, trash=trash) for g in group)
        if batch_id is None:
            cells.append(inner)
        else:  # one Compare or Variations request: shown together, each image still its own item
            styles = len({g.style for g in group})
            what = i18n.t(language, "gallery.batch_compare", count=styles) if styles > 1 else \
                i18n.t(language, "gallery.batch_variations", count=len(group))
            cells.append(f'<div class="sg-batch" data-batch="{_attr(batch_id)}"><p class="sg-batch-label">'
                         f'{html.escape(what)} · “{html.escape(group[0].prompt[:80])}”</p>{inner}</div>')
    return f'<div class="sg-grid">{"".join(cells)}</div>{lightbox_html(trash=trash, language=language)}'


def _batches(items) -> list[tuple[str | None, list]]:
    """Consecutive images of the same batch grouped (the gallery is newest first, so a batch's
    images are next to each other); an image made on its own is a group of one without an id."""
    groups: list[tuple[str | None, list]] = []
    for g in items:
        batch_id = getattr(g, "batch_id", None)
        if batch_id is not None and groups and groups[-1][0] == batch_id:
            groups[-1][1].append(g)
        else:
            groups.append((batch_id, [g]))
    return groups


def summary_html(total: int, view: dict, catalog, language: str | None = None) -> str:
    many = "other" if total != 1 else "one"
    if view["trash"]:
        text = i18n.t(language, f"gallery.summary.trash_{many}", count=total, days=TRASH_DAYS) if total else \
            i18n.t(language, "gallery.summary.trash_empty", days=TRASH_DAYS)
        return f'<p class="sg-summary">{html.escape(text)}</p>'
    filters = []
    if view["query"]:
        filters.append(i18n.t(language, "gallery.quoted", text=view["query"]))
    if view["style"]:
        style = next((s for s in catalog.styles if s.name == view["style"]), None)
        filters.append(style_label(style, language) if style is not None else view["style"])
    if view["resolution"]:
        filters.append(view["resolution"])
    if filters:
        text = i18n.t(language, f"gallery.summary.matching_{many}", count=total, filters=" · ".join(filters)) \
            if total else i18n.t(language, "gallery.summary.no_match", filters=" · ".join(filters))
    else:
        text = i18n.t(language, f"gallery.summary.all_{many}", count=total) if total else \
            i18n.t(language, "gallery.summary.none_yet")
    link = (f' <a class="sg-download-all" href="{DOWNLOAD_ALL}" download>'
            f'{html.escape(i18n.t(language, "gallery.download_all"))}</a>' if total and not filters else "")
    return f'<p class="sg-summary">{html.escape(text)}{link}</p>'


def build(services: Services, shell: Shell, *, form: GenerateForm | None = None, tabs: gr.Tabs | None = None) -> None:
    """`form`: the Generate tab's inputs, for "Reuse settings" (hidden without it); `tabs`: the app's
    gr.Tabs, to switch to the Generate tab after reusing."""
    studio, catalog = services.studio, services.catalog
    view = gr.State(dict(FIRST_VIEW))  # what this browser tab shows: filters, page, gallery or trash

    with gr.Row(equal_height=True, elem_classes="sg-filters"):
        search = gr.Textbox(label=shell.text("ui.gallery.search"), placeholder=shell.text("ui.gallery.search_example"),
                            max_length=200, submit_btn=shell.text("ui.gallery.search_go"), scale=3, min_width=200)
        style = gr.Dropdown([(shell.text("ui.gallery.all_styles"), ""), *style_choices(services, shell)], value="",
                            label=shell.text("ui.gallery.style"), scale=2, min_width=150)
        resolution = gr.Dropdown([(shell.text("ui.gallery.all_resolutions"), ""),
                                  *[(r.key, r.key) for r in catalog.resolutions]],
                                 value="", label=shell.text("ui.gallery.resolution"), scale=1, min_width=130)
        where = gr.Radio([(shell.text("ui.gallery.gallery"), GALLERY), (shell.text("ui.gallery.trash"), TRASH)],
                         value=GALLERY, label=shell.text("ui.gallery.show"), scale=1, min_width=150)
    summary = gr.HTML(js_on_load=None, elem_classes="sg-summary-box")
    hide_reuse = "" if form is not None else "\n.sg-reuse, .sg-edit, .sg-use { display: none; }"
    grid = gr.HTML(js_on_load=GRID_JS, css_template=GRID_CSS + hide_reuse, elem_id="studio-gallery",
                   apply_default_css=False)
    with gr.Row(elem_classes="sg-pages"):
        newer = gr.Button(shell.text("ui.account.newer"), size="sm", interactive=False)
        page_label = gr.Markdown()
        older = gr.Button(shell.text("ui.account.older"), size="sm", interactive=False)

    def render(v: dict, request: gr.Request):
        user = shell.user(request)
        if v["trash"]:
            result = studio.trash(user_id=user.id, page=v["page"], per_page=PER_PAGE)
        else:
            result = studio.gallery(user_id=user.id, page=v["page"], per_page=PER_PAGE, query=v["query"],
                                    style=v["style"] or None, resolution=v["resolution"] or None)
        if result.items == [] and result.page > 1:  # e.g. the last image of the last page was deleted
            return render({**v, "page": result.pages}, request)
        language = language_of(request)
        empty = i18n.t(language, "gallery.nothing_here") \
            if result.total == 0 and (v["trash"] or v["query"] or v["style"] or v["resolution"]) \
            else i18n.t(language, "gallery.appear_here")
        return (summary_html(result.total, v, catalog, language),
                grid_html(request, studio, result.items, trash=v["trash"], empty=empty),
                i18n.t(language, "gallery.page", page=result.page, pages=result.pages),
                gr.Button(interactive=result.page > 1), gr.Button(interactive=result.page < result.pages),
                {**v, "page": result.page})

    outputs = [summary, grid, page_label, newer, older, view]

    @user_facing
    def show(v, request: gr.Request):
        return render(_view(v), request)

    @user_facing
    def apply(query: str, style_name: str, resolution_key: str, shown: str, request: gr.Request):
        v = {"page": 1, "query": (query or "").strip()[:200], "style": style_name or "",
             "resolution": resolution_key or "", "trash": shown == TRASH}
        return render(v, request)

    @user_facing
    def go_newer(v, request: gr.Request):
        v = _view(v)
        return render({**v, "page": max(1, v["page"] - 1)}, request)

    @user_facing
    def go_older(v, request: gr.Request):
        v = _view(v)
        return render({**v, "page": v["page"] + 1}, request)

    @user_facing
    def move_to_trash(v, evt: gr.EventData, request: gr.Request):
        user = shell.user(request)
        studio.delete(user_id=user.id, generation_id=_picked(evt, request))
        gr.Info(tr(request, "gallery.moved", days=TRASH_DAYS), title=tr(request, "gallery.moved_title"))
        return render(_view(v), request)

    @user_facing
    def restore(v, evt: gr.EventData, request: gr.Request):
        user = shell.user(request)
        studio.restore(user_id=user.id, generation_id=_picked(evt, request))
        gr.Info(tr(request, "gallery.restored"), title=tr(request, "gallery.restored_title"))
        return render(_view(v), request)

    filters = [search, style, resolution, where]
    search.submit(apply, filters, outputs, api_name="gallery_search", api_visibility="private")
    for control in (style, resolution, where):
        control.input(apply, filters, outputs, api_visibility="private")
    newer.click(go_newer, [view], outputs, api_name="gallery_newer", api_visibility="private")
    older.click(go_older, [view], outputs, api_name="gallery_older", api_visibility="private")
    grid.delete(move_to_trash, [view], outputs, api_name="gallery_delete", api_visibility="private")
    grid.undo(restore, [view], outputs, api_name="gallery_restore", api_visibility="private")
    shell.on_show(show, [view], outputs)

    if form is None:
        return

    @user_facing
    def reuse_settings(evt: gr.EventData, request: gr.Request):
        user = shell.user(request)
        g = studio.get(user_id=user.id, generation_id=_picked(evt, request))
        own = services.styles is not None and services.styles.find(user_id=user.id, name=g.style) is not None
        style_name = g.style if g.style in catalog.style_names or own else catalog.default_style
        ratio = g.aspect_ratio if g.aspect_ratio in [r.ratio for r in catalog.aspect_ratios] \
            else catalog.default_aspect_ratio
        resolution_key = g.resolution if g.resolution in [r.key for r in catalog.resolutions] \
            else catalog.default_resolution
        switch = [gr.Tabs(selected=form.tab_id)] if tabs is not None else []
        stored = reference_area.stored_items(g)  # the references it was made from, re-attached
        return (g.prompt, style_name, ratio, resolution_key, stored, reference_area.thumbs_html(request, stored),
                gr.Button(interactive=bool(stored)), *reference_area.editor_closed(), *switch)

    @user_facing
    def use_as_reference(current, evt: gr.EventData, request: gr.Request):
        user = shell.user(request)
        g = studio.get(user_id=user.id, generation_id=_picked(evt, request))
        items = list(current or [])
        if len(items) >= refs.max_images:
            raise gr.Error(tr(request, "ui.references.too_many", limit=refs.max_images),
                           title=tr(request, "ui.references.too_many_title"))
        items.append(reference_area.original_item(g))
        gr.Info(tr(request, "gallery.reference_added"), title=tr(request, "gallery.reference_added_title"))
        switch = [gr.Tabs(selected=form.tab_id)] if tabs is not None else []
        return (items, reference_area.thumbs_html(request, items), gr.Button(interactive=True), *switch)

    @user_facing
    def edit_image(evt: gr.EventData, request: gr.Request):
        user = shell.user(request)
        g = studio.get(user_id=user.id, generation_id=_picked(evt, request))
        items = [reference_area.original_item(g)]
        background = reference_area.first_image(services, user.id, items[0])
        switch = [gr.Tabs(selected=form.tab_id)] if tabs is not None else []
        return (items, reference_area.thumbs_html(request, items), gr.Button(interactive=True),
                *reference_area.editor_open(background), *switch)

    refs = form.references
    switch_to = [tabs] if tabs is not None else []
    area = [refs.items, refs.thumbs, refs.edit_region]
    editor = [refs.editor, refs.editing, refs.stop]
    refresh_fn, refresh_inputs, refresh_outputs = form.refresh
    grid.select(reuse_settings, None,
                [form.prompt, form.style, form.aspect_ratio, form.resolution, *area, *editor, *switch_to],
                api_name="gallery_reuse", api_visibility="private") \
        .then(refresh_fn, refresh_inputs, refresh_outputs, api_visibility="private", show_progress="hidden")
    grid.apply(use_as_reference, [refs.items], [*area, *switch_to], api_name="gallery_use_reference",
               api_visibility="private") \
        .then(refresh_fn, refresh_inputs, refresh_outputs, api_visibility="private", show_progress="hidden")
    grid.edit(edit_image, None, [*area, *editor, *switch_to], api_name="gallery_edit", api_visibility="private") \
        .then(refresh_fn, refresh_inputs, refresh_outputs, api_visibility="private", show_progress="hidden")


def _view(v) -> dict:
    """The tab's view state, or the first view when the state is missing or malformed."""
    if not isinstance(v, dict):
        return dict(FIRST_VIEW)
    page = v.get("page")
    return {"page": page if isinstance(page, int) and not isinstance(page, bool) and page >= 1 else 1,
            "query": str(v.get("query") or "")[:200], "style": str(v.get("style") or ""),
            "resolution": str(v.get("resolution") or ""), "trash": v.get("trash") is True}


def _picked(evt: gr.EventData, request: gr.Request | None = None) -> str:
    """The image id an action of the grid carries (checked against the owner by the service)."""
    data = getattr(evt, "_data", None)
    picked = data.get("id") if isinstance(data, dict) else None
    if not isinstance(picked, str) or not picked:
        raise gr.Error(tr(request, "gallery.choose_first"), title=tr(request, "gallery.choose_first_title"))
    return picked
