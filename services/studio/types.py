"""What the studio takes and gives back: a validated request, a finished generation, a gallery page."""

from __future__ import annotations

import math
from dataclasses import dataclass

from models.generation import Generation
from services.catalog import AspectRatio, Resolution, Style
from services.references import Reference


@dataclass(frozen=True)
class GenerationRequest:
    """A request that passed validation."""

    prompt: str
    style: Style
    aspect: AspectRatio
    resolution: Resolution
    styled_prompt: str
    # With reference images (issue #11): checked and cleaned, in order; where each came from
    # ("upload" or the id of the user's generation); the mask (PNG, the first one's size); and
    # the catalog's surcharge per reference.
    references: tuple[Reference, ...] = ()
    sources: tuple[str, ...] = ()
    mask: bytes | None = None
    surcharge: int = 0

    @property
    def cost(self) -> int:
        return self.resolution.price + self.surcharge * len(self.references)


@dataclass(frozen=True)
class GalleryImage:
    """One of the user's own stored images given as a reference, without uploading it again: the
    generation's PNG original (`reference` None) or its `reference`-th stored reference image.
    Another user's id (or a deleted image) is NotFound."""

    generation_id: str
    reference: int | None = None


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

