"""The offline preview's art: render_preview draws a deterministic abstract picture from a style's
`preview` data (palette, texture, composition) with numpy and Pillow, seeded by the prompt.

Compositions give a field in [0, 1] over the canvas; textures turn it into RGB with the palette;
a few full-resolution touches (grain, scanlines) and the "offline preview" mark come last.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont, ImageOps

from services.catalog import Style

WORK_EDGE = 1024  # the composition is computed at most this large, then resized
PIXEL_EDGE = 96  # pixel art is drawn this small, then blown up
MARK_TEXT = "offline preview"
DEFAULT_PALETTE = ("#2b2d42", "#8d99ae", "#edf2f4", "#ef233c")


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16)


def _seed(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x00".join(parts).encode()).digest()[:8], "big")


def render_preview(*, prompt: str, style: Style, width: int, height: int, detail: int | None = None) -> Image.Image:
    """The same prompt, style and size always give the same pixels. With `detail` (an edge in
    pixels), a coarse draft of that same picture, only that large: the offline engine's partial frames."""
    rng = np.random.default_rng(_seed(style.name, f"{width}x{height}", prompt))
    look = style.preview or {}
    palette = np.array([_rgb(c) for c in (look.get("palette") or DEFAULT_PALETTE)], dtype=np.float32)
    texture = look.get("texture", "smooth")
    composition = COMPOSITIONS.get(look.get("composition", "blobs"), _blobs)

    edge = PIXEL_EDGE if texture == "pixel" else WORK_EDGE
    if detail is not None:
        edge = min(edge, max(8, detail))
    scale = min(1.0, edge / max(width, height))
    w, h = max(8, round(width * scale)), max(8, round(height * scale))
    aspect = w / h
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    u = (x / (w - 1) * 2 - 1) * aspect  # -aspect..aspect
    v = y / (h - 1) * 2 - 1  # -1 (top)..1 (bottom)

    field = np.clip(composition(u, v, rng), 0.0, 1.0)
    rgb = TEXTURES.get(texture, _smooth)(field, palette, u, v, rng, w, h)
    small = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
    if detail is not None:
        return small
    if small.size == (width, height):
        image = small
    else:
        image = small.resize((width, height), Image.NEAREST if texture == "pixel" else Image.BICUBIC)
    if texture == "grain":
        image = _add_grain(image, rng, amount=12)
    elif texture == "scanlines":
        image = _scanlines(image)
    return _mark(image)


def render_blend(*, references: list[bytes], style: Style, width: int, height: int, mask: bytes | None = None,
                 detail: int | None = None) -> Image.Image:
    """The offline engine's edit: the references (each cropped to fill the frame) averaged, then
    mixed with the same picture mapped onto the style's palette, so the result is visibly made of
    them and in the style's colours. With a mask (transparent where to change, the first
    reference's shape), only that region of the first reference is replaced. `detail`: a draft
    that small (partial frames); the full image carries the "offline preview" mark."""
    look = style.preview or {}
    palette = np.array([_rgb(c) for c in (look.get("palette") or DEFAULT_PALETTE)], dtype=np.float32)
    scale = 1.0 if detail is None else min(1.0, max(8, detail) / max(width, height))
    size = (max(8, round(width * scale)), max(8, round(height * scale)))
    layers = []
    for data in references:
        with Image.open(io.BytesIO(data)) as source:
            layers.append(np.asarray(ImageOps.fit(source.convert("RGB"), size, Image.BICUBIC), dtype=np.float32))
    mean = np.mean(layers, axis=0)
    light = (mean @ np.array([0.299, 0.587, 0.114], dtype=np.float32)) / 255.0
    blended = 0.55 * mean + 0.45 * _gradient(light, palette)
    if mask is not None:
        with Image.open(io.BytesIO(mask)) as painted:
            alpha = ImageOps.fit(painted.convert("RGBA").getchannel("A"), size, Image.NEAREST)
        keep = (np.asarray(alpha, dtype=np.float32) / 255.0)[..., None]  # 1 where the mask is opaque
        blended = keep * layers[0] + (1.0 - keep) * blended
    image = Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8), "RGB")
    return image if detail is not None else _mark(image)


def _gradient(field: np.ndarray, palette: np.ndarray) -> np.ndarray:
    stops = np.linspace(0.0, 1.0, len(palette), dtype=np.float32)
    return np.stack([np.interp(field, stops, palette[:, c]) for c in range(3)], axis=-1)


# Compositions: (u, v, rng) -> a field in [0, 1] --------------------------------------------


def _blobs(u, v, rng):
    field = np.zeros_like(u)
    for _ in range(int(rng.integers(4, 9))):
        cx, cy = rng.uniform(u.min(), u.max()), rng.uniform(-1, 1)
        size = rng.uniform(0.2, 0.7)
        field += rng.uniform(0.4, 1.0) * np.exp(-((u - cx) ** 2 + (v - cy) ** 2) / (2 * size * size))
    return field / max(float(field.max()), 1e-6)


def _radial(u, v, rng):
    cx, cy = rng.uniform(-0.4, 0.4), rng.uniform(-0.4, 0.3)
    r = np.hypot(u - cx, v - cy)
    theta = np.arctan2(v - cy, u - cx)
    petals = int(rng.integers(3, 9))
    return 1.0 - r / 1.8 + 0.12 * np.sin(theta * petals + rng.uniform(0, 6.28)) * np.exp(-r)


def _horizon(u, v, rng):
    y0 = rng.uniform(-0.15, 0.35)
    hills = y0 + 0.12 * np.sin(u * rng.uniform(1.5, 4) + rng.uniform(0, 6.28)) \
        + 0.05 * np.sin(u * rng.uniform(5, 9) + rng.uniform(0, 6.28))
    sky = 0.55 + 0.45 * (hills - v) / (hills + 1.0 + 1e-3)
    ground = 0.45 * (1.0 - (v - hills) / (1.0 - hills + 1e-3))
    field = np.where(v < hills, sky, ground)
    sx, sy = rng.uniform(-0.8, 0.8), rng.uniform(-0.8, y0 - 0.1)
    return field + 0.5 * np.exp(-((u - sx) ** 2 + (v - sy) ** 2) / 0.02)


def _letterbox(u, v, rng):
    field = _horizon(u, v, rng)
    return np.where(np.abs(v) > 0.78, 0.0, field)


def _diagonal(u, v, rng):
    t = rng.uniform(0, np.pi)
    d = u * np.cos(t) + v * np.sin(t)
    return 0.5 + 0.35 * np.tanh(d * 1.2) + 0.15 * np.sin(d * rng.uniform(4, 9) + np.sin(u * 3 - v * 2))


def _waves(u, v, rng):
    f1, f2 = rng.uniform(3, 7), rng.uniform(1, 3)
    w = np.sin(v * f1 + 0.9 * np.sin(u * f2 + rng.uniform(0, 6.28)))
    w2 = np.sin(v * f1 * 2.1 + u * 0.7 + rng.uniform(0, 6.28))
    return 0.5 + 0.35 * w + 0.15 * w2


def _spheres(u, v, rng):
    field = 0.25 + 0.3 * (v + 1) / 2  # backdrop
    lx, ly = -0.6, -0.7
    for _ in range(int(rng.integers(2, 5))):
        cx, cy, r = rng.uniform(u.min() * 0.7, u.max() * 0.7), rng.uniform(-0.4, 0.5), rng.uniform(0.18, 0.45)
        dx, dy = (u - cx) / r, (v - cy) / r
        d2 = dx * dx + dy * dy
        inside = d2 < 1
        nz = np.sqrt(np.clip(1 - d2, 0, 1))
        lambert = np.clip(dx * lx + dy * ly + nz * 0.6, 0, 1)
        field = np.where(inside, 0.35 + 0.65 * lambert, field)
        shadow = np.exp(-(((u - cx - 0.15) / (r * 1.3)) ** 2 + ((v - cy - r * 1.05) / (r * 0.25)) ** 2))
        field = np.where(inside, field, field * (1 - 0.5 * shadow))
    return field


def _burst(u, v, rng):
    cx, cy = rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3)
    theta = np.arctan2(v - cy, u - cx)
    rays = (np.sin(theta * int(rng.integers(10, 24))) > 0).astype(np.float32)
    r = np.hypot(u - cx, v - cy)
    return np.where(r < rng.uniform(0.25, 0.45), 1.0, 0.15 + 0.5 * rays * np.exp(-r * 0.4))


def _rings(u, v, rng):
    field = np.zeros_like(u)
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = rng.uniform(u.min() * 0.8, u.max() * 0.8), rng.uniform(-0.7, 0.7)
        field = np.maximum(field, np.exp(-np.hypot(u - cx, v - cy) * rng.uniform(0.8, 2.0)))
    return field


def _isometric(u, v, rng):
    size = rng.uniform(0.25, 0.45)
    a = (u / np.sqrt(3) + v) / size
    b = (-u / np.sqrt(3) + v) / size
    ia, ib = np.floor(a), np.floor(b)
    face = np.mod(ia + ib, 3)  # three faces of a cube, shaded differently
    tint = ((ia * 7 + ib * 13) % 5) / 20.0
    return 0.25 + 0.25 * face + tint


def _grid(u, v, rng):
    y0 = rng.uniform(-0.2, 0.1)
    below = v > y0
    depth = 1.0 / np.maximum(v - y0, 1e-3)
    lines = (np.abs(np.mod(u * depth * 0.6 + rng.uniform(0, 1), 1.0) - 0.5) > 0.46) | \
            (np.abs(np.mod(depth * 0.5, 1.0) - 0.5) > 0.44)
    floor = np.where(lines, 0.95, 0.05 + 0.1 * (v - y0))
    sx, sr = rng.uniform(-0.5, 0.5), rng.uniform(0.3, 0.5)
    sun_d = np.hypot(u - sx, v - (y0 - sr * 0.4))
    sun = (sun_d < sr) & (np.mod((v - y0) * 18, 1.0) < 0.7)
    sky = np.where(sun, 0.75, 0.1 + 0.45 * (1 - (y0 - v) / (1 + y0)))
    return np.where(below, floor, sky)


def _blinds(u, v, rng):
    tilt = rng.uniform(0.3, 0.8)
    slats = np.mod((v + u * tilt) * rng.uniform(5, 9), 1.0) < 0.55
    cx, cy = rng.uniform(-0.4, 0.4), rng.uniform(-0.3, 0.3)
    light = np.exp(-((u - cx) ** 2 + (v - cy) ** 2) / 0.5)
    figure = np.exp(-(((u - cx * 0.5) / 0.18) ** 2 + ((v - 0.35) / 0.55) ** 2)) > 0.5
    return np.where(figure, 0.02, 0.05 + 0.9 * light * slats)


def _spotlight(u, v, rng):
    floor_y = rng.uniform(0.2, 0.45)
    back = 0.55 + 0.45 * np.exp(-(u ** 2 + (v + 0.2) ** 2) / 0.8)
    field = np.where(v > floor_y, back * 0.85, back)
    cx, w, hgt = rng.uniform(-0.2, 0.2), rng.uniform(0.25, 0.45), rng.uniform(0.5, 0.9)
    body = (np.abs(u - cx) < w * (1 - 0.3 * (v - floor_y + hgt) / hgt)) & (v < floor_y) & (v > floor_y - hgt)
    shade = 0.2 + 0.5 * np.clip((u - cx + w) / (2 * w), 0, 1)
    return np.where(body, 1.0 - shade, field)


COMPOSITIONS = {
    "blobs": _blobs, "radial": _radial, "horizon": _horizon, "letterbox": _letterbox,
    "diagonal": _diagonal, "waves": _waves, "spheres": _spheres, "burst": _burst, "rings": _rings,
    "isometric": _isometric, "grid": _grid, "blinds": _blinds, "spotlight": _spotlight,
}


# Textures: (field, palette, u, v, rng, w, h) -> RGB float array ---------------------------


def _smooth(field, palette, u, v, rng, w, h):
    vignette = 1.0 - 0.18 * (u ** 2 / (u.max() ** 2) + v ** 2)
    return _gradient(field, palette) * vignette[..., None]


def _paper(field, palette, u, v, rng, w, h):
    warp = _value_noise(rng, w, h, cells=6)
    wash = np.floor((field + 0.15 * warp) * 6) / 6  # pigment pools in soft bands
    rgb = _gradient(np.clip(wash, 0, 1), palette)
    fibres = 1.0 - 0.07 * _value_noise(rng, w, h, cells=max(8, w // 6)) - 0.05 * _value_noise(rng, w, h, cells=40)
    return rgb * fibres[..., None]


def _canvas(field, palette, u, v, rng, w, h):
    strokes = np.sin((u * 40 + np.sin(v * 9) * 3) + 3 * _value_noise(rng, w, h, cells=12))
    rgb = _gradient(np.clip(field + 0.06 * strokes, 0, 1), palette)
    y, x = np.mgrid[0:h, 0:w]
    weave = 1.0 + 0.07 * np.sin(x * np.pi / 2) * np.sin(y * np.pi / 2)
    return rgb * weave[..., None]


def _pixel(field, palette, u, v, rng, w, h):
    bayer = np.array([[0, 8, 2, 10], [12, 4, 14, 6], [3, 11, 1, 9], [15, 7, 13, 5]], dtype=np.float32) / 16 - 0.5
    dither = np.tile(bayer, (h // 4 + 1, w // 4 + 1))[:h, :w]
    index = np.clip(np.rint(field * (len(palette) - 1) + dither * 0.9), 0, len(palette) - 1).astype(int)
    return palette[index]


def _cel(field, palette, u, v, rng, w, h):
    levels = np.floor(field * 5) / 4
    rgb = _gradient(np.clip(levels, 0, 1), palette)
    edge = np.zeros(field.shape, dtype=bool)
    edge[:, 1:] |= levels[:, 1:] != levels[:, :-1]
    edge[1:, :] |= levels[1:, :] != levels[:-1, :]
    rgb[edge] = rgb[edge] * 0.35
    return rgb


def _halftone(field, palette, u, v, rng, w, h):
    flat = _gradient(np.floor(field * 4) / 3, palette)
    cell = max(4, w // 90)
    y, x = np.mgrid[0:h, 0:w]
    fx, fy = (x % cell) / cell - 0.5, (y % cell) / cell - 0.5
    darkness = 1.0 - field
    dots = np.hypot(fx, fy) < 0.55 * np.sqrt(darkness)
    ink = palette[-1]
    out = np.where(dots[..., None], flat * 0.55 + ink * 0.45, flat)
    edge = np.zeros(field.shape, dtype=bool)
    band = np.floor(field * 4)
    edge[:, 1:] |= band[:, 1:] != band[:, :-1]
    edge[1:, :] |= band[1:, :] != band[:-1, :]
    out[edge] = ink * 0.3
    return out


def _lines(field, palette, u, v, rng, w, h):
    contour = np.abs(np.mod(field * 9, 1.0) - 0.5) > 0.43
    paper, ink = palette[0], palette[-1]
    return np.where(contour[..., None], ink, paper) * np.ones((h, w, 3), dtype=np.float32)


def _hatch(field, palette, u, v, rng, w, h):
    y, x = np.mgrid[0:h, 0:w]
    period = max(5, w // 120)
    wobble = (2 * _value_noise(rng, w, h, cells=20)).astype(int)
    d1 = np.mod(x + y + wobble, period) == 0
    d2 = np.mod(x - y + wobble, period) == 0
    strokes = (d1 & (field < 0.7)) | (d2 & (field < 0.4)) | ((np.mod(x, period) == 0) & (field < 0.18))
    paper = _gradient(np.clip(0.15 + field * 0.2, 0, 1), palette[:2])
    return np.where(strokes[..., None], palette[-1], paper)


def _glow(field, palette, u, v, rng, w, h):
    rgb = _gradient(field, palette)
    contour = np.exp(-((np.mod(field * 6, 1.0) - 0.5) / 0.06) ** 2)
    rgb += contour[..., None] * np.array([255, 240, 200], dtype=np.float32) * 0.35
    sparks = np.zeros((h, w), dtype=np.uint8)
    count = int(rng.integers(40, 90))
    sparks[rng.integers(0, h, count), rng.integers(0, w, count)] = 255
    halo = Image.fromarray(sparks, "L").filter(ImageFilter.GaussianBlur(max(1.5, w / 250)))
    halo = np.asarray(halo, dtype=np.float32)
    rgb += (np.minimum(halo * (255.0 / max(float(halo.max()), 1.0)), 255) * 0.8)[..., None]
    return rgb


TEXTURES = {
    "smooth": _smooth, "grain": _smooth, "scanlines": _smooth, "paper": _paper, "canvas": _canvas,
    "pixel": _pixel, "cel": _cel, "halftone": _halftone, "lines": _lines, "hatch": _hatch, "glow": _glow,
}


def _value_noise(rng, w: int, h: int, *, cells: int) -> np.ndarray:
    """Smooth noise in [0, 1]: a coarse random grid resized up (bicubic)."""
    cw, ch = max(2, cells), max(2, round(cells * h / w))
    grid = (rng.random((ch, cw)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(grid, "L").resize((w, h), Image.BICUBIC), dtype=np.float32) / 255.0


def _add_grain(image: Image.Image, rng, *, amount: int) -> Image.Image:
    """Film grain at full resolution: a 256px noise tile repeated, added in C (fast at 4K)."""
    tile = rng.integers(0, 2 * amount + 1, size=(256, 256), dtype=np.uint8)
    reps = (image.height // 256 + 1, image.width // 256 + 1)
    noise = Image.fromarray(np.tile(tile, reps)[: image.height, : image.width], "L")
    return ImageChops.add(image, Image.merge("RGB", (noise, noise, noise)), scale=1.0, offset=-amount)


def _scanlines(image: Image.Image) -> Image.Image:
    period = max(3, image.height // 360)
    rows = np.where(np.arange(image.height) % period == 0, 150, 255).astype(np.uint8)
    mask = Image.fromarray(rows[:, None], "L").resize((image.width, image.height), Image.NEAREST)
    return ImageChops.multiply(image, Image.merge("RGB", (mask, mask, mask)))


def _mark(image: Image.Image) -> Image.Image:
    """A small translucent "offline preview" label in the bottom-right corner."""
    size = max(11, round(min(image.size) * 0.022))
    font = ImageFont.load_default(size=size)
    left, top, right, bottom = font.getbbox(MARK_TEXT)
    pad = max(3, size // 3)
    box_w, box_h = right - left + 2 * pad, bottom - top + 2 * pad
    margin = max(4, size // 2)
    x0, y0 = image.width - box_w - margin, image.height - box_h - margin
    if x0 < 0 or y0 < 0:
        return image
    region = image.crop((x0, y0, x0 + box_w, y0 + box_h)).convert("RGBA")
    overlay = Image.new("RGBA", region.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    draw.rounded_rectangle((0, 0, box_w - 1, box_h - 1), radius=pad, fill=(0, 0, 0, 140))
    draw.text((pad - left, pad - top), MARK_TEXT, font=font, fill=(255, 255, 255, 230))
    image = image.copy() if image.readonly else image
    image.paste(Image.alpha_composite(region, overlay).convert("RGB"), (x0, y0))
    return image
