"""Generate tab: prompt, style, aspect ratio, resolution (with its cost), the exact prompt sent,
a live cost line, Generate with staged progress, then the image, its details and a PNG download.

Public API (gradio_client with `Authorization: Bearer <api key>`):
  /generate (prompt, style, aspect_ratio, resolution) -> (image, message, balance)
  /balance () -> balance
Every other event here is private.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder

from services.container import Services
from services.errors import DomainError
from ui.common import Shell


@dataclass
class GenerateForm:
    """The tab's inputs, so another tab (the gallery's "Reuse settings") can fill them."""

    prompt: gr.Textbox
    style: gr.Dropdown
    aspect_ratio: gr.Radio
    resolution: gr.Radio
    tab_id: str
    refresh: tuple  # (fn, inputs, outputs) that redraws the cost line and the prompt preview


def style_choices(services: Services) -> list[tuple[str, str]]:
    return [(f"{s.label} — {s.description}", s.name) for s in services.catalog.styles]


def resolution_choices(services: Services) -> list[tuple[str, str]]:
    out = []
    for r in services.catalog.resolutions:
        gate = {"paid": " · paid plans", "purchase": " · after a purchase"}.get(r.requires or "", "")
        out.append((f"{r.label} · {r.price} credits{gate}", r.key))
    return out


def display_file(webp: bytes) -> str:
    """Write the display WebP into Gradio's own cache (named by its hash, like Gradio does), so it is
    served as is: no re-encode of a 4K image, and never a path under DATA_DIR (a blocked path)."""
    digest = hashlib.sha256(webp).hexdigest()
    path = Path(get_upload_folder()) / "studio" / digest / "image.webp"
    try:
        os.utime(path)  # shown again: restart its age for Gradio's delete_cache
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{os.getpid()}-{threading.get_ident()}.tmp")
        tmp.write_bytes(webp)
        tmp.replace(path)
    return str(path)


def enclosing(kind: type) -> gr.blocks.BlockContext | None:
    """The nearest enclosing layout block of `kind` (e.g. the app's gr.Tabs) while building."""
    from gradio.context import get_render_context

    block = get_render_context()
    while block is not None and not isinstance(block, kind):
        block = getattr(block, "parent", None)
    return block


def build(services: Services, shell: Shell) -> GenerateForm:
    studio, catalog = services.studio, services.catalog
    tabs = enclosing(gr.Tabs)
    tab = enclosing(gr.Tab)
    tab_id = getattr(tab, "id", None) or "generate"

    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            prompt = gr.Textbox(label="Prompt", lines=4, max_lines=12, max_length=4000,
                                placeholder="Describe the image you want…")
            style = gr.Dropdown(style_choices(services), value=catalog.default_style, label="Style")
            aspect_ratio = gr.Radio([(r.label, r.ratio) for r in catalog.aspect_ratios],
                                    value=catalog.default_aspect_ratio, label="Aspect ratio")
            resolution = gr.Radio(resolution_choices(services), value=catalog.default_resolution,
                                  label="Resolution")
            with gr.Accordion("Exact prompt sent to the engine", open=False):
                sent = gr.Textbox(show_label=False, interactive=False, lines=3, max_lines=12)
            cost = gr.Markdown(elem_classes="cost-line")
            with gr.Row():
                go = gr.Button("Generate", variant="primary", scale=3)
                buy = gr.Button("Buy credits", visible=False, scale=1)
        with gr.Column(scale=3, min_width=320):
            image = gr.Image(label="Offline preview" if studio.offline else "Your image", type="filepath",
                             format="webp", interactive=False, buttons=["fullscreen"], height=560)
            message = gr.Markdown()
            balance = gr.Number(label="Balance", precision=0, visible=False)
    # The public /generate endpoint takes plain strings, so that a value outside the catalog gets
    # the studio's own message (Dropdown and Radio would refuse it with Gradio's generic one).
    with gr.Group(visible=False):
        api_style = gr.Textbox(label="style")
        api_aspect_ratio = gr.Textbox(label="aspect_ratio")
        api_resolution = gr.Textbox(label="resolution")
        api_trigger = gr.Button("generate")

    def cost_line(resolution_key: str, request: gr.Request):
        return cost_for(shell.user(request), resolution_key)

    def cost_for(user, resolution_key: str, have: int | None = None):
        try:
            res = catalog.resolution(resolution_key)
            block = studio.resolution_block(user_id=user.id, is_admin=user.is_admin, resolution=res.key)
        except DomainError as err:
            return err.message, gr.Button(visible=False)
        if have is None:
            have = services.ledger.balance(user.id).total
        text = f"This image costs **{res.price} credits** · you have **{have}**"
        short = have < res.price
        if block:
            text += f"  \n{block}"
        elif short:
            text += (f"  \nNot enough credits for a {res.key} image: buy a pack or a plan on the "
                     "**Pricing** tab. Nothing is charged for a refused request.")
        return text, gr.Button(visible=bool(short or block) and tabs is not None)

    def preview(prompt_text: str, style_name: str) -> str:
        return studio.styled_prompt(prompt=prompt_text or "", style=style_name or "")

    def refresh(prompt_text: str, style_name: str, resolution_key: str, request: gr.Request):
        line, button = cost_line(resolution_key, request)
        return preview(prompt_text, style_name), line, button

    async def generate(prompt: str, style: str, aspect_ratio: str, resolution: str, request: gr.Request,
                       progress=gr.Progress()):
        """Make one image. Returns the image, a message (with the PNG download link) and your balance."""
        user = shell.user(request)

        def report(fraction: float, stage: str) -> None:
            progress(fraction, desc=stage)

        try:
            result = await studio.generate(user_id=user.id, is_admin=user.is_admin, prompt=prompt, style=style,
                                           aspect_ratio=aspect_ratio, resolution=resolution, progress=report)
        except DomainError as err:
            raise shell.domain_error(err) from None
        path = await asyncio.to_thread(display_file, result.display_webp)
        g = result.generation
        details = (f"{html.escape(result.message)}  \n"
                   f"[Download PNG]({result.png_url}) · {g.width}×{g.height} · {g.aspect_ratio} · "
                   f"{'offline preview' if g.engine == 'offline' else g.model}")
        return path, details, result.balance

    async def balance_now(request: gr.Request) -> int:
        """Your current balance in credits."""
        user = shell.user(request)
        return (await asyncio.to_thread(services.ledger.balance, user.id)).total

    def after(resolution_key: str, request: gr.Request):
        user = shell.user(request)
        balance = services.ledger.balance(user.id)  # one read for the cost line and the header
        line, button = cost_for(user, resolution_key, balance.total)
        if shell.balance is None:
            return line, button
        return line, button, shell.balance_text(user.id, balance=balance)

    api_trigger.click(generate, [prompt, api_style, api_aspect_ratio, api_resolution], [image, message, balance],
                      api_name="generate", api_visibility="public")
    go.click(generate, [prompt, style, aspect_ratio, resolution], [image, message, balance],
             api_name="generate_ui", api_visibility="private") \
        .then(after, [resolution], [cost, buy] + ([shell.balance] if shell.balance is not None else []),
              api_visibility="private", show_progress="hidden")
    gr.api(balance_now, api_name="balance")

    for trigger in (prompt.change, style.change):
        trigger(preview, [prompt, style], [sent], api_visibility="private", show_progress="hidden",
                trigger_mode="always_last", queue=False)
    resolution.change(cost_line, [resolution], [cost, buy], api_visibility="private", show_progress="hidden")
    if tabs is not None:
        buy.click(lambda: gr.Tabs(selected="pricing"), None, [tabs], api_visibility="private", queue=False)
    shell.on_show(refresh, [prompt, style, resolution], [sent, cost, buy])

    form = GenerateForm(prompt=prompt, style=style, aspect_ratio=aspect_ratio, resolution=resolution,
                        tab_id=tab_id, refresh=(refresh, [prompt, style, resolution], [sent, cost, buy]))
    shell.generate_form = form  # for the gallery's "Reuse settings"
    return form
