"""Render the landing page's example strip (assets/showcase/) with the offline preview engine.

    python bench/render_showcase.py

The shipped examples are offline previews so that a fresh checkout shows pictures without a key
or a network. An operator replaces them with their own files: the landing page shows every
.webp/.png/.jpg in assets/showcase/ in name order, captioned by the file name.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.catalog import Catalog  # noqa: E402
from services.engines.offline_art import render_preview  # noqa: E402

OUT = ROOT / "assets" / "showcase"
# (file stem: number, then the caption; prompt; style)
EXAMPLES = [
    ("1-lighthouse-at-dusk-watercolor", "a lighthouse at dusk", "watercolor"),
    ("2-city-street-at-night-neon-cyberpunk", "a city street at night in the rain", "neon cyberpunk"),
    ("3-mountain-lake-photographic", "a mountain lake at sunrise", "photographic"),
    ("4-dragon-over-a-castle-fantasy", "a dragon over a castle", "fantasy"),
    ("5-cat-in-a-spaceship-pixel-art", "a cat piloting a small spaceship", "pixel art"),
    ("6-harbour-in-spring-ukiyo-e", "a harbour in spring with cherry blossoms", "ukiyo-e"),
]
WIDTH, HEIGHT, QUALITY = 480, 360, 70


def main() -> int:
    catalog = Catalog.load(ROOT / "assets")
    OUT.mkdir(exist_ok=True)
    for old in OUT.glob("*.webp"):
        old.unlink()
    for stem, prompt, style in EXAMPLES:
        image = render_preview(prompt=prompt, style=catalog.style(style), width=WIDTH, height=HEIGHT)
        path = OUT / f"{stem}.webp"
        image.convert("RGB").save(path, "WEBP", quality=QUALITY, method=6)
        print(f"{path.relative_to(ROOT)}  {path.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
