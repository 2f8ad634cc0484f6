"""What every image engine is: the ImageEngine protocol, the request it gets, the partial frames it
may stream on the way and the image it gives back."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from PIL import Image

from services import sizing
from services.catalog import Style
from services.references import Reference

log = logging.getLogger("studio.engines")


@dataclass(frozen=True)
class EngineRequest:
    prompt: str  # the styled prompt, exactly as sent
    style: Style
    width: int  # the size asked of the engine (see services.sizing)
    height: int
    user_id: int
    # Reference images (checked and cleaned: services.references), in order; with any, the job is
    # an edit (`images.edit`). The mask (PNG, alpha 0 where to change) has the first one's size.
    references: tuple[Reference, ...] = ()
    mask: bytes | None = None


@dataclass
class EngineImage:
    """An engine's result: a decoded image (offline) or the provider's encoded bytes (OpenAI)."""

    model: str
    image: Image.Image | None = None
    data: bytes | None = None
    usage: dict | None = None


@dataclass(frozen=True)
class PartialFrame:
    """A rough picture of the image on its way (a decoded image or the provider's encoded bytes).
    Only a preview: nothing is stored or charged for it."""

    index: int  # 0-based, in the order the engine sent them
    image: Image.Image | None = None
    data: bytes | None = None


# Awaited for each frame as it arrives; what it raises is its own business (the engine goes on).
PartialFn = Callable[[PartialFrame], Awaitable[None]]


class ImageEngine(Protocol):
    name: str  # "openai" | "offline", recorded on the generation
    model: str
    size_rules: sizing.SizeRules | None  # None: renders any size itself
    partial_images: int  # frames streamed before the final image (0: none)

    async def generate(self, request: EngineRequest, on_partial: PartialFn | None = None) -> EngineImage:
        """The final image (the contract); `on_partial` sees each partial frame before it."""
        ...


async def deliver(on_partial: PartialFn | None, frame: PartialFrame) -> None:
    """Hand a frame to the caller's callback; a failing preview never breaks a generation."""
    if on_partial is None:
        return
    try:
        await on_partial(frame)
    except Exception:  # noqa: BLE001 - a preview is optional
        log.debug("partial frame callback failed", exc_info=True)
