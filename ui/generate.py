"""Generate tab: prompt, style, aspect ratio, resolution (with its cost), the exact prompt sent,
a live cost line, Generate with staged progress, then the image, its details and a PNG download.

Public API (gradio_client with `Authorization: Bearer <api key>`):
  /generate (prompt, style, aspect_ratio, resolution) -> (image, message, balance)
  /balance () -> balance
Every other event here is private.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import anyio
import gradio as gr

from services.container import Services
from services.errors import DomainError
from ui.common import Shell, image_url, user_facing


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


def image_file(url: str, *, for_api: bool) -> dict:
    """The image output as Gradio's FileData, pointing at the owner-checked route, never at a file in
    Gradio's cache (which any signed-in user holding the URL can fetch, also after a delete). The
    event runs with postprocess=False so that Gradio passes the URL through instead of caching it.
    For the API, `is_stream` makes gradio_client download the URL itself, with its own headers (the
    API key); otherwise it would ask /gradio_api/file= to fetch the URL, anonymously."""
    return {"path": url, "url": url, "orig_name": "image.webp", "mime_type": "image/webp",
            "is_stream": for_api, "meta": {"_type": "gradio.FileData"}}


def build(services: Services, shell: Shell, *, tabs: gr.Tabs | None = None, tab_id: str = "generate") -> GenerateForm:
    """The tab's components and events. `tabs` (the app's gr.Tabs) lets "Buy credits" open Pricing;
    the returned form lets another tab fill the inputs (the gallery's "Reuse settings")."""
    studio, catalog = services.studio, services.catalog

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

    @user_facing
    def cost_line(resolution_key: str, request: gr.Request):
        return cost_for(shell.user(request), resolution_key)

    def cost_for(user, resolution_key: str, have: int | None = None):
        try:
            res = catalog.resolution(resolution_key)
            block = services.entitlements.resolution_block(user_id=user.id, is_admin=user.is_admin,
                                                           resolution=res.key)
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

    @user_facing
    def preview(prompt_text: str, style_name: str) -> str:
        return studio.styled_prompt(prompt=prompt_text or "", style=style_name or "")

    @user_facing
    def refresh(prompt_text: str, style_name: str, resolution_key: str, request: gr.Request):
        line, button = cost_line(resolution_key, request)
        return preview(prompt_text, style_name), line, button

    async def make(prompt, style, aspect_ratio, resolution, request: gr.Request, progress, *, for_api: bool):
        user = await anyio.to_thread.run_sync(shell.user, request)  # a database read: off the loop

        def report(fraction: float, stage: str) -> None:
            progress(fraction, desc=stage)

        result = await studio.generate(user_id=user.id, is_admin=user.is_admin, prompt=prompt, style=style,
                                       aspect_ratio=aspect_ratio, resolution=resolution, progress=report)
        g = result.generation
        details = (f"{html.escape(result.message)}  \n"
                   f"[Download PNG]({result.png_url}) · {g.width}×{g.height} · {g.aspect_ratio} · "
                   f"{'offline preview' if g.engine == 'offline' else g.model}")
        return image_file(image_url(request, g.id, "webp"), for_api=for_api), details, result.balance

    @user_facing
    async def generate(prompt: str, style: str, aspect_ratio: str, resolution: str, request: gr.Request,
                       progress=gr.Progress()):
        """Make one image. Returns the image, a message (with the PNG download link) and your balance."""
        return await make(prompt, style, aspect_ratio, resolution, request, progress, for_api=True)

    @user_facing
    async def generate_ui(prompt: str, style: str, aspect_ratio: str, resolution: str, request: gr.Request,
                          progress=gr.Progress()):
        return await make(prompt, style, aspect_ratio, resolution, request, progress, for_api=False)

    @user_facing
    def balance_now(request: gr.Request) -> int:
        """Your current balance in credits."""
        # A plain def: Gradio runs it in its worker threads, so both reads stay off the event loop.
        return services.ledger.balance(shell.user(request).id).total

    @user_facing
    def after(resolution_key: str, request: gr.Request):
        user = shell.user(request)
        balance = services.ledger.balance(user.id)  # one read for the cost line and the header
        line, button = cost_for(user, resolution_key, balance.total)
        if shell.balance is None:
            return line, button
        return line, button, shell.balance_text(user.id, balance=balance)

    # postprocess=False: the image is a URL on the owner-checked route (see image_file).
    api_trigger.click(generate, [prompt, api_style, api_aspect_ratio, api_resolution], [image, message, balance],
                      api_name="generate", api_visibility="public", postprocess=False)
    go.click(generate_ui, [prompt, style, aspect_ratio, resolution], [image, message, balance],
             api_name="generate_ui", api_visibility="private", postprocess=False) \
        .then(after, [resolution], [cost, buy] + ([shell.balance] if shell.balance is not None else []),
              api_visibility="private", show_progress="hidden")
    gr.api(balance_now, api_name="balance")

    for trigger in (prompt.change, style.change):
        trigger(preview, [prompt, style], [sent], api_visibility="private", show_progress="hidden",
                trigger_mode="always_last", queue=False)
    resolution.change(cost_line, [resolution], [cost, buy], api_visibility="private", show_progress="hidden")
    if tabs is not None:
        buy.click(user_facing(lambda: gr.Tabs(selected="pricing")), None, [tabs], api_visibility="private",
                  queue=False)
    shell.on_show(refresh, [prompt, style, resolution], [sent, cost, buy])

    return GenerateForm(prompt=prompt, style=style, aspect_ratio=aspect_ratio, resolution=resolution,
                        tab_id=tab_id, refresh=(refresh, [prompt, style, resolution], [sent, cost, buy]))
