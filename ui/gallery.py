"""Gallery tab: the user's own images, newest first, paginated thumbnails; selecting one shows its
details with Download, Reuse settings (fills the Generate tab) and Delete.

Thumbnails, full-size images and originals are all served by the owner-checked route
/images/{id}/{thumb|webp|png} (ui/web.py → studio.open_image); nothing goes through Gradio's cache.
"""

from __future__ import annotations

import html

import gradio as gr

from services.container import Services
from ui.common import Shell, image_url, user_facing
from ui.generate import GenerateForm

PER_PAGE = 12


def details_markdown(g) -> str:
    engine = "offline preview" if g.engine == "offline" else f"{g.engine} · {g.model}"
    when = g.created_at.strftime("%Y-%m-%d %H:%M UTC") if g.created_at else ""
    return (
        f"**{html.escape(g.prompt[:300])}{'…' if len(g.prompt) > 300 else ''}**  \n"
        f"{g.style} · {g.aspect_ratio} · {g.resolution} ({g.width}×{g.height}) · {g.cost} credits · "
        f"{engine} · {when}  \n"
        f"[Download PNG](/images/{g.id}/png) · [Open full size](/images/{g.id}/webp)"
    )


def build(services: Services, shell: Shell, *, form: GenerateForm | None = None, tabs: gr.Tabs | None = None) -> None:
    """`form`: the Generate tab's inputs, for "Reuse settings" (hidden without it); `tabs`: the app's
    gr.Tabs, to switch to the Generate tab after reusing."""
    studio = services.studio
    page = gr.State(1)
    page_ids = gr.State([])  # the generation ids shown, in order; every action re-checks the owner
    selected = gr.State(None)

    summary = gr.Markdown()
    thumbs = gr.Gallery(label="Your images", columns=4, fit_columns=False, object_fit="cover",
                        allow_preview=False, format="webp", interactive=False)
    with gr.Row():
        newer = gr.Button("← Newer", size="sm")
        page_label = gr.Markdown()
        older = gr.Button("Older →", size="sm")
    with gr.Group(visible=False) as details_box:
        details = gr.Markdown()
        with gr.Row():
            reuse = gr.Button("Reuse settings", size="sm")
            delete = gr.Button("Delete", variant="stop", size="sm")

    @user_facing
    def render(page_no, request: gr.Request):
        user = shell.user(request)
        result = studio.gallery(user_id=user.id, page=max(1, int(page_no or 1)), per_page=PER_PAGE)
        if result.items == [] and result.page > 1:  # e.g. the last image of the last page was deleted
            result = studio.gallery(user_id=user.id, page=result.pages, per_page=PER_PAGE)
        items = [(image_url(request, g.id, "thumb"), f"{g.style} · {g.resolution} · {g.aspect_ratio}")
                 for g in result.items]
        count = "No images yet: make one on the Generate tab." if result.total == 0 else \
            f"{result.total} image{'s' if result.total != 1 else ''}, newest first."
        return (count, items, f"Page {result.page} of {result.pages}", result.page,
                [g.id for g in result.items], None, gr.Group(visible=False))

    outputs = [summary, thumbs, page_label, page, page_ids, selected, details_box]

    @user_facing
    def show(ids: list, evt: gr.SelectData, request: gr.Request):
        user = shell.user(request)
        index = evt.index if isinstance(evt.index, int) else None
        if index is None or not 0 <= index < len(ids):
            return None, "", gr.Group(visible=False)
        g = studio.get(user_id=user.id, generation_id=ids[index])
        return g.id, details_markdown(g), gr.Group(visible=True)

    @user_facing
    def remove(generation_id, page_no, request: gr.Request):
        user = shell.user(request)
        if not generation_id:
            raise gr.Error("Choose an image first.")
        studio.delete(user_id=user.id, generation_id=generation_id)
        gr.Info("Image deleted.")
        return render(page_no, request)

    @user_facing
    def go_newer(page_no, request: gr.Request):
        return render(max(1, int(page_no or 1) - 1), request)

    @user_facing
    def go_older(page_no, request: gr.Request):
        return render(int(page_no or 1) + 1, request)

    newer.click(go_newer, [page], outputs, api_visibility="private")
    older.click(go_older, [page], outputs, api_visibility="private")
    thumbs.select(show, [page_ids], [selected, details, details_box], api_visibility="private")
    delete.click(remove, [selected, page], outputs, api_visibility="private")
    shell.on_show(render, [page], outputs)

    if form is None:
        reuse.visible = False
        return

    @user_facing
    def reuse_settings(generation_id, request: gr.Request):
        user = shell.user(request)
        if not generation_id:
            raise gr.Error("Choose an image first.")
        g = studio.get(user_id=user.id, generation_id=generation_id)
        catalog = services.catalog
        style = g.style if g.style in catalog.style_names else catalog.default_style
        ratio = g.aspect_ratio if g.aspect_ratio in [r.ratio for r in catalog.aspect_ratios] \
            else catalog.default_aspect_ratio
        resolution = g.resolution if g.resolution in [r.key for r in catalog.resolutions] \
            else catalog.default_resolution
        switch = [gr.Tabs(selected=form.tab_id)] if tabs is not None else []
        return (g.prompt, style, ratio, resolution, *switch)

    refresh_fn, refresh_inputs, refresh_outputs = form.refresh
    reuse.click(reuse_settings, [selected],
                [form.prompt, form.style, form.aspect_ratio, form.resolution] + ([tabs] if tabs is not None else []),
                api_visibility="private") \
        .then(refresh_fn, refresh_inputs, refresh_outputs, api_visibility="private", show_progress="hidden")
