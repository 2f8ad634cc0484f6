import asyncio
import hashlib
import time

import numpy as np
import pytest

from services.catalog import Catalog
from services.db import ROOT
from services.engines import (
    MARK_TEXT,
    EngineRequest,
    OfflineEngine,
    make_engine,
    render_preview,
    safety_identifier,
)
from services.settings import load_settings


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load(ROOT / "assets")


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


def test_every_image_carries_the_offline_mark(catalog):
    for name in ("line art", "film noir", "anime"):
        image = render_preview(prompt="x", style=catalog.style(name), width=1024, height=1024)
        corner = np.asarray(image.convert("L"))[-60:, -260:]
        assert corner.max() > 200 and corner.min() < 120, f"no readable mark on {name}"
    assert MARK_TEXT == "offline preview"


def test_4k_renders_well_under_a_second(catalog):
    worst = 0.0
    for name in ("photographic", "none", "neon cyberpunk", "fantasy"):
        started = time.perf_counter()
        image = render_preview(prompt="a city at night", style=catalog.style(name), width=3840, height=2160)
        worst = max(worst, time.perf_counter() - started)
        assert image.size == (3840, 2160)
    assert worst < 1.0, f"slowest 4K render took {worst:.2f}s"


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
