"""Reference images: checking and cleaning four 12-megapixel JPEG photos (services/references.py).

    python bench/references.py [--count 4] [--megapixels 12] [--latency 10] [--json]

The photos (4000×3000, photo-like: smooth light, texture and sensor grain, with EXIF and GPS) are
written to files by a separate process, so their making costs this one nothing. This process
then reads and prepares them as the studio does for a job (one after another), and prints:
1. the time taken as a fraction of a `--latency` s engine call (target ≤ 0.05);
2. the peak memory it added (`ru_maxrss` after minus before; target ≤ 300 MB for the four).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGETS = {"fraction_of_latency": 0.05, "peak_mb": 300}


def make_photos(folder: str, count: int, megapixels: float) -> None:
    import numpy as np
    from PIL import Image

    width = int((megapixels * 1e6 * 4 / 3) ** 0.5) // 16 * 16
    height = width * 3 // 4
    rng = np.random.default_rng(11)
    for i in range(count):
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        light = 0.5 + 0.5 * np.sin(x / (width / (3 + i)) + y / (height / 2))
        base = np.stack([light * 200 + 30, light * 150 + 60, (1 - light) * 180 + 40], axis=-1)
        texture = 20 * np.sin(x / 7.0 + i)[..., None] * np.cos(y / 11.0)[..., None]
        grain = rng.normal(0, 6, (height, width, 1)).astype(np.float32)
        pixels = np.clip(base + texture + grain, 0, 255).astype(np.uint8)
        exif = Image.Exif()
        exif[0x010F], exif[0x0110], exif[0x0112] = "Camera", "Model", 6
        exif[0x8825] = {1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)}
        Image.fromarray(pixels).save(Path(folder) / f"photo{i}.jpg", "JPEG", quality=92, exif=exif.tobytes())


def _small_jpeg() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 48), "grey").save(out, "JPEG")
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--megapixels", type=float, default=12.0)
    parser.add_argument("--latency", type=float, default=10.0, help="the engine latency the cost is compared with")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from services.references import ReferenceRules

    with tempfile.TemporaryDirectory(prefix="refs-bench-") as folder:
        maker = multiprocessing.get_context("spawn").Process(target=make_photos,
                                                             args=(folder, args.count, args.megapixels))
        maker.start()
        maker.join()
        files = sorted(Path(folder).glob("photo*.jpg"))
        rules = ReferenceRules(max_images=16)
        rules.prepare_one("warm-up.jpg", _small_jpeg())  # imports and codec set-up, not measured
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        started = time.perf_counter()
        refs = rules.prepare([(f.name, f) for f in files])
        took = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
        sizes = [f.stat().st_size for f in files]
    result = {"count": args.count, "megapixels": args.megapixels, "input_mb": round(sum(sizes) / 1e6, 1),
              "seconds": round(took, 3), "per_image_ms": round(took * 1000 / args.count),
              "fraction_of_latency": round(took / args.latency, 4), "peak_added_mb": round(peak, 1),
              "output": [f"{r.width}x{r.height} {r.mime} {len(r.data) // 1000} kB" for r in refs]}
    if not args.json:
        ok = lambda b: "✓" if b else "✗"  # noqa: E731
        print(f"{args.count} × {args.megapixels:g} MP JPEG ({result['input_mb']} MB in): {took:.2f} s, "
              f"{result['per_image_ms']} ms each → {result['fraction_of_latency']} of a {args.latency:g} s engine call "
              f"(target ≤ {TARGETS['fraction_of_latency']} {ok(result['fraction_of_latency'] <= TARGETS['fraction_of_latency'])}); "
              f"peak memory added {result['peak_added_mb']} MB (target ≤ {TARGETS['peak_mb']} "
              f"{ok(result['peak_added_mb'] <= TARGETS['peak_mb'])}); out: {', '.join(result['output'])}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
