"""Small real image files for the reference-image tests (issue #11): made with Pillow, no fixtures."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def picture(width: int = 320, height: int = 240, *, colour=(40, 120, 200), fmt: str = "JPEG", seed: int = 1,
            **save) -> bytes:
    """A picture of one dominant colour with a little texture (so a JPEG is not trivial)."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour, dtype=np.int16) + rng.integers(-12, 13, (height, width, 3)), 0, 255)
    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), "RGB").save(out, fmt, **save)
    return out.getvalue()


def gps_exif() -> bytes:
    """EXIF with a camera and a GPS position (Paris)."""
    exif = Image.Exif()
    exif[0x010F] = "SpyCam Inc."  # Make
    exif[0x0110] = "Model X"  # Model
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)}  # GPSInfo
    return exif.tobytes()


def jpeg_with_gps(width: int = 320, height: int = 240, **kwargs) -> bytes:
    data = picture(width, height, exif=gps_exif(), **kwargs)
    assert b"SpyCam" in data and b"Exif" in data
    return data


def has_gps(data: bytes) -> bool:
    """Whether an image file carries EXIF GPS (or the camera's name) anywhere in its bytes."""
    with Image.open(io.BytesIO(data)) as image:
        exif = image.getexif()
        return bool(exif.get_ifd(0x8825)) or 0x8825 in exif or b"SpyCam" in data or b"Exif\x00\x00" in data


def mask(width: int, height: int, box: tuple[int, int, int, int]) -> bytes:
    """A PNG mask: opaque everywhere, alpha 0 inside `box` (left, top, right, bottom): the painted area."""
    alpha = np.full((height, width), 255, dtype=np.uint8)
    left, top, right, bottom = box
    alpha[top:bottom, left:right] = 0
    image = Image.new("RGBA", (width, height), (0, 0, 0, 255))
    image.putalpha(Image.fromarray(alpha, "L"))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def alpha_at(data: bytes, x: int, y: int) -> int:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGBA").getpixel((x, y))[3]


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def mean_colour(data: bytes) -> tuple[float, float, float]:
    with Image.open(io.BytesIO(data)) as image:
        return tuple(float(c) for c in np.asarray(image.convert("RGB"), dtype=np.float32).mean(axis=(0, 1)))
