"""GPT Image through the OpenAI API: OpenAIEngine, the map from SDK exceptions to domain errors
(provider_error), and the per-user safety identifier sent with every request."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging

from services import sizing
from services.engines.interface import EngineImage, EngineRequest, PartialFn, PartialFrame, deliver
from services.errors import ContentRejected, ProviderFailed
from services.openai_client import OpenAIPerLoop

log = logging.getLogger("studio.engines")

REJECTION_CODES = frozenset({"moderation_blocked", "content_policy_violation"})


def safety_identifier(user_id: int, key: str = "") -> str:
    """A stable, non-identifying id for the provider's abuse monitoring: an HMAC of the user id
    under the instance's SECRET_KEY, so it cannot be reversed by hashing small integers."""
    return hmac.new(key.encode(), str(user_id).encode(), hashlib.sha256).hexdigest()


class OpenAIEngine:
    """GPT Image through `AsyncOpenAI` (any OpenAI-compatible gateway via base_url), streamed:
    `partial_image` events go to the caller as they arrive, the `completed` event is the result."""

    name = "openai"

    def __init__(self, *, api_key: str, base_url: str | None = None, timeout: float = 120.0,
                 model: str = "gpt-image-2", quality: str = "auto", max_retries: int = 2,
                 identity_key: str = "", partial_images: int = 2):
        self.model = model
        self.identity_key = identity_key
        self.quality = quality
        self.partial_images = max(0, min(int(partial_images), 3))
        self.size_rules = sizing.rules_for(model)
        self.client = OpenAIPerLoop(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries)

    async def generate(self, request: EngineRequest, on_partial: PartialFn | None = None) -> EngineImage:
        try:
            stream = await self.client().images.generate(
                model=self.model, prompt=request.prompt, size=f"{request.width}x{request.height}",
                quality=self.quality, n=1, output_format="png",
                safety_identifier=safety_identifier(request.user_id, self.identity_key),
                # No one waiting for previews (an API compare): no frames to send, parse and drop.
                stream=True, partial_images=self.partial_images if on_partial is not None else 0,
            )
        except Exception as exc:
            raise provider_error(exc) from exc
        completed = None
        frames = 0
        try:
            async for event in stream:
                if event.type.endswith(".partial_image"):
                    frames += 1
                    if on_partial is not None and event.b64_json:
                        await deliver(on_partial, PartialFrame(index=event.partial_image_index,
                                                               data=_decoded(event.b64_json)))
                elif event.type.endswith(".completed"):
                    completed = event  # the final image can come before every partial frame: stop here
                    break
        except ProviderFailed:
            raise
        except Exception as exc:
            raise stream_error(exc, frames) from exc
        finally:
            await stream.close()
        if completed is None:
            raise ProviderFailed("The image provider's stream ended before the image was finished.")
        if not completed.b64_json:
            raise ProviderFailed("The image provider answered without an image.")
        usage = completed.usage.model_dump(exclude_none=True) if completed.usage else None
        return EngineImage(model=self.model, data=_decoded(completed.b64_json), usage=usage)


def _decoded(b64: str) -> bytes:
    try:
        return base64.b64decode(b64, validate=True)
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
