"""What the studio takes and gives back: a validated request, a finished generation, a gallery page."""

from __future__ import annotations

import math
from dataclasses import dataclass

from models.generation import Generation
from services.catalog import AspectRatio, Resolution, Style


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

