"""Content checks before any credit is held: a small local blocklist always, and OpenAI's
moderation endpoint (`omni-moderation-latest`) when an API key is configured.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Protocol

from services.errors import ProviderFailed
from services.openai_client import OpenAIPerLoop, client_options
from services.settings import Settings

log = logging.getLogger("studio.moderation")

MODERATION_MODEL = "omni-moderation-latest"

# Terms refused whatever the provider says. Deliberately short: the provider's own moderation
# is the main line; this catches the unambiguous cases even offline. Matched on whole words
# after folding case, accents and punctuation.
BLOCKLIST: dict[str, tuple[str, ...]] = {
    "sexual/minors": (
        "child porn", "child pornography", "csam", "cp porn", "loli porn", "lolicon", "shotacon",
        "underage nude", "underage sex", "naked child", "naked children", "nude child", "nude children",
        "nude minor", "nude minors", "sexualized child", "sexualized minor", "preteen nude",
    ),
    "sexual/non-consensual": ("revenge porn", "non consensual porn", "nonconsensual porn", "rape porn"),
}


@dataclass(frozen=True)
class Verdict:
    flagged: bool
    source: str = ""  # "blocklist" | "moderation"
    categories: list[str] = field(default_factory=list)


class Moderator(Protocol):
    async def check(self, *, text: str) -> Verdict:
        """Flagged or not. Raises ProviderFailed when the check itself cannot be made."""
        ...

    async def check_images(self, *, text: str, images: list[bytes]) -> Verdict:
        """Reference images together with the prompt (a moderator without image checks: not flagged)."""
        ...


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " " + re.sub(r"[\W_]+", " ", plain).strip() + " "


class LocalBlocklist:
    def __init__(self, terms: dict[str, tuple[str, ...]] | None = None):
        self._terms = [(category, _fold(term)) for category, items in (terms or BLOCKLIST).items()
                       for term in items]

    def verdict(self, text: str) -> Verdict:
        folded = _fold(text)
        hits = sorted({category for category, term in self._terms if term in folded})
        return Verdict(flagged=True, source="blocklist", categories=hits) if hits else Verdict(flagged=False)

    async def check(self, *, text: str) -> Verdict:
        return self.verdict(text)

    async def check_images(self, *, text: str, images: list[bytes]) -> Verdict:
        return self.verdict(text)  # no image model offline: the prompt's words only


class OpenAIModerator:
    """The local blocklist first, then `moderations.create(model="omni-moderation-latest")`.

    If the moderation endpoint cannot be reached the prompt is refused (ProviderFailed, nothing
    charged): an operator who configured a key expects every prompt to be checked.
    """

    def __init__(self, *, api_key: str, base_url: str | None = None, timeout: float = 30.0,
                 max_retries: int = 2, blocklist: LocalBlocklist | None = None):
        self.client = OpenAIPerLoop(api_key=api_key, base_url=base_url, timeout=min(timeout, 60.0),
                                    max_retries=max_retries)
        self.blocklist = blocklist or LocalBlocklist()

    async def check(self, *, text: str) -> Verdict:
        local = self.blocklist.verdict(text)
        if local.flagged:
            return local
        try:
            response = await self.client().moderations.create(model=MODERATION_MODEL, input=text)
        except Exception as exc:
            log.warning("moderation check failed: %s", type(exc).__name__)
            raise ProviderFailed(
                "We could not check this prompt right now. Please try again in a minute."
            ) from exc
        result = response.results[0] if response.results else None
        if result is None or not result.flagged:
            return Verdict(flagged=False)
        categories = result.categories.model_dump(by_alias=True) if result.categories else {}
        return Verdict(flagged=True, source="moderation",
                       categories=sorted(name for name, hit in categories.items() if hit is True))


    async def check_images(self, *, text: str, images: list[bytes]) -> Verdict:
        """Each reference image with the prompt, one moderation request per image (at once), the
        image sent as a small JPEG data URL. Flagged when any is; ProviderFailed when a check fails."""
        local = self.blocklist.verdict(text)
        if local.flagged or not images:
            return local
        urls = await asyncio.gather(*(asyncio.to_thread(_data_url, image) for image in images))
        try:
            responses = await asyncio.gather(*(self.client().moderations.create(
                model=MODERATION_MODEL,
                input=[{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}],
            ) for url in urls))
        except Exception as exc:
            log.warning("image moderation check failed: %s", type(exc).__name__)
            raise ProviderFailed(
                "We could not check these reference images right now. Please try again in a minute."
            ) from exc
        flagged, hits = False, set()
        for result in (r for response in responses for r in response.results or []):
            if result.flagged:
                flagged = True
                categories = result.categories.model_dump(by_alias=True) if result.categories else {}
                hits.update(name for name, hit in categories.items() if hit is True)
        return Verdict(flagged=True, source="moderation", categories=sorted(hits)) if flagged else Verdict(flagged=False)


def _data_url(image: bytes, edge: int = 512) -> str:
    """A reference as the moderation endpoint takes it: a JPEG data URL, at most `edge` pixels."""
    from PIL import Image

    with Image.open(io.BytesIO(image)) as source:
        small = source.convert("RGB")
        small.thumbnail((edge, edge))
    out = io.BytesIO()
    small.save(out, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode()


def make_moderator(settings: Settings) -> Moderator:
    if settings.openai_api_key:
        return OpenAIModerator(**client_options(settings))
    return LocalBlocklist()
