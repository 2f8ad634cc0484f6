"""Compare and Variations: one prompt in several styles (or one style several times) at once.

The whole set is checked and priced before anything is held: an unknown style, a bad prompt or a
resolution the user may not have refuses it all; a balance that cannot pay for every image refuses
it with how many it could pay for. Nothing is charged and no engine is called then. After that,
each image is its own `Studio.generate` (its own generation row, hold, charge or release), all
started at once; the per-user concurrency limit (limits.py) decides how many reach the engine
together. A cell that fails is "not charged" while the others are charged. The generations of
one request share a batch id (batch.py), so the gallery shows them together.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from services import i18n
from services.errors import DomainError, InsufficientCredits, PermissionDenied, RateLimited, ValidationFailed
from services.studio.batch import batch
from services.studio.limits import rate_room
from services.studio.previews import Preview
from services.studio.types import GenerationResult

log = logging.getLogger("studio.compare")

VARIATIONS_MIN, VARIATIONS_MAX = 2, 4


@dataclass(frozen=True)
class Quote:
    """What a set costs before it runs: "6 images × 10 credits = 60 · you have 140"."""

    count: int
    unit: int
    balance: int

    @property
    def total(self) -> int:
        return self.count * self.unit

    @property
    def affordable(self) -> bool:
        return self.balance >= self.total

    @property
    def can_pay_for(self) -> int:
        return min(self.count, self.balance // self.unit) if self.unit else self.count

    @property
    def line(self) -> str:
        return self.text(None)

    def text(self, language: str | None) -> str:
        """ "6 images × 10 credits = 60 · you have 140", in the language."""
        return i18n.t(language, "compare.line_one" if self.count == 1 else "compare.line_other", count=self.count,
                      unit=self.unit, total=self.total, balance=self.balance)


@dataclass
class Cell:
    """One image of the set, as it goes: waiting → (preview …) → done | failed."""

    index: int
    style: str  # the style's name as the catalog (or the user's styles) spell it
    label: str
    status: str = "waiting"
    preview: Preview | None = None
    result: GenerationResult | None = None
    message: str = ""
    error: DomainError | None = None  # why a failed cell failed (None: unexpected, see the log)

    def text(self, language: str | None) -> str:
        """`message` in the language."""
        if self.status == "done" and self.result is not None:
            return i18n.t(language, "compare.cell_done", cost=self.result.generation.cost)
        if self.status == "failed" and self.error is not None:
            said = self.error.text(language)
            return said if "charged" in self.error.message.lower() else \
                f"{said}{i18n.t(language, 'compare.not_charged')}"
        if self.status == "failed":
            return i18n.t(language, "compare.cell_unexpected")
        return self.message

    @property
    def charged(self) -> int:
        return self.result.generation.cost if self.result is not None else 0


@dataclass
class SetResult:
    batch_id: str
    cells: list[Cell]
    balance: int
    quote: Quote
    summary: str = field(default="")

    def summary_text(self, language: str | None) -> str:
        """`summary` in the language."""
        made = len(self.delivered)
        text = i18n.t(language, "compare.summary", made=made, count=len(self.cells),
                      charged=sum(c.charged for c in self.cells))
        if made < len(self.cells):
            text += i18n.t(language, "compare.summary_failed", failed=len(self.cells) - made)
        return text + i18n.t(language, "compare.summary_balance", balance=self.balance)

    @property
    def delivered(self) -> list[Cell]:
        return [c for c in self.cells if c.result is not None]

    @property
    def message(self) -> str:
        """One line per image, in the order asked, then the summary."""
        return "\n".join([f"{c.label}: {c.message}" for c in self.cells] + [self.summary])


UpdateFn = Callable[[Cell], None]  # called on the event loop whenever a cell changes; must not block


class Compare:
    """One prompt, many styles (`compare`), or one style, several images (`variations`)."""

    def __init__(self, *, studio, ledger, max_styles: int = 6):
        self.studio = studio
        self.ledger = ledger
        self.max_styles = max_styles

    def quote(self, *, user_id: int, count: int, resolution: str) -> Quote:
        res = self.studio.catalog.resolution(resolution)
        return Quote(count=count, unit=res.price, balance=self.ledger.balance(user_id).total)

    async def compare(self, *, user_id: int, is_admin: bool, prompt: str, styles, aspect_ratio: str,
                      resolution: str, on_update: UpdateFn | None = None) -> SetResult:
        """The prompt in each of `styles` (1 to max_styles, each once), in that order."""
        names = _names(styles)
        if not names:
            raise ValidationFailed("Choose at least one style to compare.", key="error.compare.no_style")
        if len(names) > self.max_styles:
            raise ValidationFailed(f"Compare at most {self.max_styles} styles at once (you chose {len(names)}).",
                                   key="error.compare.too_many", most=self.max_styles, count=len(names))
        seen: set[str] = set()
        for name in names:
            if name.lower() in seen:
                raise ValidationFailed(f"Each style once: “{name}” is chosen twice.", key="error.compare.twice", name=name)
            seen.add(name.lower())
        return await self._run(user_id=user_id, is_admin=is_admin, prompt=prompt, styles=names,
                               aspect_ratio=aspect_ratio, resolution=resolution, on_update=on_update)

    async def variations(self, *, user_id: int, is_admin: bool, prompt: str, style: str, count: int,
                         aspect_ratio: str, resolution: str, on_update: UpdateFn | None = None) -> SetResult:
        """`count` (2-4) images of the same prompt and style, each priced and held on its own."""
        if isinstance(count, bool) or not isinstance(count, (int, float)) or int(count) != count \
                or not VARIATIONS_MIN <= int(count) <= VARIATIONS_MAX:
            raise ValidationFailed(f"Ask for {VARIATIONS_MIN} to {VARIATIONS_MAX} variations.", key="error.compare.variations",
                                   least=VARIATIONS_MIN, most=VARIATIONS_MAX)
        if not isinstance(style, str) or not style.strip():
            raise ValidationFailed("Choose a style.", key="error.compare.choose_style")
        return await self._run(user_id=user_id, is_admin=is_admin, prompt=prompt, styles=[style.strip()] * int(count),
                               aspect_ratio=aspect_ratio, resolution=resolution, on_update=on_update)

    async def _run(self, *, user_id, is_admin, prompt, styles: list[str], aspect_ratio, resolution,
                   on_update: UpdateFn | None) -> SetResult:
        studio = self.studio
        # Everything checked before anything is held: one bad input refuses the set.
        requests = [studio.validate(prompt=prompt, style=name, aspect_ratio=aspect_ratio, resolution=resolution,
                                    user_id=user_id) for name in styles]
        res = requests[0].resolution
        block = studio.entitlements.resolution_block(user_id=user_id, is_admin=is_admin, resolution=res.key)
        if block:
            raise PermissionDenied(block)
        if not is_admin:
            room = await asyncio.to_thread(rate_room, studio.db, user_id, limit=studio.settings.generation_rate_per_minute,
                                           now=studio.clock())
            if room < len(requests):
                raise RateLimited(
                    f"You can start {studio.settings.generation_rate_per_minute} images a minute and have room for "
                    f"{room} now, not {len(requests)}. Please wait a moment or choose fewer — nothing was charged.",
                    key="error.compare.rate", per_minute=studio.settings.generation_rate_per_minute, room=room,
                    count=len(requests))
        balance = await asyncio.to_thread(self.ledger.balance, user_id)
        quote = Quote(count=len(requests), unit=res.price, balance=balance.total)
        if not quote.affordable:
            could = quote.can_pay_for
            enough = (f"enough for {could} of them" if could else "not enough for one")
            refused = InsufficientCredits(
                needed=quote.total, available=quote.balance,
                message=(f"{quote.line}: {enough}. Choose fewer, or buy credits on the Pricing tab. "
                         "Nothing was charged."))
            refused.key = "error.compare.short_some" if could else \
                f"error.compare.short_none_{'one' if quote.count == 1 else 'other'}"
            refused.params = {"count": quote.count, "unit": quote.unit, "total": quote.total,
                              "balance": quote.balance, "could": could}
            raise refused
        cells = [Cell(index=i, style=r.style.name, label=r.style.label) for i, r in enumerate(requests)]

        def changed(cell: Cell) -> None:
            if on_update is not None:
                try:
                    on_update(cell)
                except Exception:  # a display callback must never break the set
                    log.debug("compare update callback failed", exc_info=True)

        async def one(cell: Cell) -> None:
            def on_preview(preview: Preview) -> None:
                cell.status, cell.preview = "preview", preview
                changed(cell)

            cell.status = "running"
            changed(cell)
            try:
                cell.result = await studio.generate(
                    user_id=user_id, is_admin=is_admin, prompt=requests[cell.index].prompt, style=cell.style,
                    aspect_ratio=aspect_ratio, resolution=res.key,
                    on_preview=on_preview if on_update is not None else None)  # frames cost CPU: only if shown
            except DomainError as err:
                said = err.message
                cell.status, cell.error = "failed", err
                cell.message = said if "charged" in said.lower() else f"{said} Not charged."
            except Exception:  # the studio maps its own failures; this is a bug: say so, charge nothing
                log.exception("a compare cell failed unexpectedly")
                cell.status = "failed"
                cell.message = "Something went wrong on our side — not charged."
            else:
                cell.status = "done"
                cell.message = f"done · {cell.result.generation.cost} credits charged"
            changed(cell)

        with batch() as batch_id:
            tasks = [asyncio.ensure_future(one(cell)) for cell in cells]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()  # the caller went away: each generation releases its own hold
        after = await asyncio.to_thread(self.ledger.balance, user_id)
        made = len([c for c in cells if c.result is not None])
        charged = sum(c.charged for c in cells)
        failed = len(cells) - made
        summary = f"{made} of {len(cells)} images made · {charged} credits charged"
        if failed:
            summary += f" · {failed} not charged"
        return SetResult(batch_id=batch_id, cells=cells, balance=after.total, quote=quote,
                         summary=summary + f" · you have {after.total}")


def _names(styles) -> list[str]:
    """The style names asked for: a list (the API), or one comma-separated string."""
    if isinstance(styles, str):
        styles = styles.split(",")
    if not isinstance(styles, (list, tuple)):
        raise ValidationFailed("Choose the styles to compare as a list of style names.")
    names = []
    for item in styles:
        if not isinstance(item, str):
            raise ValidationFailed("Each style must be a style name.")
        if item.strip():
            names.append(item.strip())
    return names
