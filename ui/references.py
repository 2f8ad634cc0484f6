"""The Generate tab's "Reference images" area (issue #11), built by ui/generate.py: a drop zone
(file picker, drag and drop; an image pasted anywhere on the tab lands there too), the chosen
images as thumbnails with a remove button, and "Edit a region", which opens the first one in
gr.ImageEditor: what is painted there becomes the mask (alpha 0 where painted, the image's size).

The list lives in a gr.State on the server (never in the browser): each item is an upload Gradio
received ({"kind": "upload", "path", "name"}) or one of the user's stored images ({"kind":
"gallery", "id", "reference": None | n, "name"}), put there by the gallery's "Edit" / "Use as
reference" / "Reuse settings" without uploading it again. The studio checks the owner of a stored
image on every use. Thumbnails of uploads come from Gradio's upload folder, those of stored images
from the owner-checked /images route; nothing user-supplied is handed to a Gradio file output.
"""

from __future__ import annotations

import html
import io
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from PIL import Image

from services import i18n
from services.container import Services
from services.references import mask_from_layers
from services.studio import GalleryImage
from ui.common import Shell, image_url, tr, user_facing

THUMBS_CSS = """
.sr-list { display: flex; flex-wrap: wrap; gap: 8px; }
.sr-item { position: relative; width: 84px; height: 84px; border-radius: 6px; overflow: hidden;
  background: var(--background-fill-secondary); margin: 0; }
.sr-item img { width: 100%; height: 100%; object-fit: cover; display: block; }
.sr-item figcaption { position: absolute; left: 0; right: 0; bottom: 0; font-size: 10px; padding: 1px 4px;
  background: rgba(0, 0, 0, .55); color: #fff; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.sr-remove { position: absolute; top: 2px; right: 2px; width: 22px; height: 22px; border-radius: 50%;
  border: none; background: rgba(0, 0, 0, .65); color: #fff; cursor: pointer; line-height: 22px; padding: 0; }
.sr-empty { font-size: .85rem; opacity: .75; margin: 0; }
"""

THUMBS_JS = """
element.addEventListener('click', (e) => {
  const button = e.target.closest && e.target.closest('.sr-remove');
  if (button) trigger('delete', {index: Number(button.dataset.index)});
});
if (!window.__studioPaste) {
  window.__studioPaste = true;
  // An image pasted on the Generate tab (outside a text field) goes into the reference drop zone.
  document.addEventListener('paste', (event) => {
    const files = [...(event.clipboardData ? event.clipboardData.files : [])].filter(f => f.type.startsWith('image/'));
    const target = event.target;
    if (!files.length || (target && target.closest && target.closest('textarea, input[type=text]'))) return;
    const input = document.querySelector('#studio-ref-picker input[type=file]');
    if (!input || !input.offsetParent && !document.querySelector('#studio-ref-picker')) return;
    event.preventDefault();
    const moved = new DataTransfer();
    files.forEach(f => moved.items.add(f));
    input.files = moved.files;
    input.dispatchEvent(new Event('change', {bubbles: true}));
  });
}
"""


@dataclass
class ReferencesArea:
    items: gr.State  # the references, in order (see the module's docstring)
    picker: gr.File
    thumbs: gr.HTML
    edit_region: gr.Button
    editor: gr.ImageEditor
    editing: gr.State  # True while the editor is open: its painting is the mask
    stop: gr.Button  # closes the editor (no mask)
    max_images: int


def build(services: Services, shell: Shell) -> ReferencesArea:
    limit = services.settings.reference_max_images
    surcharge = services.catalog.reference_surcharge
    def title(language: str) -> str:
        if surcharge:
            return i18n.t(language, "ui.references.title_priced", limit=limit, surcharge=surcharge)
        return i18n.t(language, "ui.references.title", limit=limit)

    with gr.Accordion(shell.words("ui.references.title_built", title), open=False, elem_id="studio-references"):
        items = gr.State([])
        picker = gr.File(label=shell.text("ui.references.picker"),
                         file_count="multiple", file_types=[".png", ".jpg", ".jpeg", ".webp"], type="filepath",
                         elem_id="studio-ref-picker")
        thumbs = gr.HTML(thumbs_html(None, []), js_on_load=THUMBS_JS, css_template=THUMBS_CSS,
                         elem_id="studio-ref-thumbs", apply_default_css=False)
        with gr.Row():
            edit_region = gr.Button(shell.text("ui.references.edit_region"), size="sm", interactive=False, elem_id="studio-edit-region")
            stop = gr.Button(shell.text("ui.references.stop_editing"), size="sm", visible=False, elem_id="studio-stop-editing")
        editor = gr.ImageEditor(label=shell.text("ui.references.editor"), type="pil",
                                visible=False, sources=[], transforms=(), layers=False, elem_id="studio-editor",
                                brush=gr.Brush(colors=["#ff2e88"], default_size=40, color_mode="fixed"),
                                canvas_size=(1024, 1024))
        editing = gr.State(False)

    area = ReferencesArea(items=items, picker=picker, thumbs=thumbs, edit_region=edit_region, editor=editor,
                          editing=editing, stop=stop, max_images=limit)

    @user_facing
    def add(files, current, request: gr.Request):
        shell.user(request)
        current = list(current or [])
        for value in files or []:
            if len(current) >= limit:
                gr.Warning(tr(request, "ui.references.too_many", limit=limit), title=tr(request, "ui.references.too_many_title"))
                break
            path = Path(value)
            current.append({"kind": "upload", "path": str(path), "name": path.name})
        return current, thumbs_html(request, current), None, gr.Button(interactive=bool(current))

    @user_facing
    def remove(current, evt: gr.EventData, request: gr.Request):
        data = getattr(evt, "_data", None)
        index = data.get("index") if isinstance(data, dict) else None
        current = list(current or [])
        if isinstance(index, int) and 0 <= index < len(current):
            gone = current.pop(index)
            if gone.get("kind") == "upload":
                from ui.generate import discard_uploads, uploaded

                discard_uploads([uploaded(gone.get("path"))[1]])  # only ever a file in Gradio's folder
        closed = not current or index == 0
        return (current, thumbs_html(request, current), gr.Button(interactive=bool(current)),
                *(editor_closed() if closed else (gr.skip(), gr.skip(), gr.skip())))

    @user_facing
    def open_editor(current, request: gr.Request):
        user = shell.user(request)
        if not current:
            raise gr.Error(tr(request, "ui.references.none_yet"), title=tr(request, "ui.references.none_yet_title"))
        return editor_open(first_image(services, user.id, current[0]))

    picker.upload(add, [picker, items], [items, thumbs, picker, edit_region], api_visibility="private",
                  show_progress="hidden")
    thumbs.delete(remove, [items], [items, thumbs, edit_region, editor, editing, stop],
                  api_visibility="private", show_progress="hidden")
    edit_region.click(open_editor, [items], [editor, editing, stop], api_visibility="private")
    stop.click(user_facing(lambda: editor_closed()), None, [editor, editing, stop], api_visibility="private",
               queue=False)
    return area


def editor_open(background: Image.Image):
    return (gr.ImageEditor(value={"background": background, "layers": [], "composite": None}, visible=True),
            True, gr.Button(visible=True))


def editor_closed():
    return gr.ImageEditor(value=None, visible=False), False, gr.Button(visible=False)


def first_image(services: Services, user_id: int, item: dict) -> Image.Image:
    """The first reference as a picture for the editor: an upload from Gradio's folder, or one of the
    user's stored images through the studio (owner-checked)."""
    if item.get("kind") == "gallery":
        _, data = services.studio.reference_image(user_id=user_id, item=gallery_item(item))
        source = io.BytesIO(data)
    else:
        from ui.generate import uploaded

        source = uploaded(item.get("path"))[1]
    with Image.open(source) as image:
        return image.convert("RGBA")


def gallery_item(item: dict) -> GalleryImage:
    reference = item.get("reference")
    return GalleryImage(str(item.get("id") or ""), reference if isinstance(reference, int) else None)


def job_inputs(items: list | None, editor_value, editing: bool) -> tuple[list, tuple | None]:
    """The studio's `references` and `mask` from the area's state: uploads as (name, path) from
    Gradio's folder, stored images as GalleryImage; the mask from what was painted in the editor."""
    from ui.generate import uploaded

    references = []
    for item in items or []:
        if item.get("kind") == "gallery":
            references.append(gallery_item(item))
        else:
            name, path = uploaded(item.get("path"))
            references.append((str(item.get("name") or name), path))
    mask = None
    if editing and references and isinstance(editor_value, dict) and editor_value.get("background") is not None:
        painted = mask_from_layers(editor_value["background"].size, editor_value.get("layers") or [])
        if painted is not None:
            mask = ("mask.png", painted)
    return references, mask


def stored_items(generation) -> list[dict]:
    """A generation's stored references as items of the area (after it was made, or "Reuse settings")."""
    return [{"kind": "gallery", "id": generation.id, "reference": i, "variant": str(ref.get("variant")),
             "name": str(ref.get("name") or f"reference {i + 1}")}
            for i, ref in enumerate(generation.reference_images or [])]


def original_item(generation) -> dict:
    """A generation's own image (its PNG original) as an item of the area."""
    return {"kind": "gallery", "id": generation.id, "reference": None, "name": f"image-{generation.id[:12]}.png"}


def thumbs_html(request: gr.Request | None, items: list) -> str:
    if not items:
        return '<p class="sr-empty">No reference images: the prompt alone makes the image.</p>'
    cells = []
    for index, item in enumerate(items):
        if item.get("kind") == "gallery":
            reference = item.get("reference")
            variant = "thumb" if reference is None else _variant(item)
            src = image_url(request, str(item.get("id")), variant)
        else:
            src = f"/gradio_api/file={item.get('path')}"
        name = html.escape(str(item.get("name") or ""), quote=True)
        cells.append(f'<figure class="sr-item" title="{name}"><img src="{html.escape(src, quote=True)}" alt="{name}">'
                     f'<figcaption>{index + 1}. {name}</figcaption>'
                     f'<button type="button" class="sr-remove" data-index="{index}" '
                     f'aria-label="Remove {name}">✕</button></figure>')
    return f'<div class="sr-list">{"".join(cells)}</div>'


def _variant(item: dict) -> str:
    return str(item.get("variant") or f"ref{item.get('reference')}.jpg")
