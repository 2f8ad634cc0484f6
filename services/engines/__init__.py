"""Image engines behind one interface: GPT Image through the OpenAI API, and an offline preview.

An engine turns a styled prompt and a requested size into an image (or the provider's encoded
bytes). Sizing, post-processing, storage and credits are the studio's business, not the engine's.
Errors come out as domain errors: ContentRejected (never retried) or ProviderFailed.

interface.py     the ImageEngine protocol, EngineRequest, EngineImage, PartialFrame (streamed previews)
openai_engine.py OpenAIEngine, provider_error, safety_identifier
offline.py       OfflineEngine
offline_art.py   render_preview and its compositions and textures
"""

from __future__ import annotations

from services.engines.interface import EngineImage, EngineRequest, ImageEngine, PartialFn, PartialFrame
from services.engines.offline import OfflineEngine
from services.engines.offline_art import render_preview
from services.engines.openai_engine import OpenAIEngine, provider_error, safety_identifier
from services.openai_client import client_options
from services.settings import Settings

__all__ = ["EngineImage", "EngineRequest", "ImageEngine", "OfflineEngine", "OpenAIEngine", "PartialFn",
           "PartialFrame", "make_engine",
           "provider_error", "render_preview", "safety_identifier"]


def make_engine(settings: Settings) -> ImageEngine:
    """GPT Image when OPENAI_API_KEY is set (and IMAGE_PROVIDER is not "offline"), else the preview."""
    if settings.use_openai:
        return OpenAIEngine(**client_options(settings), model=settings.image_model,
                            quality=settings.image_quality, identity_key=settings.ensure_secret_key(),
                            partial_images=settings.partial_images)
    return OfflineEngine(partial_images=settings.partial_images)
