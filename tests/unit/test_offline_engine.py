import asyncio
import hashlib

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from services.engines import (
    EngineRequest,
    OfflineEngine,
    make_engine,
    render_preview,
    safety_identifier,
)
from services.settings import load_settings


def _pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32)


def test_same_prompt_style_and_size_give_the_same_pixels(catalog):
    style = catalog.style("watercolor")
    a = render_preview(prompt="a fox in snow", style=style, width=640, height=480)
    b = render_preview(prompt="a fox in snow", style=style, width=640, height=480)
    c = render_preview(prompt="a fox in the snow", style=style, width=640, height=480)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


def test_every_style_looks_different(catalog):
    images = {s.name: _pixels(render_preview(prompt="a fox in snow", style=s, width=320, height=240))
              for s in catalog.styles}
    names = list(images)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            diff = np.abs(images[a] - images[b]).mean()
            assert diff > 12, f"{a} and {b} look too alike (mean difference {diff:.1f})"


def test_film_noir_is_monochrome_and_pixel_art_is_blocky(catalog):
    noir = _pixels(render_preview(prompt="a detective", style=catalog.style("film noir"), width=400, height=300))
    assert np.abs(noir[..., 0] - noir[..., 2]).max() < 1.0
    pixel = np.asarray(render_preview(prompt="a castle", style=catalog.style("pixel art"), width=960, height=960))
    block = pixel[:8, :8].reshape(-1, 3)  # 960 / 96 = 10px blocks: the top-left 8x8 is one colour
    assert (block == block[0]).all()


def _glyphs(text: str, size: int) -> np.ndarray:
    """Where `text` puts ink in the default font at `size` (True = a glyph's core pixel)."""
    font = ImageFont.load_default(size=size)
    left, top, right, bottom = font.getbbox(text)
    canvas = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(canvas).text((-left, -top), text, font=font, fill=255)
    return np.asarray(canvas) > 200


def _legible(region: np.ndarray, text: str, size: int) -> tuple[float, float]:
    """Slide the glyph mask of `text` over a greyscale region; at the best fit, the mean
    brightness of the glyph pixels and the median of the pixels between them."""
    glyphs = _glyphs(text, size)
    windows = np.lib.stride_tricks.sliding_window_view(region, glyphs.shape)
    on = np.tensordot(windows, glyphs, axes=((2, 3), (0, 1))) / glyphs.sum()
    off = np.tensordot(windows, ~glyphs, axes=((2, 3), (0, 1))) / (~glyphs).sum()
    y, x = np.unravel_index(np.argmax(on - off), on.shape)
    window = windows[y, x]
    return float(window[glyphs].mean()), float(np.median(window[~glyphs]))


@pytest.mark.parametrize("name", ["line art", "film noir", "anime"])
def test_every_image_carries_the_offline_mark(catalog, name):
    """The words themselves, bright on a darkened ground, in the bottom-right corner."""
    pixels = np.asarray(render_preview(prompt="x", style=catalog.style(name), width=1024, height=1024)
                        .convert("L"), dtype=np.float32)
    size = round(1024 * 0.022)  # the mark is about 2.2 % of the short side
    ink, ground = _legible(pixels[-80:, -320:], "offline preview", size)
    assert ink > 215 and ground < 130, f"no legible mark on {name}: ink {ink:.0f}, ground {ground:.0f}"
    ink, ground = _legible(pixels[:80, :320], "offline preview", size)  # the same check finds nothing elsewhere
    assert not (ink > 215 and ground < 130), f"the top-left corner of {name} reads as a mark"


def test_4k_renders_at_its_full_size(catalog):
    # How fast is bench/offline.py: on a shared machine a test checks what, not how fast.
    for name in ("photographic", "none", "neon cyberpunk", "fantasy"):
        image = render_preview(prompt="a city at night", style=catalog.style(name), width=3840, height=2160)
        assert (image.mode, image.size) == ("RGB", (3840, 2160))


def test_engine_interface_and_selection(catalog, tmp_path):
    engine = OfflineEngine()
    result = asyncio.run(engine.generate(EngineRequest(prompt="p", style=catalog.style("anime"), width=300,
                                                       height=200, user_id=1)))
    assert result.image.size == (300, 200) and result.data is None and result.model == "offline-preview"
    assert engine.size_rules is None
    no_key = load_settings(env_file=None, DATA_DIR=str(tmp_path), OPENAI_API_KEY=None, IMAGE_PROVIDER="auto")
    assert make_engine(no_key).name == "offline"
    forced = load_settings(env_file=None, DATA_DIR=str(tmp_path), OPENAI_API_KEY="sk-x", IMAGE_PROVIDER="offline")
    assert make_engine(forced).name == "offline"
    keyed = load_settings(env_file=None, DATA_DIR=str(tmp_path), OPENAI_API_KEY="sk-x", IMAGE_MODEL="gpt-image-1.5")
    engine = make_engine(keyed)
    assert (engine.name, engine.model, engine.size_rules.flexible) == ("openai", "gpt-image-1.5", False)


def test_safety_identifier_is_a_stable_hash_not_the_id():
    assert safety_identifier(42, "k") == safety_identifier(42, "k") != safety_identifier(43, "k")
    assert len(safety_identifier(42, "k")) == 64 and safety_identifier(42, "k") != "42"
    # keyed: another instance (another SECRET_KEY) gives another id, and a bare hash does not match
    assert safety_identifier(42, "k") != safety_identifier(42, "other")
    assert safety_identifier(42, "k") != hashlib.sha256(b"42").hexdigest()
