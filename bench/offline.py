"""Offline preview engine: how long one 4K (3840x2160) render takes, per style.

    python bench/offline.py [--repeat 3] [--json]

Was a test ("renders well under a second"); a stopwatch on a shared, noisy machine is a figure
to read, not a pass/fail. Target: the slowest style's median ≤ 1.0 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.catalog import Catalog  # noqa: E402
from services.engines import render_preview  # noqa: E402

STYLES = ("photographic", "none", "neon cyberpunk", "fantasy")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    args = parser.parse_args()
    catalog = Catalog.load(ROOT / "assets")
    render_preview(prompt="warm up", style=catalog.style("none"), width=640, height=360)  # imports, fonts
    medians = {}
    for name in STYLES:
        style, runs = catalog.style(name), []
        for _ in range(args.repeat):
            started = time.perf_counter()
            image = render_preview(prompt="a city at night", style=style, width=3840, height=2160)
            runs.append(time.perf_counter() - started)
            assert image.size == (3840, 2160)
        medians[name] = round(statistics.median(runs), 3)
    result = {"render_4k_median_s": medians, "slowest_s": max(medians.values()),
              "target_slowest<=1.0": max(medians.values()) <= 1.0}
    if not args.json:
        for name, seconds in medians.items():
            print(f"offline 4K render, {name:15s} median {seconds:.3f} s over {args.repeat}")
        print(f"slowest {result['slowest_s']:.3f} s (target ≤ 1.0)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
