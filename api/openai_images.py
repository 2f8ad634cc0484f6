"""The OpenAI-compatible images API under /v1, for tools that already speak it (Open WebUI,
LibreChat, LobeChat, the `openai` SDK, scripts):

    POST /v1/images/generations   JSON, OpenAI's request and response shapes, plus `studio: {…}`;
                                  `stream: true` answers OpenAI's server-sent events
    POST /v1/images/edits         multipart (`image[]` or `image` files, `mask`, the other fields as
                                  text): the same flow with the images as references; `image_edit.*` events
    GET  /v1/models               the one image model this instance serves (and /v1/models/{id})

Authenticated by the studio's API keys (`Authorization: Bearer sk_studio_…`). Each of the `n`
images is one `Studio.generate` call, so it is validated, moderated, limited, held, charged and
refunded exactly as an image made on the Generate tab. Refusals use OpenAI's error JSON
(`{"error": {"message", "type", "param", "code"}}`) with the studio's own message.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import io
import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

import anyio
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse
from PIL import Image, UnidentifiedImageError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from api.common import (
    ApiError,
    Caller,
    Refusal,
    caller_for,
    invalid,
    refusal_for,
    unauthenticated,
    unexpected,
)
from services.catalog import AspectRatio, Catalog, Resolution
from services.container import Services
from services.errors import DomainError, InsufficientCredits, NotFound, PermissionDenied, ValidationFailed
from services.references import ReferenceRefused
from services.studio import GenerationResult, Preview

MAX_IMAGES = 4
QUALITIES = ("auto", "low", "medium", "high", "standard", "hd", "xhigh", "max")
RESPONSE_FORMATS = ("b64_json", "url")
OUTPUT_FORMATS = ("png", "webp", "jpeg")
SIZE_RE = re.compile(r"^\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*$")
MAX_SIDE = 16384
MAX_EDIT_FILES = 17  # the model's 16 images and a mask; the instance's REFERENCE_MAX_IMAGES is checked by the flow
FORM_INTEGERS = ("n", "partial_images", "output_compression")
OWNER = "image-studio"


# Reading the request -------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageJob:
    """A /v1/images/generations request in the studio's terms (every field checked)."""

    prompt: str
    style: str
    aspect_ratio: str
    resolution: str
    cost: int  # credits per image
    n: int
    response_format: str
    output_format: str
    output_compression: int | None
    quality: str | None  # accepted; the instance's IMAGE_QUALITY is what the engine uses
    stream: bool
    partial_images: int
    # Edits: the images (uploads `(name, bytes)` or the caller's own `GalleryImage`s, the first one
    # edited) and the mask `(name, bytes)` for the first; the cost above includes their surcharge.
    references: tuple = ()
    mask: tuple[str, bytes] | None = None


def default_style(catalog: Catalog) -> str:
    """What an OpenAI client gets without `style`: its prompt as written ("none") when the catalog
    has that style, else the catalog's default."""
    return "none" if "none" in (name.lower() for name in catalog.style_names) else catalog.default_style


def closest_aspect(width: int, height: int, ratios: tuple[AspectRatio, ...]) -> AspectRatio:
    """The catalog ratio nearest to width:height (compared as log ratios; ties: the first listed)."""
    wanted = math.log(width / height)
    return min(ratios, key=lambda r: abs(math.log(r.width / r.height) - wanted))


def tier_of(long_edge: int, resolutions: tuple[Resolution, ...]) -> Resolution:
    """The resolution tier a long edge falls in: the largest tier whose long edge it reaches
    (1536 → 1K, 2048 → 2K, 3840 → 4K), the smallest for anything below it."""
    ordered = sorted(resolutions, key=lambda r: r.long_edge)
    reached = [r for r in ordered if r.long_edge <= long_edge]
    return reached[-1] if reached else ordered[0]


def _text(body: dict, name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(f"`{name}` must be a string.", param=name, code="invalid_type")
    return value


def _choice(body: dict, name: str, choices: tuple[str, ...], default: str | None) -> str | None:
    value = _text(body, name)
    if value is None:
        return default
    if value.strip().lower() not in choices:
        raise invalid(f"Invalid `{name}` {value[:40]!r}: use one of {', '.join(choices)}.", param=name)
    return value.strip().lower()


def _integer(body: dict, name: str, default: int | None, low: int, high: int, what: str) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"`{name}` must be an integer.", param=name, code="invalid_type")
    if not low <= value <= high:
        raise invalid(f"`{name}` must be between {low} and {high} {what}; got {value}.", param=name)
    return value


def _field(param: str, lookup):
    """A catalog lookup whose ValidationFailed names the parameter it came from."""
    try:
        return lookup()
    except ValidationFailed as err:
        raise ApiError(refusal_for(err, param=param)) from None


def read_job(body: object, services: Services, *, shape: tuple[int, int] | None = None) -> ImageJob:
    """Check a generations (or edits) request against OpenAI's rules and the studio's catalog.
    `shape`: the first image of an edit (width, height), whose ratio `size: auto` keeps."""
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.", param=None, code="invalid_json")
    catalog, studio = services.catalog, services.studio
    _text(body, "model")  # accepted and not used: this instance serves its own model
    style = _field("style", lambda: catalog.style(_text(body, "style") or default_style(catalog)))

    size = (_text(body, "size") or "auto").strip().lower()
    if size == "auto" and shape is not None:
        aspect, tier = closest_aspect(*shape, catalog.aspect_ratios), None
    elif size == "auto":
        aspect, tier = catalog.aspect_ratio(catalog.default_aspect_ratio), None
    else:
        match = SIZE_RE.match(size)
        width, height = (int(match[1]), int(match[2])) if match else (0, 0)
        if not (match and 0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
            raise invalid(f"Invalid `size` {size[:40]!r}: use \"auto\" or WIDTHxHEIGHT, for example 1024x1024.",
                          param="size")
        aspect = closest_aspect(width, height, catalog.aspect_ratios)
        tier = tier_of(max(width, height), catalog.resolutions)
    wanted = _text(body, "resolution")
    if wanted is not None:
        resolution = _field("resolution", lambda: catalog.resolution(wanted))
    else:
        resolution = tier or catalog.resolution(catalog.default_resolution)

    response_format = _choice(body, "response_format", RESPONSE_FORMATS, "b64_json")
    output_format = _choice(body, "output_format", OUTPUT_FORMATS, "png")
    if response_format == "url" and output_format == "jpeg":
        raise invalid("`output_format` jpeg is only available with `response_format` b64_json; the stored "
                      "images are PNG and WebP.", param="output_format")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid("`stream` must be true or false.", param="stream", code="invalid_type")
    job = ImageJob(
        prompt=body.get("prompt"), style=style.name, aspect_ratio=aspect.ratio, resolution=resolution.key,
        cost=resolution.price, n=_integer(body, "n", 1, 1, MAX_IMAGES, "images"),
        response_format=response_format, output_format=output_format,
        output_compression=_integer(body, "output_compression", None, 0, 100, "percent"),
        quality=_choice(body, "quality", QUALITIES, None), stream=bool(stream),
        partial_images=_integer(body, "partial_images", 0, 0, 3, "frames"),
    )
    # The prompt last, through the studio's own rules: its message, with the parameter named.
    request = _field("prompt", lambda: studio.validate(prompt=job.prompt, style=job.style,
                                                        aspect_ratio=job.aspect_ratio, resolution=job.resolution))
    return dataclasses.replace(job, prompt=request.prompt)


async def read_edit_form(request: Request, *, max_files: int) -> tuple[dict, list[tuple[str, bytes]],
                                                                      tuple[str, bytes] | None]:
    """An edits request (multipart, as OpenAI's SDK sends it): the text fields as a generations body
    (numbers and `stream` parsed), the images (`image[]` or `image`, in order) and the mask."""
    if not (request.headers.get("content-type") or "").lower().startswith("multipart/form-data"):
        raise invalid("Send the edit as multipart/form-data: the images as `image[]` (or `image`) files, the "
                      "mask as `mask`, the other fields as text.", param=None, code="invalid_content_type")
    try:
        form = await request.form(max_files=max_files, max_fields=100)
    except (MultiPartException, HTTPException) as err:
        detail = getattr(err, "message", None) or getattr(err, "detail", "")
        raise invalid(f"The multipart body could not be read: {detail}", param=None,
                      code="invalid_multipart") from None
    body: dict = {}
    images: list[tuple[str, bytes]] = []
    mask: tuple[str, bytes] | None = None
    try:
        for name, value in form.multi_items():
            if name in ("image", "image[]", "mask"):
                if not isinstance(value, UploadFile):
                    raise invalid(f"`{name}` must be an uploaded file (PNG, JPEG or WebP).", param=name.rstrip("[]"),
                                  code="invalid_type")
                if name == "mask" and mask is not None:
                    raise invalid("Send one `mask`: it applies to the first image.", param="mask")
                item = (value.filename or ("mask.png" if name == "mask" else f"image-{len(images) + 1}"),
                        await value.read())
                if name == "mask":
                    mask = item
                else:
                    images.append(item)
            elif isinstance(value, UploadFile):
                raise invalid(f"`{name}` must be a text field, not a file.", param=name, code="invalid_type")
            else:
                body[name] = value
    finally:
        await form.close()
    if not images:
        raise invalid("Add the image to edit: one or more files as `image[]` (or `image`).", param="image",
                      code="missing_required_parameter")
    for name in [n for n, v in body.items() if v.strip() == ""]:
        del body[name]  # an empty field is an omitted one
    for name in FORM_INTEGERS:
        if name in body:
            try:
                body[name] = int(body[name].strip())
            except ValueError:
                raise invalid(f"`{name}` must be an integer.", param=name, code="invalid_type") from None
    if "stream" in body:
        flag = body["stream"].strip().lower()
        if flag not in ("true", "false"):
            raise invalid("`stream` must be true or false.", param="stream", code="invalid_type")
        body["stream"] = flag == "true"
    return body, images, mask


def image_shape(data: bytes) -> tuple[int, int] | None:
    """(width, height) of an image as it will stand upright, from its header; None when it cannot be
    read (the studio's reference check then refuses it with its own message)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            turned = image.getexif().get(0x0112) in (5, 6, 7, 8)  # EXIF orientation: a quarter turn
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    if width <= 0 or height <= 0:
        return None
    return (height, width) if turned else (width, height)


# Answering ------------------------------------------------------------------------------------


def answer(refusal: Refusal) -> JSONResponse:
    return JSONResponse(refusal.body(), status_code=refusal.status,
                        headers={"Cache-Control": "no-store", **refusal.headers})


def openai_errors(fn):
    """Every /v1 handler: ApiError and domain errors become OpenAI error JSON; anything else a
    500 with a reference id (details in the log only)."""
    where = f"{fn.__module__}.{fn.__qualname__}"

    @functools.wraps(fn)
    async def handler(*args, **kwargs):
        try:
            return await fn(*args, **kwargs)
        except ApiError as err:
            return answer(err.refusal)
        except DomainError as err:
            return answer(refusal_for(err))
        except Exception as err:  # noqa: BLE001 - mapped to a reference id
            return answer(unexpected(err, where))

    return handler


def _usage(results: list[GenerationResult]) -> dict:
    """OpenAI's usage block, summed over the images (zeros where the engine reports none)."""
    total = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0,
             "input_tokens_details": {"image_tokens": 0, "text_tokens": 0}}
    for result in results:
        usage = result.generation.usage if isinstance(result.generation.usage, dict) else {}
        for key in ("input_tokens", "output_tokens", "total_tokens"):
            total[key] += int(usage.get(key) or 0)
        details = usage.get("input_tokens_details") or {}
        for key in ("image_tokens", "text_tokens"):
            total["input_tokens_details"][key] += int(details.get(key) or 0) if isinstance(details, dict) else 0
    return total


def _param_of(err: DomainError) -> str | None:
    """The request parameter a refusal is about (a refused reference image names its file)."""
    if isinstance(err, ReferenceRefused):
        return "mask" if "mask" in err.reason else "image"
    if isinstance(err, NotFound):
        return "image"  # only an edit's reference can be missing
    return "resolution" if isinstance(err, PermissionDenied) else "prompt" if isinstance(err, ValidationFailed) else None


def _sse(event: dict) -> str:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"


def _encoded(webp: bytes, job: ImageJob) -> bytes:
    """A preview frame (WebP) in the request's `output_format`."""
    if job.output_format == "webp":
        return webp
    with Image.open(io.BytesIO(webp)) as image:
        out = io.BytesIO()
        if job.output_format == "jpeg":
            image.convert("RGB").save(out, "JPEG", quality=job.output_compression or 90)
        else:
            image.save(out, "PNG", compress_level=1)
        return out.getvalue()


def _as_jpeg(png: bytes, quality: int | None) -> bytes:
    with Image.open(io.BytesIO(png)) as image:
        out = io.BytesIO()
        image.convert("RGB").save(out, "JPEG", quality=quality if quality is not None else 90)
        return out.getvalue()


# The routes -------------------------------------------------------------------------------------


class OpenAIImages:
    """The /v1 handlers; each one authenticates the key, then calls the services."""

    def __init__(self, services: Services):
        self.services = services

    async def caller(self, request: Request) -> Caller:
        caller = await caller_for(self.services, request.headers.get("authorization"))
        if caller is None:
            raise ApiError(unauthenticated())
        return caller

    def origin(self, request: Request) -> str:
        return self.services.settings.public_url or str(request.base_url).rstrip("/")

    @openai_errors
    async def models(self, request: Request):
        await self.caller(request)
        return JSONResponse({"object": "list", "data": [self._model()]})

    @openai_errors
    async def model(self, request: Request):
        await self.caller(request)
        if request.path_params.get("model") != self.services.studio.engine.model:
            raise ApiError(Refusal(404, f"The model {request.path_params.get('model')!r} does not exist on this "
                                        f"instance; it serves {self.services.studio.engine.model!r}.",
                                   param="model", code="model_not_found"))
        return JSONResponse(self._model())

    def _model(self) -> dict:
        return {"id": self.services.studio.engine.model, "object": "model", "created": 0, "owned_by": OWNER}

    @openai_errors
    async def edits(self, request: Request):
        """Edits: the images are references of the studio's flow (checked, cleaned, moderated with
        the prompt, stored with the generation), the mask applies to the first; priced at the
        resolution plus the catalog's surcharge per image."""
        caller = await self.caller(request)
        body, images, mask = await read_edit_form(request, max_files=MAX_EDIT_FILES)
        shape = await anyio.to_thread.run_sync(image_shape, images[0][1])
        job = read_job(body, self.services, shape=shape)
        cost = self.services.studio.reference_cost(resolution=job.resolution, references=len(images))
        job = dataclasses.replace(job, references=tuple(images), mask=mask, cost=cost)
        if job.stream:
            return await self.stream(job, caller, request, kind="image_edit")
        results = await self.generate(job, caller)
        return JSONResponse(await self.response(job, caller, results, request),
                            headers={"Cache-Control": "no-store"})

    @openai_errors
    async def generations(self, request: Request):
        caller = await self.caller(request)
        try:
            body = json.loads(await request.body() or b"null")
        except (ValueError, UnicodeDecodeError):
            raise invalid("The request body is not valid JSON.", param=None, code="invalid_json") from None
        job = read_job(body, self.services)
        if job.stream:
            return await self.stream(job, caller, request)
        results = await self.generate(job, caller)
        return JSONResponse(await self.response(job, caller, results, request),
                            headers={"Cache-Control": "no-store"})

    async def stream(self, job: ImageJob, caller: Caller, request: Request, *, kind: str = "image_generation"):
        """`stream: true`: OpenAI's server-sent events. For each image, `{kind}.partial_image` events
        (the first `partial_images` preview frames the engine streams, as they arrive) and then one
        `{kind}.completed`; an `error` event when no image could be made after the stream began.

        The stream begins with the first partial frame, or, without one, once every image is done;
        so a refusal before the engine starts (invalid input, moderation, credits, rate limit) still
        gets its status code and error JSON. Partial frames are the studio's previews (at most 640 px
        on the long edge, re-encoded in `output_format`); they cost nothing. When some of the `n`
        images fail, the last completed event lists them in `studio.failed` (not charged).
        """
        if job.n > 1:
            await anyio.to_thread.run_sync(self._can_pay_for, job, caller)
        events: asyncio.Queue[tuple[int, Preview | asyncio.Future]] = asyncio.Queue()
        tasks = self._launch(job, caller, events if job.partial_images else None)
        for index, task in enumerate(tasks):
            task.add_done_callback(functools.partial(lambda i, t: events.put_nowait((i, t)), index))
        early: list[tuple[int, Preview | asyncio.Future]] = []  # what came before the answer began
        try:
            done = 0
            while done < job.n:
                early.append(await events.get())
                if isinstance(early[-1][1], Preview):
                    break
                done += 1
            else:  # every image is done and no frame came: a refusal is answered with its status
                self._settle([task.exception() or task.result() for task in tasks])
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        origin = self.origin(request)

        async def sse():
            finished, made, failed, last = 0, [], [], None
            try:
                while finished < job.n:
                    index, item = early.pop(0) if early else await events.get()
                    if isinstance(item, Preview):
                        if item.index < job.partial_images:
                            yield _sse(await anyio.to_thread.run_sync(self._partial_event, job, item, index, kind))
                        continue
                    finished += 1
                    err = item.exception()
                    if err is not None:
                        failed.append(err)
                        continue
                    made.append(item.result())
                    if last is not None:
                        yield _sse(last)
                    last = await anyio.to_thread.run_sync(self._completed_event, job, caller, made, origin, kind)
                if last is not None:
                    if failed:
                        last["studio"]["failed"] = [self._refusal(err).body()["error"] for err in failed]
                    yield _sse(last)
                else:
                    yield _sse({"type": "error", **self._refusal(failed[0]).body()})
            finally:
                for task in tasks:
                    task.cancel()  # the caller went away: the studio releases what it held

        return StreamingResponse(sse(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    def _partial_event(self, job: ImageJob, preview: Preview, index: int, kind: str) -> dict:
        return {
            "type": f"{kind}.partial_image", "b64_json": base64.b64encode(_encoded(preview.webp, job)).decode(),
            "background": "opaque", "created_at": int(time.time()), "output_format": job.output_format,
            "partial_image_index": preview.index, "quality": self.services.settings.image_quality,
            "size": f"{preview.width}x{preview.height}",
            "studio": {"generation_id": preview.generation_id, "image_index": index},
        }

    def _completed_event(self, job: ImageJob, caller: Caller, made: list[GenerationResult], origin: str,
                         kind: str) -> dict:
        result = made[-1]
        g = result.generation
        entry = self._image_entry(job, caller, result, origin)
        event = {
            "type": f"{kind}.completed", "b64_json": entry.get("b64_json") or self._b64(job, caller, result),
            "background": "opaque", "created_at": int(time.time()), "output_format": job.output_format,
            "quality": self.services.settings.image_quality, "size": f"{g.width}x{g.height}",
            "usage": _usage([result]),
            "studio": {
                "generation_id": g.id, "generation_ids": [r.id for r in made], "charged": g.cost,
                "balance": self.services.ledger.balance(caller.user_id).total, "model": g.model,
                "style": job.style, "aspect_ratio": job.aspect_ratio, "resolution": job.resolution,
                "cost_per_image": job.cost, **({"references": len(job.references)} if job.references else {}),
            },
        }
        if "url" in entry:
            event["url"] = entry["url"]
        if "revised_prompt" in entry:
            event["revised_prompt"] = entry["revised_prompt"]
        return event

    @staticmethod
    def _refusal(err: BaseException) -> Refusal:
        if isinstance(err, ApiError):
            return err.refusal
        if isinstance(err, DomainError):
            return refusal_for(err, param=_param_of(err))
        return unexpected(err, "api.openai_images.stream")

    def _launch(self, job: ImageJob, caller: Caller, previews: asyncio.Queue | None) -> list[asyncio.Future]:
        """`n` images, each one `Studio.generate` (its own hold and charge), run side by side (the
        studio's per-user slots still apply); each preview frame goes to `previews` as (image, frame)."""
        def one(index: int) -> asyncio.Future:
            on_preview = None if previews is None else functools.partial(
                lambda i, frame: previews.put_nowait((i, frame)), index)
            edit = {"references": job.references, "mask": job.mask} if job.references else {}
            return asyncio.ensure_future(self.services.studio.generate(
                user_id=caller.user_id, is_admin=caller.is_admin, prompt=job.prompt, style=job.style,
                aspect_ratio=job.aspect_ratio, resolution=job.resolution, on_preview=on_preview, **edit))

        return [one(index) for index in range(job.n)]

    @staticmethod
    def _settle(outcomes: list) -> tuple[list[GenerationResult], list[DomainError]]:
        """The images made and the refusals; an unexpected error is raised, and so is the first
        refusal when no image was made."""
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, DomainError):
                raise outcome
        made = [o for o in outcomes if isinstance(o, GenerationResult)]
        failed = [o for o in outcomes if isinstance(o, DomainError)]
        if not made:
            raise ApiError(refusal_for(failed[0], param=_param_of(failed[0])))
        return made, failed

    async def generate(self, job: ImageJob, caller: Caller) -> tuple[list[GenerationResult], list[DomainError]]:
        """`n` images side by side. More than one image is refused up front, with nothing charged,
        when the balance cannot pay for all of them."""
        if job.n > 1:
            await anyio.to_thread.run_sync(self._can_pay_for, job, caller)
        tasks = self._launch(job, caller, None)
        try:
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for task in tasks:
                task.cancel()
        return self._settle(outcomes)

    def _can_pay_for(self, job: ImageJob, caller: Caller) -> None:
        services = self.services
        block = services.entitlements.resolution_block(user_id=caller.user_id, is_admin=caller.is_admin,
                                                       resolution=job.resolution)
        if block:
            raise ApiError(refusal_for(PermissionDenied(block), param="resolution"))
        have = services.ledger.balance(caller.user_id).total
        if have < job.n * job.cost:
            raise InsufficientCredits(
                needed=job.n * job.cost, available=have,
                message=f"{job.n} {job.resolution} images need {job.n * job.cost} credits and you have {have}. "
                        "Nothing was charged. Buy more credits on the Pricing tab, or ask for fewer images.")

    async def response(self, job: ImageJob, caller: Caller, outcome, request: Request) -> dict:
        made, failed = outcome
        origin = self.origin(request)
        data = [await anyio.to_thread.run_sync(self._image_entry, job, caller, result, origin) for result in made]
        balance = await anyio.to_thread.run_sync(self.services.ledger.balance, caller.user_id)
        first = made[0].generation
        studio = {
            "generation_ids": [r.id for r in made], "charged": sum(r.generation.cost for r in made),
            "balance": balance.total, "model": first.model, "style": job.style, "aspect_ratio": job.aspect_ratio,
            "resolution": job.resolution, "cost_per_image": job.cost,
        }
        if job.references:
            studio["references"] = len(job.references)
        if failed:  # some of the n images were refused or failed: those were not charged
            studio["failed"] = [refusal_for(err).body()["error"] for err in failed]
        return {
            "created": int(time.time()), "data": data, "usage": _usage(made), "size": f"{first.width}x{first.height}",
            "quality": self.services.settings.image_quality, "output_format": job.output_format,
            "background": "opaque", "studio": studio,
        }

    def _image_entry(self, job: ImageJob, caller: Caller, result: GenerationResult, origin: str) -> dict:
        g = result.generation
        entry: dict = {}
        if job.response_format == "url":
            entry["url"] = f"{origin}/images/{g.id}/{job.output_format}"
        else:
            entry["b64_json"] = self._b64(job, caller, result)
        if g.styled_prompt and g.styled_prompt != g.prompt:
            entry["revised_prompt"] = g.styled_prompt  # what the engine was sent (the style applied)
        return entry

    def _b64(self, job: ImageJob, caller: Caller, result: GenerationResult) -> str:
        """The image in `output_format`, base64: the WebP already in hand, else the stored PNG."""
        if job.output_format == "webp":
            return base64.b64encode(result.display_webp).decode()
        content, _ = self.services.studio.open_image(user_id=caller.user_id, generation_id=result.id, variant="png")
        png = content.read_bytes() if isinstance(content, Path) else content
        return base64.b64encode(_as_jpeg(png, job.output_compression) if job.output_format == "jpeg" else png).decode()


def build_openai_router(services: Services) -> APIRouter:
    """The /v1 routes. Register them on the app before the Gradio mount at "/"."""
    api = OpenAIImages(services)
    router = APIRouter(prefix="/v1", include_in_schema=False)
    router.add_api_route("/images/generations", api.generations, methods=["POST"])
    router.add_api_route("/images/edits", api.edits, methods=["POST"])
    router.add_api_route("/models", api.models, methods=["GET"])
    router.add_api_route("/models/{model}", api.model, methods=["GET"])
    return router
