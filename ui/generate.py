"""Generate tab: prompt, style, aspect ratio, resolution (with its cost), the exact prompt sent,
a live cost line, Generate (disabled, with the reason, when the balance cannot pay), then live
previews with the stage and the elapsed time, and the image, its details and a PNG download.

Public API (gradio_client with `Authorization: Bearer <api key>`):
  /generate (prompt, style, aspect_ratio, resolution) -> (image, message, balance)
      a generator: each partial frame first (image = the preview, message = its stage, balance =
      None), then the final image; a refusal raises gr.Error with the studio's message
  /edit (prompt, style, aspect_ratio, resolution, references: [file, …], mask: file | None)
      -> (image, message, balance)
      the same with reference images (gradio_client's `handle_file`): each checked and cleaned
      before anything is held, the mask (alpha 0 where to change) applying to the first; the
      price is the resolution's plus the catalog's `reference_surcharge` per reference
  /balance () -> balance
Every other event here is private. The page's Generate runs its own event (`generate_ui`, the same
server-side checks): a refusal there is a notice next to the button, the last good image stays.

Preview frames are served by `preview_routes` (owner-checked, from the studio's memory), never
from Gradio's file cache.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import gradio as gr
from fastapi import APIRouter, Request
from gradio.route_utils import get_request_origin

from services import i18n
from services.container import Services
from services.errors import DomainError, ValidationFailed
from services.studio import GenerationResult, Preview
from ui import references as reference_area
from ui.common import Shell, image_url, language_of, report_unexpected, user_facing

log = logging.getLogger("ui.generate")

SESSION_ENDED = "Your session ended - sign in again"
SIGN_IN_AGAIN = "/login?next=/"
TICK_SECONDS = 1.0  # how often the page's status line counts the seconds while it waits

# Installed once per page by the notice component: Ctrl/Cmd+Enter in the prompt generates; arrow
# keys move within a choice group (Gradio 6.31 gives every radio input a name of its own, so the
# browser's own arrow-key movement never happens); on a
# phone, a new preview or image is brought to the top of the screen; any Gradio call answered 401 (the session ended:
# signed out in another tab, expired, password reset) says so and goes to the sign-in page,
# instead of Gradio's error.
PAGE_JS = """
if (!window.__studioGenerate) {
  window.__studioGenerate = true;
  let ending = false;
  const ended = () => {
    if (ending) return;
    ending = true;
    const bar = document.createElement('div');
    bar.className = 'studio-session-ended';
    bar.setAttribute('role', 'alert');
    bar.textContent = %(ended)s;
    document.body.prepend(bar);
    setTimeout(() => window.location.assign(%(login)s), 2500);
  };
  const realFetch = window.fetch.bind(window);
  window.fetch = async (...args) => {
    const response = await realFetch(...args);
    const target = args[0];
    const url = String((target && target.url) || target);
    if (response.status === 401 && url.includes('/gradio_api/')) {
      ended();
      return new Promise(() => {});  // Gradio never sees it: no error badge, the page leaves
    }
    return response;
  };
  document.addEventListener('keydown', (event) => {
    if (event.key !== 'Enter' || !(event.ctrlKey || event.metaKey)) return;
    if (!(event.target.closest && event.target.closest('#studio-prompt'))) return;
    event.preventDefault();
    const button = document.querySelector('#studio-generate');
    if (button && !button.disabled) button.click();
  }, true);
  document.addEventListener('keydown', (event) => {
    const keys = {ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1};
    const target = event.target;
    if (!(event.key in keys) || !target.matches || !target.matches('input[type=radio]')) return;
    const group = target.closest('.wrap');
    if (!group) return;
    const radios = [...group.querySelectorAll('input[type=radio]:not(:disabled)')];
    const at = radios.indexOf(target);
    if (at < 0 || radios.length < 2) return;
    event.preventDefault();
    const next = radios[(at + keys[event.key] + radios.length) %% radios.length];
    next.focus();
    next.click();
  }, true);
  let shownSrc = null;
  new MutationObserver(() => {
    const img = document.querySelector('#studio-result img');
    const src = img ? img.getAttribute('src') : null;
    if (src === shownSrc) return;
    const first = shownSrc === null;
    shownSrc = src;
    const row = document.querySelector('.studio-generate');
    if (row) row.classList.toggle('has-result', !!src);  // on a phone the result then comes first
    if (first || !src || window.innerWidth > 700) return;
    requestAnimationFrame(() => {
      const result = document.querySelector('#studio-result');
      if (result) window.scrollTo({top: window.scrollY + result.getBoundingClientRect().top - 8});
    });
  }).observe(document.body, {subtree: true, childList: true, attributes: true, attributeFilter: ['src']});
}
"""


@dataclass
class GenerateForm:
    """The tab's inputs, so another tab (the gallery's "Reuse settings") can fill them."""

    prompt: gr.Textbox
    style: gr.Dropdown
    aspect_ratio: gr.Radio
    resolution: gr.Radio
    tab_id: str
    refresh: tuple  # (fn, inputs, outputs) that redraws the cost line, Generate and the prompt preview
    references: reference_area.ReferencesArea | None = None  # the gallery's Edit / Use as reference fill it


def style_label(style, language: str | None) -> str:
    return i18n.catalog_text(language, "styles", style.name, "name", style.label)


def style_choices(services: Services, shell: Shell | None = None) -> list[tuple[str, str]]:
    """The style's name only: the dropdown shows it whole; its description is shown below. With the
    shell, the labels are in the page's language (assets/i18n/catalog.<language>.json)."""
    if shell is None:
        return [(s.label, s.name) for s in services.catalog.styles]
    return [(shell.words(f"ui.style.{s.name}", lambda lang, s=s: style_label(s, lang)), s.name)
            for s in services.catalog.styles]


def style_note(services: Services, name: str | None, language: str | None = None) -> str:
    style = next((s for s in services.catalog.styles if s.name == name), None)
    if style is None:
        return ""
    return html.escape(i18n.catalog_text(language, "styles", style.name, "description", style.description))


def aspect_choices(services: Services, shell: Shell) -> list[tuple[str, str]]:
    return [(shell.words(f"ui.aspect.{r.ratio}", lambda lang, r=r: i18n.catalog_text(
        lang, "aspect_ratios", r.ratio, None, r.label)), r.ratio) for r in services.catalog.aspect_ratios]


def resolution_choices(services: Services, shell: Shell | None = None) -> list[tuple[str, str]]:
    def label(r, language):
        gate = {"paid": "ui.generate.gate_paid", "purchase": "ui.generate.gate_purchase"}.get(r.requires or "")
        return i18n.t(language, "ui.generate.resolution_choice", resolution=r.label, credits=r.price) + (
            i18n.t(language, gate) if gate else "")

    if shell is None:
        return [(label(r, None), r.key) for r in services.catalog.resolutions]
    return [(shell.words(f"ui.resolution.{r.key}", lambda lang, r=r: label(r, lang)), r.key)
            for r in services.catalog.resolutions]


STAGES = {"Checking the prompt": "ui.stage.checking", "Generating the image": "ui.stage.generating",
          "Generating the image (offline preview)": "ui.stage.generating_offline",
          "Finishing the image": "ui.stage.finishing", "Saving": "ui.stage.saving", "Done": "ui.stage.done"}


def stage_text(stage: str, language: str | None) -> str:
    """The studio's stage ("Checking the prompt", "Preview 1 of 3") in the page's language."""
    if stage in STAGES:
        return i18n.t(language, STAGES[stage])
    match = re.fullmatch(r"Preview (\d+) of (\d+)", stage)
    if match:
        return i18n.t(language, "ui.stage.preview", index=match.group(1), total=match.group(2))
    return stage


def result_text(result: GenerationResult, catalog, language: str | None) -> str:
    """What a finished generation says, in the page's language."""
    g = result.generation
    if language in (None, i18n.FALLBACK):
        return result.message
    style = next((s for s in catalog.styles if s.name == g.style), None)
    return i18n.t(language, "ui.generate.done_offline" if g.engine == "offline" else "ui.generate.done",
                  width=g.width, height=g.height, resolution=g.resolution,
                  style=style_label(style, language) if style else g.style, cost=g.cost)


def image_file(url: str, *, for_api: bool, name: str = "image.webp") -> dict:
    """The image output as Gradio's FileData, pointing at the owner-checked route, never at a file in
    Gradio's cache (which any signed-in user holding the URL can fetch, also after a delete). The
    event runs with postprocess=False so that Gradio passes the URL through instead of caching it.
    For the API, `is_stream` makes gradio_client download the URL itself, with its own headers (the
    API key); otherwise it would ask /gradio_api/file= to fetch the URL, anonymously."""
    return {"path": url, "url": url, "orig_name": name, "mime_type": "image/webp",
            "is_stream": for_api, "meta": {"_type": "gradio.FileData"}}


def preview_name(generation_id: str, index: int) -> str:
    return f"preview-{generation_id[:12]}-{index + 1}.webp"


def preview_url(request: gr.Request, preview: Preview) -> str:
    """The absolute URL of a preview frame on the owner-checked /previews route (see image_url)."""
    path = f"/previews/{preview.generation_id}/{preview.index}/{preview_name(preview.generation_id, preview.index)}"
    http = getattr(request, "request", None)
    return f"{get_request_origin(http, http.url.path)}{path}" if http is not None else path


def preview_routes(services: Services) -> APIRouter:
    """GET /previews/{generation_id}/{index}/{name}: a preview frame of the caller's own generation
    in progress (API key or session cookie), for a few minutes; 404 for anyone else."""
    from ui.web import owner_checked

    router = APIRouter()

    @router.get("/previews/{generation_id}/{index}/{name}", include_in_schema=False)
    def get_preview(generation_id: str, index: int, name: str, request: Request):
        return owner_checked(
            services, request, lambda user: (services.studio.preview_frame(
                user_id=user.id, generation_id=generation_id, index=index), "image/webp"),
            name=name, expected_name=preview_name(generation_id, index),
            headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"})

    return router


def notice(message: str, *, session_ended: bool = False, language: str | None = None) -> str:
    """The inline notice next to Generate (warning look, the app's words)."""
    link = f' <a href="{SIGN_IN_AGAIN}">{html.escape(i18n.t(language, "ui.generate.sign_in"))}</a>' \
        if session_ended else ""
    return f'<div class="studio-notice" role="status">{html.escape(message)}{link}</div>'


def status_line(stage: str, elapsed: float, language: str | None = None) -> str:
    seconds = i18n.t(language, "ui.generate.seconds", seconds=f"{elapsed:.0f}")
    return f"**{html.escape(stage_text(stage, language))}** · {seconds}"


def uploaded(value) -> tuple[str, Path]:
    """A file Gradio received through its upload route → (its shown name, its path). Only a file in
    Gradio's upload folder is taken (Gradio checks this too): never a path someone typed."""
    from gradio.utils import get_upload_folder

    raw = value.get("path") if isinstance(value, dict) else getattr(value, "path", value)
    if not isinstance(raw, str | Path) or not str(raw):
        raise ValidationFailed("A reference image must be an uploaded file.", key="error.reference_not_uploaded")
    path = Path(raw).resolve()
    if not path.is_relative_to(Path(get_upload_folder()).resolve()):
        raise ValidationFailed("A reference image must be an uploaded file.", key="error.reference_not_uploaded")
    return path.name, path


def discard_uploads(paths: list[Path]) -> None:
    """Remove uploaded files once the studio has read them: Gradio's folder answers anyone holding
    a file's URL, and the cleaned copies are what the studio keeps."""
    for path in paths:
        try:
            path.unlink(missing_ok=True)
            path.parent.rmdir()  # Gradio puts each upload in a folder of its own
        except OSError:
            log.debug("could not remove upload %s", path, exc_info=True)


async def generation_events(studio, *, user, prompt, style, aspect_ratio, resolution, progress=None,
                            tick: float | None = None, references=(), mask=None) -> AsyncIterator[tuple[str, object]]:
    """Run one generation and yield what the page or the API shows on the way: ("preview",
    Preview) for each partial frame, ("tick", stage) every `tick` seconds without one, and
    ("result", GenerationResult) last. A refusal or failure is raised (its DomainError). If the
    consumer goes away, the generation is cancelled (and its hold released by the studio)."""
    frames: asyncio.Queue[Preview] = asyncio.Queue()
    stage = ["Checking the prompt"]

    def report(fraction: float, text: str) -> None:
        stage[0] = text
        if progress is not None:
            progress(fraction, desc=text)

    task = asyncio.ensure_future(studio.generate(
        user_id=user.id, is_admin=user.is_admin, prompt=prompt, style=style, aspect_ratio=aspect_ratio,
        resolution=resolution, progress=report, on_preview=frames.put_nowait, references=references, mask=mask))
    try:
        while not task.done():
            getter = asyncio.ensure_future(frames.get())
            done, _ = await asyncio.wait({task, getter}, timeout=tick, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                yield "preview", getter.result()
                continue
            getter.cancel()
            if not task.done():
                yield "tick", stage[0]
        yield "result", task.result()
    finally:
        if not task.done():
            task.cancel()


def build(services: Services, shell: Shell, *, tabs: gr.Tabs | None = None, tab_id: str = "generate") -> GenerateForm:
    """The tab's components and events. `tabs` (the app's gr.Tabs) lets "Buy credits" open Pricing;
    the returned form lets another tab fill the inputs (the gallery's "Reuse settings")."""
    studio, catalog = services.studio, services.catalog

    with gr.Row(equal_height=False, elem_classes="studio-generate"):
        with gr.Column(scale=2, min_width=320, elem_classes="studio-form"):
            prompt = gr.Textbox(label=shell.text("ui.generate.prompt"), lines=4, max_lines=12, max_length=4000,
                                elem_id="studio-prompt", placeholder=shell.text("ui.generate.placeholder"))
            style = gr.Dropdown(style_choices(services, shell), value=catalog.default_style,
                                label=shell.text("ui.generate.style"), elem_id="studio-style")
            style_info = gr.Markdown(shell.words("ui.style_note", lambda lang: style_note(
                services, catalog.default_style, lang)), elem_classes="studio-style-note")
            aspect_ratio = gr.Radio(aspect_choices(services, shell),
                                    value=catalog.default_aspect_ratio, label=shell.text("ui.generate.aspect_ratio"),
                                    elem_classes="studio-compact")
            resolution = gr.Radio(resolution_choices(services, shell), value=catalog.default_resolution,
                                  label=shell.text("ui.generate.resolution"), elem_classes="studio-compact")
            cost = gr.Markdown(elem_classes="cost-line")
            with gr.Row(elem_classes="studio-actions"):
                go = gr.Button(shell.text("ui.generate.go"), variant="primary", scale=3, elem_id="studio-generate")
                buy = gr.Button(shell.text("ui.generate.buy"), visible=False, scale=1)
            notice_box = gr.HTML("", elem_id="studio-notice", js_on_load=PAGE_JS % {
                "ended": f'"{SESSION_ENDED}"', "login": f'"{SIGN_IN_AGAIN}"'})
            # Below Generate: on a phone the prompt, the choices and Generate fit the first screen.
            refs = reference_area.build(services, shell)
            with gr.Accordion(shell.text("ui.generate.sent"), open=False):
                sent = gr.Textbox(show_label=False, interactive=False, lines=3, max_lines=12)
        with gr.Column(scale=3, min_width=320, elem_id="studio-result-column"):
            image = gr.Image(label=shell.text("ui.generate.offline_image" if studio.offline else "ui.generate.image"),
                             type="filepath",
                             format="webp", interactive=False, buttons=["fullscreen"], height=560,
                             elem_id="studio-result")
            message = gr.Markdown(elem_id="studio-message")
            balance = gr.Number(label=shell.text("ui.generate.balance"), precision=0, visible=False)
    last_good = gr.State(None)  # (image, details) of the last image made here: it stays after a refusal
    # The public /generate endpoint takes plain strings, so that a value outside the catalog gets
    # the studio's own message (Dropdown and Radio would refuse it with Gradio's generic one).
    with gr.Group(visible=False):
        api_style = gr.Textbox(label="style")
        api_aspect_ratio = gr.Textbox(label="aspect_ratio")
        api_resolution = gr.Textbox(label="resolution")
        api_trigger = gr.Button("generate")
        api_references = gr.File(label="references", file_count="multiple", type="filepath")
        api_mask = gr.File(label="mask", file_count="single", type="filepath")
        api_edit = gr.Button("edit")

    @user_facing
    def cost_line(resolution_key: str, items, request: gr.Request):
        return cost_for(shell.user(request), resolution_key, count=len(items or []), language=language_of(request))

    def cost_for(user, resolution_key: str, have: int | None = None, count: int = 0, language: str | None = None):
        """(the cost line, Buy credits, Generate): Generate is off, with the reason, when this
        user cannot have this resolution now (the studio refuses it anyway). `count`: reference
        images, each adding the catalog's surcharge."""
        try:
            res = catalog.resolution(resolution_key)
            block = services.entitlements.resolution_block(user_id=user.id, is_admin=user.is_admin,
                                                           resolution=res.key)
        except DomainError as err:
            return err.text(language), gr.Button(visible=False), gr.Button(interactive=False)
        if have is None:
            have = services.ledger.balance(user.id).total
        total = studio.reference_cost(resolution=res.key, references=count)
        if count and catalog.reference_surcharge:
            text = i18n.t(language, "ui.generate.cost_references", total=total, price=res.price, count=count,
                          surcharge=catalog.reference_surcharge, have=have)
        else:
            text = i18n.t(language, "ui.generate.cost", price=total, have=have)
        short = have < total
        if block:
            gate = {"paid": "ui.generate.gate_paid_block", "purchase": "ui.generate.gate_purchase_block"}.get(
                res.requires or "")
            text += f"  \n{i18n.t(language, gate, resolution=res.key) if gate else block}"
        elif short:
            text += f"  \n{i18n.t(language, 'ui.generate.short', resolution=res.key)}"
        return (text, gr.Button(visible=bool(short or block) and tabs is not None),
                gr.Button(interactive=not (short or block)))

    @user_facing
    def preview(prompt_text: str, style_name: str) -> str:
        return studio.styled_prompt(prompt=prompt_text or "", style=style_name or "")

    @user_facing
    def describe_style(style_name: str, request: gr.Request) -> str:
        return style_note(services, style_name, language_of(request))

    @user_facing
    def refresh(prompt_text: str, style_name: str, resolution_key: str, items, request: gr.Request):
        line, button, can_go = cost_line(resolution_key, items, request)
        return preview(prompt_text, style_name), line, button, can_go

    def details_of(result: GenerationResult, request: gr.Request, elapsed: float | None = None) -> str:
        language = language_of(request)
        took = f" ({i18n.t(language, 'ui.generate.seconds', seconds=f'{elapsed:.0f}')})" if elapsed is not None else ""
        return (f"{html.escape(result_text(result, catalog, language))}{took}  \n"
                f"[{i18n.t(language, 'ui.generate.download_png')}]({image_url(request, result.id, 'png')})")

    @user_facing
    async def generate(prompt: str, style: str, aspect_ratio: str, resolution: str, request: gr.Request,
                       progress=gr.Progress()):
        """Make one image. Yields each preview frame (image, its stage, None) as it arrives, then the
        image, a message (with the PNG download link) and your balance."""
        async for shown in api_events(request, progress, prompt=prompt, style=style, aspect_ratio=aspect_ratio,
                                      resolution=resolution):
            yield shown

    @user_facing
    async def edit(prompt: str, style: str, aspect_ratio: str, resolution: str, references: list | None,
                   mask, request: gr.Request, progress=gr.Progress()):
        """Make one image from your reference images (PNG, JPEG or WebP; the first is the one a mask
        edits). `mask`: optional, the first image's shape, transparent where to change. Costs the
        resolution's price plus the reference surcharge per image. Yields the preview frames, then
        the image, a message and your balance; nothing is charged for a refusal."""
        files = [uploaded(value) for value in references or []]
        painted = uploaded(mask) if mask else None
        if not files:
            await anyio.to_thread.run_sync(discard_uploads, [painted[1]] if painted else [])
            raise ValidationFailed("Add at least one reference image (without any, use /generate).",
                                   key="error.edit_needs_reference")
        try:
            async for shown in api_events(request, progress, prompt=prompt, style=style, aspect_ratio=aspect_ratio,
                                          resolution=resolution, references=files, mask=painted):
                yield shown
        finally:
            await anyio.to_thread.run_sync(discard_uploads, [p for _, p in files] + ([painted[1]] if painted else []))

    async def api_events(request: gr.Request, progress, **job):
        """What /generate and /edit yield: each preview frame, then (image, details, balance)."""
        user = await anyio.to_thread.run_sync(shell.user, request)  # a database read: off the loop
        language = language_of(request)  # an API client says Accept-Language: zh-CN
        async for kind, value in generation_events(studio, user=user, progress=progress, **job):
            if kind == "preview":
                seconds = i18n.t(language, "ui.generate.seconds", seconds=f"{value.elapsed:.0f}")
                yield (image_file(preview_url(request, value), for_api=True,
                                  name=preview_name(value.generation_id, value.index)),
                       f"{stage_text(value.stage, language)} · {seconds}", None)
            elif kind == "result":
                g = value.generation
                engine = i18n.t(language, "api.offline_preview") if g.engine == "offline" else g.model
                details = (f"{html.escape(result_text(value, catalog, language))}  \n"
                           f"[{i18n.t(language, 'ui.generate.download_png')}]({value.png_url}) · "
                           f"{g.width}×{g.height} · {g.aspect_ratio} · {engine}")
                yield image_file(image_url(request, g.id, "webp"), for_api=True), details, value.balance

    @user_facing
    async def generate_ui(prompt: str, style: str, aspect_ratio: str, resolution: str, last, items, editor_value,
                          editing, request: gr.Request):
        """The page's Generate: the same studio call; what it says goes into the page, not an error.
        With reference images, once the image is made they are the stored copies (the uploads go)."""
        started = time.perf_counter()
        language = language_of(request)
        keep = (gr.skip(), gr.skip())  # the reference list and its thumbnails, unchanged
        try:
            user = await anyio.to_thread.run_sync(shell.user, request)
        except gr.Error:
            yield gr.skip(), gr.skip(), notice(i18n.t(language, "ui.generate.session_ended"), session_ended=True,
                                               language=language), gr.skip(), *keep
            return
        shown_preview = False
        yield gr.skip(), status_line("Checking the prompt", 0, language), "", gr.skip(), *keep
        try:
            job_refs, mask = await anyio.to_thread.run_sync(reference_area.job_inputs, items, editor_value, editing)
            async for kind, value in generation_events(studio, user=user, prompt=prompt, style=style,
                                                       aspect_ratio=aspect_ratio, resolution=resolution,
                                                       tick=TICK_SECONDS, references=job_refs, mask=mask):
                elapsed = time.perf_counter() - started
                if kind == "preview":
                    shown_preview = True
                    yield (image_file(preview_url(request, value), for_api=False),
                           status_line(value.stage, elapsed, language), gr.skip(), gr.skip(), *keep)
                elif kind == "tick":
                    yield gr.skip(), status_line(value, elapsed, language), gr.skip(), gr.skip(), *keep
                else:
                    shown = image_file(image_url(request, value.id, "webp"), for_api=False)
                    details = details_of(value, request, elapsed)
                    stored = reference_area.stored_items(value.generation)
                    if stored:
                        await anyio.to_thread.run_sync(discard_uploads, [
                            Path(item["path"]) for item in items or [] if item.get("kind") == "upload"])
                        keep = (stored, reference_area.thumbs_html(request, stored))
                    yield shown, details, "", (shown, details), *keep
        except Exception as err:  # noqa: BLE001 - every outcome is shown inline, none as an error badge
            said = (err.text(language_of(request)) if isinstance(err, DomainError)
                    else report_unexpected(err, "ui.generate", language_of(request)))
            previous_image, previous_details = last or (None, "")
            yield ((previous_image if shown_preview else gr.skip()), previous_details, notice(said, language=language),
                   gr.skip(), *keep)

    @user_facing
    def balance_now(request: gr.Request) -> int:
        """Your current balance in credits."""
        # A plain def: Gradio runs it in its worker threads, so both reads stay off the event loop.
        return services.ledger.balance(shell.user(request).id).total

    @user_facing
    def after(resolution_key: str, items, request: gr.Request):
        user = shell.user(request)
        balance = services.ledger.balance(user.id)  # one read for the cost line and the header
        line, button, can_go = cost_for(user, resolution_key, balance.total, count=len(items or []),
                                        language=language_of(request))
        if shell.balance is None:
            return line, button, can_go
        return line, button, can_go, shell.balance_text(user.id, balance=balance, request=request)

    # postprocess=False: the image is a URL on the owner-checked route (see image_file).
    api_trigger.click(generate, [prompt, api_style, api_aspect_ratio, api_resolution], [image, message, balance],
                      api_name="generate", api_visibility="public", postprocess=False)
    api_edit.click(edit, [prompt, api_style, api_aspect_ratio, api_resolution, api_references, api_mask],
                   [image, message, balance], api_name="edit", api_visibility="public", postprocess=False)
    go.click(generate_ui, [prompt, style, aspect_ratio, resolution, last_good, refs.items, refs.editor, refs.editing],
             [image, message, notice_box, last_good, refs.items, refs.thumbs],
             api_name="generate_ui", api_visibility="private", postprocess=False, show_progress="hidden") \
        .then(after, [resolution, refs.items], [cost, buy, go] + ([shell.balance] if shell.balance is not None else []),
              api_visibility="private", show_progress="hidden")
    gr.api(balance_now, api_name="balance")

    for trigger in (prompt.change, style.change):
        trigger(preview, [prompt, style], [sent], api_visibility="private", show_progress="hidden",
                trigger_mode="always_last", queue=False)
    style.change(describe_style, [style], [style_info], api_visibility="private", show_progress="hidden",
                 queue=False)
    resolution.change(cost_line, [resolution, refs.items], [cost, buy, go], api_visibility="private",
                      show_progress="hidden")
    refs.items.change(cost_line, [resolution, refs.items], [cost, buy, go], api_visibility="private",
                      show_progress="hidden")
    if tabs is not None:
        buy.click(user_facing(lambda: gr.Tabs(selected="pricing")), None, [tabs], api_visibility="private",
                  queue=False)
    shell.on_show(refresh, [prompt, style, resolution, refs.items], [sent, cost, buy, go])

    return GenerateForm(prompt=prompt, style=style, aspect_ratio=aspect_ratio, resolution=resolution,
                        tab_id=tab_id, refresh=(refresh, [prompt, style, resolution, refs.items], [sent, cost, buy, go]),
                        references=refs)
