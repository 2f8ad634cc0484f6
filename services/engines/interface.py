"""What every image engine is: the ImageEngine protocol, the request it gets and the image it
gives back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from PIL import Image

from services import sizing
from services.catalog import Style


@dataclass(frozen=True)
class EngineRequest:
    prompt: str  # the styled prompt, exactly as sent
    style: Style
    width: int  # the size asked of the engine (see services.sizing)
    height: int
    user_id: int


@dataclass
class EngineImage:
    """An engine's result: a decoded image (offline) or the provider's encoded bytes (OpenAI)."""

    model: str
    image: Image.Image | None = None
    data: bytes | None = None
    usage: dict | None = None


class ImageEngine(Protocol):
    name: str  # "openai" | "offline", recorded on the generation
    model: str
    size_rules: sizing.SizeRules | None  # None: renders any size itself

    async def generate(self, request: EngineRequest) -> EngineImage: ...
