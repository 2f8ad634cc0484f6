"""Preview frames: the partial frames an engine streams, made small (a fast WebP) for the person
waiting, and kept a few minutes in this process's memory for their owner only (the API's
`/generate` hands them out by URL on an owner-checked route; the page gets the same frames).
They are never stored on disk and never charged; a cancelled generation's frames are dropped,
a failed one's expire like any (its owner may still be fetching the last)."""

from __future__ import annotations

import io
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from PIL import Image

from services.engines import PartialFrame

PREVIEW_EDGE = 640  # long edge of a preview frame, upscaled or downscaled to it
PREVIEW_QUALITY = 60


@dataclass(frozen=True)
class Preview:
    """One partial frame as the UI shows it."""

    generation_id: str
    index: int  # 0-based, in arrival order
    total: int  # frames the engine streams before the final image
    webp: bytes
    width: int
    height: int
    elapsed: float  # seconds since the request started

    @property
    def stage(self) -> str:
        return f"Preview {self.index + 1} of {self.total}"


def preview_webp(frame: PartialFrame) -> tuple[bytes, int, int]:
    """(WebP bytes, width, height) of a partial frame at PREVIEW_EDGE; runs in a worker thread."""
    image = frame.image
    if image is None:
        image = Image.open(io.BytesIO(frame.data or b""))
        image.draft("RGB", (PREVIEW_EDGE, PREVIEW_EDGE))  # JPEG only: decode at a smaller scale
        image.load()
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGB")
    scale = PREVIEW_EDGE / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if scale < 1:
        factor = max(1, int(1 / scale))
        small = image.reduce(factor) if factor > 1 else image
        image = small.resize(size, Image.BILINEAR)
    elif scale > 1:
        image = image.resize(size, Image.BICUBIC)
    buf = io.BytesIO()
    image.save(buf, "WEBP", quality=PREVIEW_QUALITY, method=0)
    return buf.getvalue(), image.width, image.height


class PreviewFrames:
    """Recent frames in memory, keyed by (generation, index), each with its owner: `get` answers
    the owner only. Bounded by count and age, so an abandoned stream cannot pile frames up."""

    def __init__(self, *, ttl_seconds: float = 300.0, max_frames: int = 512):
        self.ttl_seconds = ttl_seconds
        self.max_frames = max_frames
        self._frames: OrderedDict[tuple[str, int], tuple[int, bytes, float]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, *, user_id: int, generation_id: str, index: int, webp: bytes) -> None:
        now = time.monotonic()
        with self._lock:
            self._frames[(generation_id, index)] = (user_id, webp, now)
            self._frames.move_to_end((generation_id, index))
            self._expire(now)

    def get(self, *, user_id: int, generation_id: str, index: int) -> bytes | None:
        with self._lock:
            self._expire(time.monotonic())
            entry = self._frames.get((generation_id, index))
        if entry is None or entry[0] != user_id:
            return None
        return entry[1]

    def drop(self, generation_id: str) -> None:
        with self._lock:
            for key in [k for k in self._frames if k[0] == generation_id]:
                del self._frames[key]

    def _expire(self, now: float) -> None:
        while self._frames:
            key, (_, _, at) = next(iter(self._frames.items()))
            if len(self._frames) <= self.max_frames and now - at <= self.ttl_seconds:
                break
            del self._frames[key]
