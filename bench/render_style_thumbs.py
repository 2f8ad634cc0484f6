"""Render the style picker's thumbnails (assets/styles/) with the offline preview engine.

    python bench/render_style_thumbs.py

One fixed prompt in every style of assets/styles.json, drawn once here and shipped as files, so the
picker never generates anything per visitor. An operator may replace any file with their own
picture (same name: the style's name in lower case, runs of other characters as "-", `.webp`).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.catalog import Catalog  # noqa: E402
from services.engines.offline_art import render_preview  # noqa: E402
from ui.compare import THUMBS, thumb_file  # noqa: E402

PROMPT = "a lighthouse on a cliff above the sea at dusk"
WIDTH, HEIGHT, QUALITY = 320, 240, 70


def main() -> int:
    catalog = Catalog.load(ROOT / "assets")
    THUMBS.mkdir(exist_ok=True)
    for style in catalog.styles:
        image = render_preview(prompt=PROMPT, style=style, width=WIDTH, height=HEIGHT)
        path = THUMBS / thumb_file(style.name)
        image.convert("RGB").save(path, "WEBP", quality=QUALITY, method=6)
        print(f"{path.relative_to(ROOT)}  {path.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
