"""Exact output sizes, and what to ask each image model for.

The delivered image's long edge is the resolution's (1024, 2048, 3840); the short edge is
`round(long * short / long)` of the ratio. What the model is asked for comes from a capability
table: flexible models take any WxH within limits (ask for the closest size, then centre-crop a
few pixels), fixed-size models take one of a few sizes (ask for the closest ratio, centre-crop to
the exact ratio, then resize). Upscaling happens only where the model cannot deliver the size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image


@dataclass(frozen=True)
class SizeRules:
    """What sizes a model accepts. Either `fixed` sizes, or the flexible limits."""

    fixed: tuple[tuple[int, int], ...] = ()
    multiple_of: int = 16
    max_pixels: int = 3840 * 2160
    max_edge: int = 3840
    max_ratio: float = 3.0  # long:short, i.e. 1:3 .. 3:1

    @property
    def flexible(self) -> bool:
        return not self.fixed

    def accepts(self, width: int, height: int) -> bool:
        if self.fixed:
            return (width, height) in self.fixed
        return (
            width % self.multiple_of == 0 and height % self.multiple_of == 0
            and width * height <= self.max_pixels and max(width, height) <= self.max_edge
            and max(width, height) / min(width, height) <= self.max_ratio
        )


FLEXIBLE = SizeRules()
STANDARD = SizeRules(fixed=((1024, 1024), (1536, 1024), (1024, 1536)))

# Exact model names first; then prefixes. Anything unknown (e.g. behind a gateway) gets the
# standard sizes every GPT Image model accepts.
MODEL_SIZES: dict[str, SizeRules] = {
    "gpt-image-2": FLEXIBLE,
    "gpt-image-2-2026-04-21": FLEXIBLE,
    "gpt-image-2.5-sunburst": FLEXIBLE,
    "gpt-image-2.5-sunburst-2026-09-08": FLEXIBLE,
    "gpt-image-2.5-flare": FLEXIBLE,
    "gpt-image-2.5-flare-2026-09-08": FLEXIBLE,
    "gpt-image-1.5": STANDARD,
    "gpt-image-1-mini": STANDARD,
}
PREFIX_SIZES: tuple[tuple[str, SizeRules], ...] = (
    ("gpt-image-2.5-", FLEXIBLE),
    ("gpt-image-2-", FLEXIBLE),
)


def rules_for(model: str) -> SizeRules:
    if model in MODEL_SIZES:
        return MODEL_SIZES[model]
    for prefix, rules in PREFIX_SIZES:
        if model.startswith(prefix):
            return rules
    return STANDARD


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def output_size(ratio_w: int, ratio_h: int, long_edge: int) -> tuple[int, int]:
    """The exact delivered size for a ratio (e.g. 16, 9) at a long edge (e.g. 2048)."""
    if ratio_w >= ratio_h:
        return long_edge, _round_half_up(long_edge * ratio_h / ratio_w)
    return _round_half_up(long_edge * ratio_w / ratio_h), long_edge


def crop_box(width: int, height: int, target_w: int, target_h: int) -> tuple[int, int, int, int]:
    """The centred box of `width`x`height` that has exactly the target's ratio (to the pixel)."""
    if width * target_h > height * target_w:  # too wide: trim the sides
        w = min(width, _round_half_up(height * target_w / target_h))
        left = (width - w) // 2
        return left, 0, left + w, height
    h = min(height, _round_half_up(width * target_h / target_w))
    top = (height - h) // 2
    return 0, top, width, top + h


def _upscale_factor(width: int, height: int, target_w: int, target_h: int) -> float:
    left, top, right, bottom = crop_box(width, height, target_w, target_h)
    return target_w / (right - left)


def request_size(rules: SizeRules, target_w: int, target_h: int) -> tuple[int, int]:
    """The size to ask a model for: the least upscaling, then the fewest surplus pixels."""
    target_ratio = target_w / target_h
    if rules.fixed:
        return min(rules.fixed, key=lambda s: (abs(math.log((s[0] / s[1]) / target_ratio)), -s[0] * s[1]))
    m = rules.multiple_of
    scale = min(1.0, math.sqrt(rules.max_pixels / (target_w * target_h)), rules.max_edge / max(target_w, target_h))
    w0, h0 = target_w * scale, target_h * scale
    candidates = set()
    for dw in (-1, 0, 1, 2):
        for dh in (-1, 0, 1, 2):
            w = (math.floor(w0 / m) + dw) * m
            h = (math.floor(h0 / m) + dh) * m
            if w > 0 and h > 0 and rules.accepts(w, h):
                candidates.add((w, h))
    if not candidates:  # pragma: no cover - only for rules that reject every nearby size
        raise ValueError(f"no size near {target_w}x{target_h} fits {rules}")

    def cost(size: tuple[int, int]):
        up = max(1.0, _upscale_factor(size[0], size[1], target_w, target_h))
        return round(up, 6), abs(size[0] * size[1] - target_w * target_h)

    return min(candidates, key=cost)


@dataclass(frozen=True)
class SizePlan:
    requested: tuple[int, int]  # asked of the engine
    delivered: tuple[int, int]  # what the user gets, exactly


def plan(rules: SizeRules | None, ratio_w: int, ratio_h: int, long_edge: int) -> SizePlan:
    """`rules=None` means the engine renders any size itself (the offline preview)."""
    target = output_size(ratio_w, ratio_h, long_edge)
    requested = target if rules is None else request_size(rules, *target)
    return SizePlan(requested=requested, delivered=target)


def fit(image: Image.Image, target_w: int, target_h: int) -> Image.Image:
    """Centre-crop to the exact ratio, then resize (LANCZOS) to the exact size if still needed."""
    if image.size == (target_w, target_h):
        return image
    box = crop_box(image.width, image.height, target_w, target_h)
    if box != (0, 0, image.width, image.height):
        image = image.crop(box)
    if image.size != (target_w, target_h):
        image = image.resize((target_w, target_h), Image.LANCZOS)
    return image
