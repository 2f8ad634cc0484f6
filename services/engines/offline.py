"""The offline preview engine: no key, no network; the pictures come from offline_art."""

from __future__ import annotations

import asyncio

from services.engines.interface import EngineImage, EngineRequest
from services.engines.offline_art import render_preview


class OfflineEngine:
    """Renders a deterministic abstract preview locally: no key, no network, the same credit flow.

    The look follows the style's `preview` data (palette, texture, composition); the prompt seeds
    the layout. Every image carries a small "offline preview" mark.
    """

    name = "offline"
    model = "offline-preview"
    size_rules = None

    async def generate(self, request: EngineRequest) -> EngineImage:
        image = await asyncio.to_thread(render_preview, prompt=request.prompt, style=request.style,
                                        width=request.width, height=request.height)
        return EngineImage(model=self.model, image=image)
