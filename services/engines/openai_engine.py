"""GPT Image through the OpenAI API: OpenAIEngine, the map from SDK exceptions to domain errors
(provider_error), and the per-user safety identifier sent with every request."""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import contextvars
import functools
import hashlib
import hmac
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from services import sizing
from services.engines.interface import EngineImage, EngineRequest, PartialFn, PartialFrame, deliver
from services.engines.sse import fast_sse_client
from services.errors import ContentRejected, ProviderFailed

log = logging.getLogger("studio.engines")

REJECTION_CODES = frozenset({"moderation_blocked", "content_policy_violation"})


def safety_identifier(user_id: int, key: str = "") -> str:
    """A stable, non-identifying id for the provider's abuse monitoring: an HMAC of the user id
    under the instance's SECRET_KEY, so it cannot be reversed by hashing small integers."""
    return hmac.new(key.encode(), str(user_id).encode(), hashlib.sha256).hexdigest()


class OpenAIEngine:
    """GPT Image through the OpenAI API (any OpenAI-compatible gateway via base_url), streamed:
    `partial_image` events go to the caller as they arrive, the `completed` event is the result.

    A stream is read in a worker thread (`stream_image`) with the SDK's synchronous client and a
    cheap SSE decoder (services/engines/sse.py): each event is a megabyte or two of base64, and
    reading, parsing and decoding 40 of those streams on the event loop kept it from serving
    anyone else during a burst. The thread hands decoded frames to the loop, which delivers them
    in order, one at a time, while the thread reads on. A request with reference images goes to
    `images.edit` (`_edit_call`), read the same way."""

    name = "openai"

    def __init__(self, *, api_key: str, base_url: str | None = None, timeout: float = 120.0,
                 model: str = "gpt-image-2", quality: str = "auto", max_retries: int = 2,
                 identity_key: str = "", partial_images: int = 2, stream_threads: int = 128):
        self.model = model
        self.identity_key = identity_key
        self.quality = quality
        self.partial_images = max(0, min(int(partial_images), 3))
        self.size_rules = sizing.rules_for(model)
        # Thread-safe; its connection pool is shared by the stream threads (no event loop of its own).
        self.client = fast_sse_client(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries)
        # Threads that mostly wait on the provider's latency: one per stream in flight (created as needed).
        self._streams = ThreadPoolExecutor(max_workers=stream_threads, thread_name_prefix="openai-stream")

    async def generate(self, request: EngineRequest, on_partial: PartialFn | None = None) -> EngineImage:
        if request.references:
            return await self.stream_image(self._edit_call(request, previews=on_partial is not None), on_partial)
        return await self.stream_image(functools.partial(
            self.client.images.generate,
            model=self.model, prompt=request.prompt, size=f"{request.width}x{request.height}",
            quality=self.quality, n=1, output_format="png",
            safety_identifier=safety_identifier(request.user_id, self.identity_key),
            # No one waiting for previews (an API compare): no frames to send, parse and drop.
            stream=True, partial_images=self.partial_images if on_partial is not None else 0,
        ), on_partial)

    async def stream_image(self, open_stream: Callable[[], object], on_partial: PartialFn | None = None,
                           ) -> EngineImage:
        """Run `open_stream` (an SDK images call with stream=True: generate or edit) in a stream
        thread and read its events there; each partial frame reaches `on_partial` on this loop
        (in order, one at a time, all before the result). Raises ContentRejected / ProviderFailed."""
        loop = asyncio.get_running_loop()
        frames = _Frames(loop, on_partial) if on_partial is not None else None
        reading = _Reading()
        ctx = contextvars.copy_context()
        future = loop.run_in_executor(self._streams, functools.partial(
            ctx.run, _read_stream, open_stream, frames.put if frames else None, reading))
        try:
            data, usage = await future
        except asyncio.CancelledError:
            reading.stop()  # a deadline or a cancelled request: the thread stops reading and closes the stream
            if frames is not None:
                frames.cancel()
            raise
        except Exception:
            if frames is not None:
                await frames.drain()  # the frames shown before the stream broke, as before it
            raise
        if frames is not None:
            await frames.drain()
        return EngineImage(model=self.model, data=data, usage=usage)

    def _edit_call(self, request: EngineRequest, *, previews: bool = True) -> Callable[[], object]:
        """`images.edit` with the references (in order) and the mask, streamed like a generation
        (`image_edit.partial_image` … `image_edit.completed`), read by `stream_image`."""
        images = [(f"reference-{i}.{ref.extension}", ref.data, ref.mime) for i, ref in enumerate(request.references)]
        extra = {"mask": ("mask.png", request.mask, "image/png")} if request.mask is not None else {}
        return functools.partial(
            self.client.images.edit,
            model=self.model, image=images, prompt=request.prompt, size=f"{request.width}x{request.height}",
            quality=self.quality, n=1, output_format="png",
            safety_identifier=safety_identifier(request.user_id, self.identity_key),
            stream=True, partial_images=self.partial_images if previews else 0, **extra,
        )


class _Reading:
    """One stream read in a thread, stoppable from the loop (its response closed under it)."""

    def __init__(self):
        self.stopped = threading.Event()
        self.stream = None

    def stop(self) -> None:
        self.stopped.set()
        stream = self.stream
        if stream is not None:
            with contextlib.suppress(Exception):  # already broken or closed
                stream.close()


def _read_stream(open_stream, put, reading: _Reading) -> tuple[bytes, dict | None]:
    """In a stream thread: open the stream, decode each partial frame and hand it to `put`, return
    the final image's bytes and usage. Errors come out as ContentRejected / ProviderFailed."""
    try:
        stream = open_stream()
    except Exception as exc:
        raise provider_error(exc) from exc
    reading.stream = stream
    completed = None
    frames = 0
    try:
        if reading.stopped.is_set():
            raise ProviderFailed("The request was cancelled.")
        for event in stream:
            if reading.stopped.is_set():
                raise ProviderFailed("The request was cancelled.")
            if event.type.endswith(".partial_image"):
                frames += 1
                if put is not None and event.b64_json:
                    try:
                        put(PartialFrame(index=event.partial_image_index, data=_decoded(event.b64_json)))
                    except ProviderFailed:
                        log.debug("a partial frame was not valid base64; skipped")
            elif event.type.endswith(".completed"):
                completed = event  # the final image can come before every partial frame: stop here
                break
    except ProviderFailed:
        raise
    except Exception as exc:
        raise stream_error(exc, frames) from exc
    finally:
        stream.close()
    if completed is None:
        raise ProviderFailed("The image provider's stream ended before the image was finished.")
    if not completed.b64_json:
        raise ProviderFailed("The image provider answered without an image.")
    usage = completed.usage.model_dump(exclude_none=True) if completed.usage else None
    return _decoded(completed.b64_json), usage


class _Frames:
    """Partial frames from a stream thread to the event loop: queued in arrival order, delivered
    one at a time by one task, so that a slow preview never holds the stream up."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_partial: PartialFn):
        self._loop = loop
        self._on_partial = on_partial
        self._queue: asyncio.Queue[PartialFrame | None] = asyncio.Queue()
        self._task = loop.create_task(self._deliver())

    def put(self, frame: PartialFrame) -> None:  # from the stream thread
        self._loop.call_soon_threadsafe(self._queue.put_nowait, frame)

    async def _deliver(self) -> None:
        while (frame := await self._queue.get()) is not None:
            await deliver(self._on_partial, frame)

    async def drain(self) -> None:
        """After the final image: deliver what is still queued (its frames were put before the
        result came back, so they are in the queue), then end."""
        self._queue.put_nowait(None)
        await self._task

    def cancel(self) -> None:
        self._task.cancel()


def _decoded(b64: str) -> bytes:
    try:
        return binascii.a2b_base64(b64, strict_mode=True)  # base64.b64decode(validate=True) adds a regex pass
    except (binascii.Error, ValueError):
        raise ProviderFailed("The image provider sent back data that is not a valid image.") from None


def stream_error(exc: Exception, frames: int) -> ContentRejected | ProviderFailed:
    """An error while the stream was being read: a safety refusal, or a stream that broke."""
    import openai

    error = provider_error(exc)
    if isinstance(error, ContentRejected) or isinstance(exc, openai.APITimeoutError):
        return error
    log.warning("image stream broke after %s partial frame(s): %s", frames, type(exc).__name__)
    return ProviderFailed("The connection to the image provider broke before the image was finished.")


def provider_error(exc: Exception) -> ContentRejected | ProviderFailed:
    """Map an OpenAI SDK exception to the domain error the user sees (plain words, no internals)."""
    import openai

    if isinstance(exc, openai.APIError) and getattr(exc, "code", None) in REJECTION_CODES:
        return ContentRejected("The image provider's safety system refused this prompt.")
    if isinstance(exc, openai.APITimeoutError):
        return ProviderFailed("The image provider took too long to answer.")
    if isinstance(exc, openai.APIConnectionError):
        return ProviderFailed("The image provider could not be reached.")
    if isinstance(exc, openai.RateLimitError):
        return ProviderFailed("The image provider is busy right now (rate limit). Please try again in a minute.")
    if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
        log.error("image provider refused our credentials: %s", type(exc).__name__)
        return ProviderFailed("The image provider refused this server's credentials. Please contact support.")
    if isinstance(exc, openai.APIStatusError):
        log.warning("image provider error %s: %s", exc.status_code, str(exc)[:300])
        if exc.status_code >= 500:
            return ProviderFailed("The image provider had an internal error.")
        return ProviderFailed("The image provider could not make this image.")
    log.exception("unexpected error from the image provider")
    return ProviderFailed("The image provider failed unexpectedly.")
