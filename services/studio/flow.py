"""The generation flow: validate → moderate → per-user limits → hold credits → engine (streaming
partial frames as previews) → post-process (worker thread) → store → mark stored → capture.

Any failure after the hold releases it: the user sees "Generation failed — you were not
charged." and the reason in plain words. The generation's image key is committed in its own step
before the capture, so if the process dies in between, the sweep (services/maintenance.py)
captures the hold only when the image was really stored (`Studio.is_stored`). Each job records
the process start that opened it (`boot_id`), so a restarted process settles the jobs of one
that died at once, instead of waiting for their holds to expire. Partial frames are only
previews: a stream that breaks after some of them is a failure like any other (released, not
charged); its frames expire with the others (the owner may still be fetching the last one).
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import logging
import os
import time
import unicodedata
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from sqlmodel import Session, select

from models.base import utcnow
from models.generation import Generation, ModerationEvent
from models.user import User
from services import sizing
from services.catalog import Catalog, Style
from services.db import Database
from services.engines import EngineImage, EngineRequest, ImageEngine, PartialFrame
from services.entitlements import Entitlements
from services.errors import (
    ContentRejected,
    DomainError,
    NotFound,
    PermissionDenied,
    ProviderFailed,
    RateLimited,
    ValidationFailed,
)
from services.maintenance import current_boot
from services.moderation import Moderator
from services.references import Reference, ReferenceRefused, ReferenceRules
from services.settings import Settings
from services.storage import ImageMissing, ImageStore, reference_variant
from services.studio.batch import current_batch
from services.studio.gallery import StudioGallery
from services.studio.limits import SlotsTaken, UserSlots, check_rate, check_slots
from services.studio.postprocess import Rendered, postprocess
from services.studio.previews import Preview, PreviewFrames, preview_webp
from services.studio.recovery import StudioRecovery
from services.studio.types import GalleryImage, GenerationRequest, GenerationResult

log = logging.getLogger("studio.generate")

MAX_PROMPT_CHARS = 4000
NOT_CHARGED = "Generation failed — you were not charged."

ProgressFn = Callable[[float, str], None]
PreviewFn = Callable[[Preview], None]  # called on the event loop, must not block
# A reference image: an upload (its name, and its bytes or a server-side path the caller made,
# never one a user typed) or one of the user's stored images. A mask is an upload.
Upload = tuple[str, bytes | str | os.PathLike]
ReferenceInput = Upload | GalleryImage
GALLERY_MAX_BYTES = 200 * 1024 * 1024  # our own stored files: no upload cap (the pixel and edge rules hold)


class Studio(StudioGallery, StudioRecovery):
    """Image generation for signed-in users. One instance per process; async-safe.

    The generation flow is here; the gallery (gallery, get, delete, open_image) and the crash
    recovery (settle_abandoned, is_stored) come from the classes it inherits."""

    def __init__(self, *, db: Database, ledger, catalog: Catalog, engine: ImageEngine, moderator: Moderator,
                 store: ImageStore, settings: Settings, entitlements: Entitlements, boot_id: str | None = None,
                 clock: Callable[[], datetime] = utcnow):
        self.db = db
        self.ledger = ledger
        self.catalog = catalog
        self.engine = engine
        self.moderator = moderator
        self.store = store
        self.settings = settings
        self.entitlements = entitlements  # who may use which resolution
        self.boot_id = boot_id or current_boot().id  # stamped on every job this process opens
        self.clock = clock  # the rate window and the timestamps we write
        self._slots = UserSlots(settings.generation_max_concurrent)
        # Give up on the engine well before the hold could expire under a live process.
        self._engine_deadline = max(10.0, settings.hold_ttl_seconds * 0.8)
        # Worker threads: post-processing is CPU work (as many threads as cores); database and
        # disk steps mostly wait (fsync, locks), so they get their own, larger pool and never
        # hold up the encoders (asyncio's default pool has only cores + 4 threads).
        cpu_threads = max(2, os.cpu_count() or 2)
        self._cpu = ThreadPoolExecutor(max_workers=cpu_threads, thread_name_prefix="studio-cpu")
        # CPU jobs submitted and not finished (counted on the event loop). A preview frame is only
        # encoded while the encoders keep up (fewer than twice their number in the pool): in a burst
        # the final images go first, and a frame that could not be shown in time is skipped.
        self._cpu_jobs = 0
        self.preview_backlog = 2 * cpu_threads
        self._io = ThreadPoolExecutor(max_workers=32, thread_name_prefix="studio-io")
        self.previews = PreviewFrames()
        # A user's own saved styles (services/studio/styles.py), asked before the catalog; set by app.py.
        self.style_resolver: Callable[..., Style | None] | None = None

    @staticmethod
    async def _in(pool: ThreadPoolExecutor, fn, /, *args, **kwargs):
        """Run fn in a worker thread of `pool`, off the event loop (like asyncio.to_thread)."""
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        return await loop.run_in_executor(pool, functools.partial(ctx.run, fn, *args, **kwargs))

    async def _on_cpu(self, fn, /, *args):
        """Run fn on the CPU pool, counted in `_cpu_jobs` while it waits and runs."""
        self._cpu_jobs += 1
        try:
            return await self._in(self._cpu, fn, *args)
        finally:
            self._cpu_jobs -= 1

    # What the UI shows before generating ------------------------------------------------------

    @property
    def offline(self) -> bool:
        return self.engine.name == "offline"

    def styled_prompt(self, *, prompt: str, style: str) -> str:
        """The exact text the engine would receive (empty when the style is unknown)."""
        try:
            return self.catalog.style(style).apply((prompt or "").strip())
        except ValidationFailed:
            return ""

    # Validation -------------------------------------------------------------------------------

    def style_for(self, name, *, user_id: int | None = None) -> Style:
        """The user's own saved style called `name` if they have one, else the catalog's."""
        if user_id is not None and self.style_resolver is not None and isinstance(name, str):
            own = self.style_resolver(user_id=user_id, name=name)
            if own is not None:
                return own
        return self.catalog.style(name)

    def validate(self, *, prompt, style, aspect_ratio, resolution, user_id: int | None = None) -> GenerationRequest:
        """Check every input against the rules and the catalog (and the user's own styles);
        raises ValidationFailed. A saved style's default ratio and resolution fill empty ones."""
        if not isinstance(prompt, str):
            raise ValidationFailed("Please enter a prompt.", key="error.prompt_empty")
        text = prompt.replace("\r\n", "\n").replace("\r", "\n").strip()
        if not text:
            raise ValidationFailed("Please enter a prompt.", key="error.prompt_empty")
        if len(text) > MAX_PROMPT_CHARS:
            raise ValidationFailed(
                f"The prompt is too long: {len(text):,} characters (at most {MAX_PROMPT_CHARS:,}).",
                key="error.prompt_too_long", length=len(text), limit=MAX_PROMPT_CHARS,
            )
        for ch in text:
            if ch in "\n\t":
                continue
            if unicodedata.category(ch) in ("Cc", "Cs"):
                raise ValidationFailed(
                    f"The prompt contains a control character (U+{ord(ch):04X}). Please remove it.",
                    key="error.prompt_control_character", code=f"U+{ord(ch):04X}",
                )
        style_obj = self.style_for(style, user_id=user_id)
        aspect_ratio = aspect_ratio or getattr(style_obj, "aspect_ratio", None) or aspect_ratio
        resolution = resolution or getattr(style_obj, "resolution", None) or resolution
        return GenerationRequest(
            prompt=text, style=style_obj, aspect=self.catalog.aspect_ratio(aspect_ratio),
            resolution=self.catalog.resolution(resolution), styled_prompt=style_obj.apply(text),
        )

    def size_plan(self, request: GenerationRequest) -> sizing.SizePlan:
        return sizing.plan(self.engine.size_rules, request.aspect.width, request.aspect.height,
                           request.resolution.long_edge)

    # The flow ---------------------------------------------------------------------------------

    async def generate(self, *, user_id: int, is_admin: bool, prompt: str, style: str, aspect_ratio: str,
                       resolution: str, progress: ProgressFn | None = None,
                       on_preview: PreviewFn | None = None, references: Sequence[ReferenceInput] = (),
                       mask: Upload | None = None) -> GenerationResult:
        """Make one image and charge for it exactly once, or charge nothing and raise a DomainError.
        `on_preview` gets each partial frame the engine streams (a small WebP), before the result.

        With `references` (uploads `(name, bytes or path)` and/or `GalleryImage`s of the user's
        own images, in order) the job is an edit: each is checked and cleaned before anything is
        held (a refusal names the file), moderated with the prompt, priced at the catalog's
        `reference_surcharge` each on top of the resolution, sent to the engine and stored with
        the generation. `mask` (an upload; alpha 0 where to change) applies to the first reference."""
        report = _reporter(progress)
        started = time.perf_counter()
        timings: dict[str, int] = {}

        request = self.validate(prompt=prompt, style=style, aspect_ratio=aspect_ratio, resolution=resolution,
                                user_id=user_id)
        block = self.entitlements.resolution_block(user_id=user_id, is_admin=is_admin,
                                                   resolution=request.resolution.key)
        if block:
            gate = request.resolution.requires
            raise PermissionDenied(block, key=f"ui.generate.gate_{gate}_block" if gate else None,
                                   resolution=request.resolution.key)
        if references or mask is not None:
            t = time.perf_counter()
            request = await self._in(self._cpu, self.with_references, request, user_id=user_id,
                                     references=references, mask=mask)
            timings["references_ms"] = _ms(t)
        if not is_admin:
            await self._in(self._io, self._check_rate, user_id)

        report(0.05, "Checking the prompt")
        t = time.perf_counter()
        verdict = await self.moderator.check(text=request.styled_prompt)
        timings["moderation_ms"] = _ms(t)
        if verdict.flagged:
            await self._in(self._io, self._record_rejection, user_id, request.prompt, verdict.source,
                                    verdict.categories)
            raise ContentRejected(
                "This prompt was refused by our content rules, so nothing was made and nothing was charged.",
                key="error.prompt_refused",
            )
        if request.references:
            report(0.1, "Checking the reference images")
            t = time.perf_counter()
            verdict = await self.moderator.check_images(text=request.styled_prompt,
                                                        images=[r.data for r in request.references])
            timings["moderation_ms"] += _ms(t)
            if verdict.flagged:
                await self._in(self._io, self._record_rejection, user_id,
                               f"{request.prompt} [with {len(request.references)} reference image(s)]",
                               verdict.source, verdict.categories)
                raise ContentRejected("These reference images were refused by our content rules, so nothing "
                                      "was made and nothing was charged.", key="error.references_refused")

        t = time.perf_counter()
        async with self._slots.slot(user_id, exempt=is_admin) as waited:
            if waited:
                log.debug("user %s waited for a generation slot", user_id)
            timings["queue_ms"] = _ms(t)
            return await self._run(user_id=user_id, is_admin=is_admin, request=request, report=report,
                                   timings=timings, started=started, on_preview=on_preview)

    # Reference images ---------------------------------------------------------------------------

    @property
    def reference_rules(self) -> ReferenceRules:
        return ReferenceRules(max_images=self.settings.reference_max_images,
                              max_bytes=self.settings.reference_max_bytes)

    def reference_cost(self, *, resolution: str, references: int) -> int:
        """What a job costs with `references` reference images (the cost line before generating)."""
        return self.catalog.resolution(resolution).price + self.catalog.reference_surcharge * max(0, references)

    def with_references(self, request: GenerationRequest, *, user_id: int, references: Sequence[ReferenceInput],
                        mask: Upload | None) -> GenerationRequest:
        """The request with its references checked and cleaned (in a worker thread, before any
        hold). ReferenceRefused names the file; another user's image is NotFound."""
        rules = self.reference_rules
        references = list(references or ())
        if not references:
            raise ValidationFailed("A mask needs a reference image to edit: add the image first.")
        if len(references) > rules.max_images:
            raise ReferenceRefused(None, "error.reference.too_many", count=len(references), limit=rules.max_images)
        uploads, stored, sources = [], {}, []
        for position, item in enumerate(references):
            if isinstance(item, GalleryImage):
                name, data = self._stored_reference(user_id, item)
                stored[position] = (name, data)
                sources.append(item.generation_id)
            elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str | None):
                uploads.append((position, item))
                sources.append("upload")
            else:
                raise ValidationFailed("A reference image must be an uploaded file or one of your images.")
        prepared: dict[int, Reference] = {}
        if uploads:
            cleaned = rules.prepare([item for _, item in uploads])  # four at a time, the first refusal in order
            prepared.update({position: ref for (position, _), ref in zip(uploads, cleaned, strict=True)})
        own = ReferenceRules(max_images=rules.max_images, max_bytes=GALLERY_MAX_BYTES)
        for position, (name, data) in stored.items():
            prepared[position] = own.prepare_one(name, data)
        refs = tuple(prepared[i] for i in range(len(references)))
        mask_png = None
        if mask is not None:
            if not (isinstance(mask, tuple) and len(mask) == 2):
                raise ValidationFailed("The mask must be an uploaded image.")
            mask_png = rules.prepare_mask(mask[0] or "mask", mask[1], refs[0])
        return dataclasses.replace(request, references=refs, sources=tuple(sources), mask=mask_png,
                                   surcharge=self.catalog.reference_surcharge)

    def reference_image(self, *, user_id: int, item: GalleryImage) -> tuple[str, bytes]:
        """(name, bytes) of one of the user's stored images given as a reference (the editor shows
        it to paint a mask on); NotFound for anyone else's."""
        return self._stored_reference(user_id, item)

    def _stored_reference(self, user_id: int, item: GalleryImage) -> tuple[str, bytes]:
        generation = self.get(user_id=user_id, generation_id=item.generation_id)  # NotFound if not theirs
        if generation.image_key is None or generation.status == "failed":
            raise NotFound("Image not found.")
        if item.reference is None:
            variant, name = "png", f"image-{generation.id[:12]}.png"
        else:
            stored = generation.reference_images or []
            if not isinstance(item.reference, int) or not 0 <= item.reference < len(stored):
                raise NotFound("Reference image not found.")
            variant, name = stored[item.reference]["variant"], stored[item.reference]["name"]
        try:
            return name, self._read_variant(generation.image_key, variant)
        except ImageMissing:
            raise NotFound("Image not found.") from None

    def references_of(self, *, user_id: int, generation_id: str) -> list[dict]:
        """The reference images a generation of the user's was made from, in order (gallery
        details, "Reuse settings"): variant (for /images/{id}/{variant}), name, width, height, source."""
        generation = self.get(user_id=user_id, generation_id=generation_id)
        return [dict(item) for item in generation.reference_images or []]

    def preview_frame(self, *, user_id: int, generation_id: str, index: int) -> bytes:
        """A preview frame of the user's generation in progress (kept a few minutes); NotFound otherwise."""
        frame = self.previews.get(user_id=user_id, generation_id=generation_id, index=index)
        if frame is None:
            raise NotFound("Preview not found.")
        return frame

    def _frames_to(self, on_preview: PreviewFn | None, *, user_id: int, gen_id: str, report, started: float):
        """The engine's partial-frame callback: a small WebP, kept for its owner, handed to the UI."""
        if on_preview is None:
            return None
        total = max(1, self.engine.partial_images)

        async def on_partial(frame: PartialFrame) -> None:
            if self._cpu_jobs >= self.preview_backlog:
                log.debug("preview frame %s of %s skipped: the encoders are behind", frame.index, gen_id)
                return
            webp, width, height = await self._on_cpu(preview_webp, frame)
            self.previews.put(user_id=user_id, generation_id=gen_id, index=frame.index, webp=webp)
            preview = Preview(generation_id=gen_id, index=frame.index, total=total, webp=webp, width=width,
                              height=height, elapsed=time.perf_counter() - started)
            report(0.15 + 0.6 * (frame.index + 1) / (total + 1), preview.stage)
            on_preview(preview)

        return on_partial

    async def _run(self, *, user_id: int, is_admin: bool, request: GenerationRequest, report, timings,
                   started, on_preview: PreviewFn | None = None) -> GenerationResult:
        plan = self.size_plan(request)
        # This process's slot is ours; the user may still have others running in other replicas
        # (SlotsTaken): wait for one of those to end, at most until a hold could have expired.
        give_up, pause = time.monotonic() + self.settings.hold_ttl_seconds, 0.05
        while True:
            opening = asyncio.ensure_future(self._in(
                self._io, self._open_job, user_id=user_id, is_admin=is_admin, request=request, plan=plan))
            try:
                generation, hold = await asyncio.shield(opening)
                break
            except SlotsTaken:
                if time.monotonic() > give_up:
                    raise RateLimited(
                        f"You already have {self.settings.generation_max_concurrent} images in progress. "
                        "Please wait for one to finish — nothing was charged.") from None
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)
            except asyncio.CancelledError:
                opening.add_done_callback(self._release_abandoned)
                raise
        gen_id = generation.id
        phase = "engine"
        try:
            report(0.15, "Generating the image (offline preview)" if self.offline else "Generating the image")
            t = time.perf_counter()
            result = await asyncio.wait_for(
                self.engine.generate(EngineRequest(prompt=request.styled_prompt, style=request.style,
                                                   width=plan.requested[0], height=plan.requested[1],
                                                   user_id=user_id, references=request.references,
                                                   mask=request.mask),
                                     self._frames_to(on_preview, user_id=user_id, gen_id=gen_id, report=report,
                                                     started=started)),
                timeout=self._engine_deadline,
            )
            timings["engine_ms"] = _ms(t)

            report(0.8, "Finishing the image")
            t = time.perf_counter()
            rendered = await self._on_cpu(postprocess, result, *plan.delivered)
            timings["postprocess_ms"] = _ms(t)

            report(0.9, "Saving")
            phase = "storing"
            t = time.perf_counter()
            await self._in(self._io, self.store.save, gen_id,
                           {"png": rendered.png, "webp": rendered.webp, "thumb": rendered.thumb,
                            **{reference_variant(i, ref.extension): ref.data
                               for i, ref in enumerate(request.references)}})
            timings["store_ms"] = _ms(t)
            await self._in(self._io, self._mark_stored, gen_id, rendered=rendered, result=result)

            phase = "finishing"
            timings["total_ms"] = _ms(started)
            generation = await self._in(self._io, self._finish, gen_id, hold, timings)
        except asyncio.CancelledError:
            # The caller went away. A finishing step already running in its thread completes on
            # its own; anything earlier is released now (synchronously: we are being cancelled).
            if phase != "finishing":
                self._fail(gen_id, hold, "The request was cancelled before the image was ready.", timings)
                self.previews.drop(gen_id)
            raise
        except Exception as exc:
            error = _user_error(exc)
            if isinstance(error, ContentRejected):
                await self._in(self._io, self._record_rejection, user_id, request.prompt, "provider", [])
            reason = error.message
            timings["total_ms"] = _ms(started)
            settled = await self._in(self._io, self._fail, gen_id, hold, reason, timings)
            if settled == "captured":  # the charge went through after all: the image is theirs
                generation = await self._in(self._io, self._get_row, gen_id)
                webp = await self._in(self._io, self._read_variant, gen_id, "webp")
                return await self._result(user_id, generation, webp, request)
            raise type(error)(f"{NOT_CHARGED} {reason}") from exc
        report(1.0, "Done")
        return await self._result(user_id, generation, rendered.webp, request)

    async def _result(self, user_id: int, generation: Generation, webp: bytes,
                      request: GenerationRequest) -> GenerationResult:
        balance = await self._in(self._io, self.ledger.balance, user_id)
        what = "offline preview" if generation.engine == "offline" else "image"
        made_from = ""
        if request.references:
            count = len(request.references)
            made_from = f" from {count} reference image{'s' if count != 1 else ''}"
            made_from += " (a painted region changed)" if request.mask is not None else ""
        message = (f"Done: a {generation.width}×{generation.height} {request.resolution.key} {what} in the "
                   f"{request.style.name} style{made_from}. {generation.cost} credits charged.")
        return GenerationResult(generation=generation, display_webp=webp, message=message, balance=balance.total)

    # Steps that write (each one short transaction) ----------------------------------------------

    def _open_job(self, *, user_id: int, is_admin: bool, request: GenerationRequest, plan: sizing.SizePlan):
        """The generation row and its hold, in one transaction: not enough credits leaves no trace."""
        with self.db.transaction() as s:
            if s.exec(select(User.id).where(User.id == user_id).with_for_update(key_share=True)).first() is None:
                raise NotFound("Unknown user.")
            if not is_admin:
                self._check_rate(user_id, session=s)
                check_slots(s, user_id, limit=self.settings.generation_max_concurrent)
            generation = Generation(
                id=uuid.uuid4().hex, user_id=user_id, prompt=request.prompt, styled_prompt=request.styled_prompt,
                style=request.style.name, aspect_ratio=request.aspect.ratio, resolution=request.resolution.key,
                requested_width=plan.requested[0], requested_height=plan.requested[1],
                engine=self.engine.name, model=self.engine.model, cost=request.cost, status="pending",
                boot_id=self.boot_id, created_at=self.clock(), batch_id=current_batch.get(),
                masked=request.mask is not None,
                reference_images=[
                    {"variant": reference_variant(i, ref.extension), "name": ref.name, "width": ref.width,
                     "height": ref.height, "source": source}
                    for i, (ref, source) in enumerate(zip(request.references, request.sources, strict=True))
                ] or None,
            )
            s.add(generation)
            s.flush()
            hold = self.ledger.reserve(user_id=user_id, amount=request.cost, job_id=generation.id, session=s)
        return generation, hold

    def _mark_stored(self, gen_id: str, *, rendered: Rendered, result: EngineImage) -> None:
        """Committed on its own, before the capture: from here the stale-hold sweep would capture."""
        with self.db.transaction() as s:
            generation = s.get(Generation, gen_id)
            generation.image_key = gen_id
            generation.width, generation.height = rendered.width, rendered.height
            generation.model = (result.model or generation.model)[:64]
            generation.usage = result.usage
            s.add(generation)

    def _finish(self, gen_id: str, hold, timings: dict) -> Generation:
        """Capture the hold and mark the generation done, in one transaction."""
        with self.db.transaction() as s:
            generation = s.get(Generation, gen_id)
            captured = self.ledger.capture(hold, session=s)
            generation.finished_at = self.clock()
            generation.timings = dict(timings)
            if captured.status == "captured":
                generation.status = "succeeded"
                s.add(generation)
                return generation
            # Only if the hold was settled behind our back (it outlived its expiry): not charged.
            generation.status = "failed"
            generation.error = "The generation took too long and its reservation expired."
            s.add(generation)
        self._delete_files(gen_id)
        raise ProviderFailed(generation.error)

    def _fail(self, gen_id: str, hold, reason: str, timings: dict) -> str:
        """Release the hold and mark the generation failed. Returns the hold's final status."""
        try:
            with self.db.transaction() as s:
                generation = s.get(Generation, gen_id)
                settled = self.ledger.release(hold, reason, session=s)
                generation.finished_at = self.clock()
                generation.timings = dict(timings)
                if settled.status == "captured":
                    generation.status = "succeeded"
                else:
                    generation.status = "failed"
                    generation.error = reason[:1000]
                s.add(generation)
        except Exception:
            # The hold stays pending; the stale-hold sweep settles it (captured only if stored).
            log.exception("could not release the hold of generation %s", gen_id)
            return "pending"
        if settled.status != "captured":
            self._delete_files(gen_id)
        return settled.status

    def _release_abandoned(self, opening: asyncio.Future) -> None:
        """The caller was cancelled while its hold was being placed: give the credits back."""
        if opening.cancelled() or opening.exception() is not None:
            return
        generation, hold = opening.result()
        asyncio.get_running_loop().run_in_executor(
            self._io, self._fail, generation.id, hold, "The request was cancelled before the image was ready.", {})

    def _read_variant(self, key: str, variant: str) -> bytes:
        content = self.store.open(key, variant)
        return content.read_bytes() if isinstance(content, Path) else content

    def _check_rate(self, user_id: int, *, session: Session | None = None) -> None:
        check_rate(self.db, user_id, limit=self.settings.generation_rate_per_minute, now=self.clock(),
                   session=session)

    def _record_rejection(self, user_id: int, prompt: str, source: str, categories: list[str]) -> None:
        log.warning("prompt refused for user %s by %s (%s)", user_id, source, ", ".join(categories) or "-")
        try:
            with self.db.transaction() as s:
                s.add(ModerationEvent(user_id=user_id, prompt=prompt, source=source, categories=list(categories)))
        except Exception:
            log.exception("could not record a moderation rejection")

    def _get_row(self, gen_id: str) -> Generation:
        with self.db.session() as s:
            return s.get(Generation, gen_id)



# Helpers --------------------------------------------------------------------------------------


def _user_error(exc: Exception) -> DomainError:
    if isinstance(exc, (ContentRejected, ProviderFailed)):
        return exc
    if isinstance(exc, TimeoutError):
        return ProviderFailed("The image engine took too long.")
    if isinstance(exc, DomainError):
        return ProviderFailed(exc.message)
    log.exception("generation failed unexpectedly")
    return ProviderFailed("Something went wrong on our side. Please try again.")


def _reporter(progress: ProgressFn | None) -> ProgressFn:
    def report(fraction: float, stage: str) -> None:
        if progress is None:
            return
        try:
            progress(fraction, stage)
        except Exception:  # progress display must never break a generation
            log.debug("progress callback failed", exc_info=True)

    return report


def _ms(since: float) -> int:
    return round((time.perf_counter() - since) * 1000)
