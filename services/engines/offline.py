"""The offline preview engine: no key, no network; the pictures come from offline_art."""

from __future__ import annotations

import asyncio

from services.engines.interface import EngineImage, EngineRequest, PartialFn, PartialFrame, deliver
from services.engines.offline_art import render_blend, render_preview

# The edge of each partial frame's draft, coarse to finer (PARTIAL_IMAGES takes the first n).
DRAFT_EDGES = (24, 96, 256)


class OfflineEngine:
    """Renders a deterministic abstract preview locally: no key, no network, the same credit flow.

    The look follows the style's `preview` data (palette, texture, composition); the prompt seeds
    the layout. Every image carries a small "offline preview" mark. Like GPT Image it streams
    `partial_images` frames first: drafts of the same picture, coarse to finer. With reference
    images it blends them in the style's palette (only the masked region, given a mask).
    """

    name = "offline"
    model = "offline-preview"
    size_rules = None

    def __init__(self, *, partial_images: int = 0):
        self.partial_images = max(0, min(partial_images, len(DRAFT_EDGES)))

    async def generate(self, request: EngineRequest, on_partial: PartialFn | None = None) -> EngineImage:
        if request.references:
            draw = render_blend
            render = dict(references=[r.data for r in request.references], mask=request.mask, style=request.style,
                          width=request.width, height=request.height)
        else:
            draw = render_preview
            render = dict(prompt=request.prompt, style=request.style, width=request.width, height=request.height)
        if on_partial is not None:
            for index, edge in enumerate(DRAFT_EDGES[:self.partial_images]):
                draft = await asyncio.to_thread(draw, **render, detail=edge)
                await deliver(on_partial, PartialFrame(index=index, image=draft))
        image = await asyncio.to_thread(draw, **render)
        return EngineImage(model=self.model, image=image)
