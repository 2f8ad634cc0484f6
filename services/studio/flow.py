"""The generation flow: validate → moderate → per-user limits → hold credits → engine →
post-process (worker thread) → store → mark stored → capture.

Any failure after the hold releases it: the user sees "Generation failed — you were not
charged." and the reason in plain words. The generation's image key is committed in its own step
before the capture, so if the process dies in between, the sweep (services/maintenance.py)
captures the hold only when the image was really stored (`Studio.is_stored`). Each job records
the process start that opened it (`boot_id`), so a restarted process settles the jobs of one
that died at once, instead of waiting for their holds to expire.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import io
import logging
import math
import os
import time
import unicodedata
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from PIL import Image
from sqlalchemy import func
from sqlmodel import Session, col, select

from models.base import utcnow
from models.generation import Generation, ModerationEvent
from models.user import User
from services import sizing
from services.catalog import AspectRatio, Catalog, Resolution, Style
from services.db import Database
from services.engines import EngineImage, EngineRequest, ImageEngine, make_engine
from services.errors import (
    Conflict,
    ContentRejected,
    DomainError,
    NotFound,
    PermissionDenied,
    ProviderFailed,
    RateLimited,
    ValidationFailed,
)
from services.maintenance import current_boot
from services.moderation import Moderator, make_moderator
from services.settings import Settings
from services.storage import VARIANTS, ImageMissing, ImageStore, media_type

__all__ = ["GalleryPage", "GenerationRequest", "GenerationResult", "Studio", "make_engine", "make_moderator"]

log = logging.getLogger("studio.generate")

MAX_PROMPT_CHARS = 4000
NOT_CHARGED = "Generation failed — you were not charged."
THUMB_EDGE = 384
WEBP_QUALITY = 82
WEBP_METHOD = 0  # 0 (fastest) .. 6 (smallest): at 4K, 0.3 s and ~2% larger than method 1
PNG_COMPRESS_LEVEL = 1  # 4K re-encodes: 1.1 s at level 1 vs 1.8 s at 3, for ~6% more bytes
RATE_WINDOW = timedelta(minutes=1)
ID_LENGTH = 32

# Encoders release the GIL: encoding the PNG and the WebP of one big image side by side halves
# the wait. Small and shared, so many jobs at once do not oversubscribe the CPU.
_ENCODERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="studio-encode")


@dataclass(frozen=True)
class GenerationRequest:
    """A request that passed validation."""

    prompt: str
    style: Style
    aspect: AspectRatio
    resolution: Resolution
    styled_prompt: str

    @property
    def cost(self) -> int:
        return self.resolution.price


@dataclass
class GenerationResult:
    generation: Generation
    display_webp: bytes  # the full-resolution WebP shown in the UI
    message: str
    balance: int  # the user's balance after the charge

    @property
    def id(self) -> str:
        return self.generation.id

    @property
    def png_url(self) -> str:
        return f"/images/{self.generation.id}/png"


@dataclass
class GalleryPage:
    items: list[Generation]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))


@dataclass
class Rendered:
    png: bytes
    webp: bytes
    thumb: bytes
    width: int
    height: int


ProgressFn = Callable[[float, str], None]


class Studio:
    """Image generation for signed-in users. One instance per process; async-safe."""

    def __init__(self, *, db: Database, ledger, catalog: Catalog, engine: ImageEngine, moderator: Moderator,
                 store: ImageStore, settings: Settings, billing=None, boot_id: str | None = None,
                 clock: Callable[[], datetime] = utcnow):
        self.db = db
        self.ledger = ledger
        self.catalog = catalog
        self.engine = engine
        self.moderator = moderator
        self.store = store
        self.settings = settings
        self.billing = billing
        self.boot_id = boot_id or current_boot().id  # stamped on every job this process opens
        self.clock = clock  # the rate window and the timestamps we write
        self._slots = _UserSlots(settings.generation_max_concurrent)
        # Give up on the engine well before the hold could expire under a live process.
        self._engine_deadline = max(10.0, settings.hold_ttl_seconds * 0.8)
        # Worker threads: post-processing is CPU work (as many threads as cores); database and
        # disk steps mostly wait (fsync, locks), so they get their own, larger pool and never
        # hold up the encoders (asyncio's default pool has only cores + 4 threads).
        self._cpu = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="studio-cpu")
        self._io = ThreadPoolExecutor(max_workers=32, thread_name_prefix="studio-io")

    @staticmethod
    async def _in(pool: ThreadPoolExecutor, fn, /, *args, **kwargs):
        """Run fn in a worker thread of `pool`, off the event loop (like asyncio.to_thread)."""
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        return await loop.run_in_executor(pool, functools.partial(ctx.run, fn, *args, **kwargs))

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

    def resolution_block(self, *, user_id: int, is_admin: bool, resolution: str) -> str | None:
        """Why this user may not pick this resolution, or None when they may."""
        res = self.catalog.resolution(resolution)
        if not res.requires or is_admin or self._requirement_met(user_id, res.requires):
            return None
        if res.requires == "paid":
            return f"{res.key} images need a paid plan. See the Pricing tab."
        return f"{res.key} images need a plan or a credit pack. See the Pricing tab."

    def _requirement_met(self, user_id: int, requirement: str) -> bool:
        if self.billing is None:
            return False
        return bool(self.billing.can_use_resolution(user_id, requirement))

    # Validation -------------------------------------------------------------------------------

    def validate(self, *, prompt, style, aspect_ratio, resolution) -> GenerationRequest:
        """Check every input against the rules and the catalog; raises ValidationFailed."""
        if not isinstance(prompt, str):
            raise ValidationFailed("Please enter a prompt.")
        text = prompt.replace("\r\n", "\n").replace("\r", "\n").strip()
        if not text:
            raise ValidationFailed("Please enter a prompt.")
        if len(text) > MAX_PROMPT_CHARS:
            raise ValidationFailed(
                f"The prompt is too long: {len(text):,} characters (at most {MAX_PROMPT_CHARS:,})."
            )
        for ch in text:
            if ch in "\n\t":
                continue
            if unicodedata.category(ch) in ("Cc", "Cs"):
                raise ValidationFailed(
                    f"The prompt contains a control character (U+{ord(ch):04X}). Please remove it."
                )
        style_obj = self.catalog.style(style)
        return GenerationRequest(
            prompt=text, style=style_obj, aspect=self.catalog.aspect_ratio(aspect_ratio),
            resolution=self.catalog.resolution(resolution), styled_prompt=style_obj.apply(text),
        )

    def size_plan(self, request: GenerationRequest) -> sizing.SizePlan:
        return sizing.plan(self.engine.size_rules, request.aspect.width, request.aspect.height,
                           request.resolution.long_edge)

    # The flow ---------------------------------------------------------------------------------

    async def generate(self, *, user_id: int, is_admin: bool, prompt: str, style: str, aspect_ratio: str,
                       resolution: str, progress: ProgressFn | None = None) -> GenerationResult:
        """Make one image and charge for it exactly once, or charge nothing and raise a DomainError."""
        report = _reporter(progress)
        started = time.perf_counter()
        timings: dict[str, int] = {}

        request = self.validate(prompt=prompt, style=style, aspect_ratio=aspect_ratio, resolution=resolution)
        block = self.resolution_block(user_id=user_id, is_admin=is_admin, resolution=request.resolution.key)
        if block:
            raise PermissionDenied(block)
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
                "This prompt was refused by our content rules, so nothing was made and nothing was charged."
            )

        t = time.perf_counter()
        async with self._slots.slot(user_id, exempt=is_admin) as waited:
            if waited:
                log.debug("user %s waited for a generation slot", user_id)
            timings["queue_ms"] = _ms(t)
            return await self._run(user_id=user_id, is_admin=is_admin, request=request, report=report,
                                   timings=timings, started=started)

    async def _run(self, *, user_id: int, is_admin: bool, request: GenerationRequest, report, timings,
                   started) -> GenerationResult:
        plan = self.size_plan(request)
        opening = asyncio.ensure_future(self._in(
            self._io, self._open_job, user_id=user_id, is_admin=is_admin, request=request, plan=plan))
        try:
            generation, hold = await asyncio.shield(opening)
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
                                                   user_id=user_id)),
                timeout=self._engine_deadline,
            )
            timings["engine_ms"] = _ms(t)

            report(0.8, "Finishing the image")
            t = time.perf_counter()
            rendered = await self._in(self._cpu, postprocess, result, *plan.delivered)
            timings["postprocess_ms"] = _ms(t)

            report(0.9, "Saving")
            phase = "storing"
            t = time.perf_counter()
            await self._in(self._io, self.store.save, gen_id,
                                    {"png": rendered.png, "webp": rendered.webp, "thumb": rendered.thumb})
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
        message = (f"Done: a {generation.width}×{generation.height} {request.resolution.key} {what} in the "
                   f"{request.style.name} style. {generation.cost} credits charged.")
        return GenerationResult(generation=generation, display_webp=webp, message=message, balance=balance.total)

    # Steps that write (each one short transaction) ----------------------------------------------

    def _open_job(self, *, user_id: int, is_admin: bool, request: GenerationRequest, plan: sizing.SizePlan):
        """The generation row and its hold, in one transaction: not enough credits leaves no trace."""
        with self.db.transaction() as s:
            if s.exec(select(User.id).where(User.id == user_id).with_for_update(key_share=True)).first() is None:
                raise NotFound("Unknown user.")
            if not is_admin:
                self._check_rate(user_id, session=s)
            generation = Generation(
                id=uuid.uuid4().hex, user_id=user_id, prompt=request.prompt, styled_prompt=request.styled_prompt,
                style=request.style.name, aspect_ratio=request.aspect.ratio, resolution=request.resolution.key,
                requested_width=plan.requested[0], requested_height=plan.requested[1],
                engine=self.engine.name, model=self.engine.model, cost=request.cost, status="pending",
                boot_id=self.boot_id, created_at=self.clock(),
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

    def _delete_files(self, gen_id: str) -> None:
        try:
            self.store.delete(gen_id)
        except Exception:
            log.exception("could not delete the files of generation %s", gen_id)

    def _check_rate(self, user_id: int, *, session: Session | None = None) -> None:
        limit = self.settings.generation_rate_per_minute
        since = self.clock() - RATE_WINDOW
        query = select(func.count()).select_from(Generation).where(
            Generation.user_id == user_id, Generation.created_at > since)
        if session is None:
            with self.db.session() as s:
                recent = s.exec(query).one()
        else:
            recent = session.exec(query).one()
        if recent >= limit:
            raise RateLimited(
                f"You can start {limit} images a minute. Please wait a moment and try again — nothing was charged."
            )

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

    # The gallery and the images ---------------------------------------------------------------

    def gallery(self, *, user_id: int, page: int = 1, per_page: int = 24) -> GalleryPage:
        """The user's stored images, newest first."""
        per_page = min(max(int(per_page), 1), 100)
        page = max(int(page), 1)
        visible = (Generation.user_id == user_id, col(Generation.image_key).is_not(None),
                   col(Generation.deleted_at).is_(None), Generation.status != "failed")
        with self.db.session() as s:
            total = s.exec(select(func.count()).select_from(Generation).where(*visible)).one()
            items = s.exec(
                select(Generation).where(*visible)
                .order_by(col(Generation.created_at).desc(), col(Generation.id).desc())
                .offset((page - 1) * per_page).limit(per_page)
            ).all()
        return GalleryPage(items=list(items), page=page, per_page=per_page, total=total)

    def get(self, *, user_id: int, generation_id: str) -> Generation:
        """One of the user's generations; NotFound for anyone else's (or a deleted one)."""
        if not isinstance(generation_id, str) or len(generation_id) != ID_LENGTH:
            raise NotFound("Image not found.")
        with self.db.session() as s:
            generation = s.get(Generation, generation_id)
        if generation is None or generation.user_id != user_id or generation.deleted_at is not None:
            raise NotFound("Image not found.")
        return generation

    def delete(self, *, user_id: int, generation_id: str) -> None:
        generation = self.get(user_id=user_id, generation_id=generation_id)
        if generation.status == "pending" and generation.image_key is None:
            raise Conflict("This image is still being made. Try again when it is done.")
        with self.db.transaction() as s:
            row = s.get(Generation, generation_id)
            row.deleted_at = self.clock()
            s.add(row)
        self._delete_files(generation_id)

    def open_image(self, *, user_id: int, generation_id: str, variant: str) -> tuple[bytes | Path, str]:
        """(content or local path, media type) of the owner's image; NotFound otherwise."""
        if variant not in VARIANTS:
            raise NotFound("Image not found.")
        generation = self.get(user_id=user_id, generation_id=generation_id)
        if generation.image_key is None or generation.status == "failed":
            raise NotFound("Image not found.")
        try:
            return self.store.open(generation.image_key, variant), media_type(variant)
        except ImageMissing:
            raise NotFound("Image not found.") from None

    def settle_abandoned(self) -> int:
        """Generations left "pending" by a process that died: once the sweep has settled their
        hold (their process is gone, or the hold expired), mark them succeeded (captured: the
        image was stored) or failed (not charged; the orphan-file sweep removes any files)."""
        with self.db.session() as s:
            pending = s.exec(select(Generation.id).where(Generation.status == "pending")).all()
        settled = 0
        for gen_id in pending:
            hold = self.ledger.get_hold(gen_id)
            if hold is not None and hold.status == "pending":
                continue  # the sweep has not reached it yet
            with self.db.transaction() as s:
                generation = s.get(Generation, gen_id)
                if generation is None or generation.status != "pending":
                    continue
                if hold is not None and hold.status == "captured":
                    generation.status = "succeeded"
                else:
                    generation.status = "failed"
                    generation.error = "The app stopped before the image was ready. You were not charged."
                generation.finished_at = self.clock()
                s.add(generation)
                settled += 1
        return settled

    def is_stored(self, job_id: str) -> bool:
        """For the sweep: was this job's image stored (marked with its key)?"""
        with self.db.session() as s:
            key = s.exec(select(Generation.image_key).where(Generation.id == job_id)).first()
        return key is not None


# Post-processing (runs in a worker thread) ----------------------------------------------------


def postprocess(result: EngineImage, width: int, height: int) -> Rendered:
    """Decode, crop/resize to the exact size, and encode the PNG original, the WebP and the thumbnail."""
    source_png = None
    if result.image is not None:
        image = result.image
    else:
        image, source_png = _decode(result.data or b"")
    if image.mode == "P" and "transparency" in image.info or image.mode in ("LA", "PA"):
        image = image.convert("RGBA")
    elif image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGB")
    fitted = sizing.fit(image, width, height)

    webp_job = _ENCODERS.submit(_encode, fitted, "WEBP", quality=WEBP_QUALITY, method=WEBP_METHOD)
    if source_png is not None and fitted is image:
        png = source_png  # the provider's own lossless bytes (with any provenance metadata)
    else:
        png = _encode(fitted, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    factor = max(1, max(fitted.size) // THUMB_EDGE)
    thumb = fitted.reduce(factor) if factor > 1 else fitted.copy()  # box-average first: cheap at any size
    thumb.thumbnail((THUMB_EDGE, THUMB_EDGE), Image.LANCZOS)
    return Rendered(png=png, webp=webp_job.result(), thumb=_encode(thumb, "WEBP", quality=75, method=WEBP_METHOD),
                    width=fitted.width, height=fitted.height)


def _decode(data: bytes) -> tuple[Image.Image, bytes | None]:
    bad = ProviderFailed("The image provider sent back data that is not a valid image.")
    try:
        image = Image.open(io.BytesIO(data))
        if image.format not in ("PNG", "WEBP", "JPEG"):
            raise bad
        image.load()
    except ProviderFailed:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise bad from None
    return image, (data if image.format == "PNG" else None)


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


# Helpers --------------------------------------------------------------------------------------


class _UserSlots:
    """At most `limit` generations per user at once in this process; the rest wait their turn."""

    def __init__(self, limit: int):
        self.limit = limit
        self._entries: dict[int, list] = {}  # user id -> [semaphore, users]

    @asynccontextmanager
    async def slot(self, user_id: int, *, exempt: bool = False):
        if exempt:
            yield False
            return
        entry = self._entries.get(user_id)
        if entry is None:
            entry = self._entries[user_id] = [asyncio.Semaphore(self.limit), 0]
        entry[1] += 1
        waited = entry[0].locked()
        try:
            async with entry[0]:
                yield waited
        finally:
            entry[1] -= 1
            if entry[1] == 0 and self._entries.get(user_id) is entry:
                del self._entries[user_id]


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
