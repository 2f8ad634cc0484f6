"""Reference images: what a person uploads to generate from, checked and cleaned before anything
is held, stored or sent (issue #11).

Checks, in this order, each refusal naming the file and the reason, nothing charged:
1. count: at most `max_images` (REFERENCE_MAX_IMAGES, default 8; the model takes 16);
2. size: at most `max_bytes` (REFERENCE_MAX_BYTES, default 20 MB), from the file's length before
   its bytes are read;
3. type by content, never by name: PNG, JPEG or WebP. The usual others are named (GIF, SVG,
   HEIC/HEIF, AVIF, PDF, a zip, BMP, TIFF), anything else is "not an image we can read";
4. pixels: at most `max_pixels` (40 megapixels), read from the header before any decoding, so a
   decompression bomb is refused without being decoded; one frame only (no animations);
5. the decode itself: a truncated or corrupt file is refused.

Then each image is normalised: the EXIF orientation applied, every piece of metadata dropped
(EXIF with GPS and camera, XMP, ICC, comments: the pixels are re-encoded, nothing is copied),
converted to RGB (RGBA when it has transparency), and scaled down to fit `max_edge` (2048 px:
what the model looks at; a JPEG is decoded at reduced scale when that is enough, which is most
of the cost saved, and may land a little under 2048; a job's references are prepared four at a
time). Opaque images are sent as JPEG (quality 95, no chroma subsampling), images
with transparency as PNG. `bench/references.py` measures the cost.
"""

from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from services import i18n
from services.errors import ValidationFailed

ACCEPTED = ("PNG", "JPEG", "WEBP")
MAX_IMAGES_LIMIT = 16  # the model's own limit on input images
DEFAULT_MAX_IMAGES = 8
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000
MAX_EDGE = 2048
JPEG_QUALITY = 95
PARALLEL = 4  # references of one job prepared at once (at most one per core)

# (leading bytes, or a test on the first bytes) → the format a person knows (error.reference.is_<format>)
_KNOWN_OTHERS = (
    (lambda b: b.startswith((b"GIF87a", b"GIF89a")), "gif"),
    (lambda b: b.startswith(b"%PDF"), "pdf"),
    (lambda b: b.startswith((b"PK\x03\x04", b"PK\x05\x06")), "zip"),
    (lambda b: b.startswith(b"BM"), "bmp"),
    (lambda b: b.startswith((b"II*\x00", b"MM\x00*")), "tiff"),
    (lambda b: b[4:8] == b"ftyp" and b[8:12] in (b"avif", b"avis"), "avif"),
    (lambda b: b[4:8] == b"ftyp" and b[8:12] in (b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1", b"heim",
                                                 b"heis"), "heic"),
    (lambda b: b"<svg" in b[:1024].lower() or (b.lstrip().startswith(b"<?xml") and b"svg" in b[:2048].lower()),
     "svg"),
)


class ReferenceRefused(ValidationFailed):
    """One reference (or the set) refused: the message names the file and says why (`reason_key`,
    a key of assets/i18n/ with its values; `text(language)` says it in that language)."""

    def __init__(self, name: str | None, reason_key: str, **params):
        reason = i18n.t(None, reason_key, **params)
        super().__init__(f"{name}: {reason}" if name else reason, key=reason_key, **params)
        self.name, self.reason = name, reason

    def text(self, language: str | None) -> str:
        reason = i18n.t(language, self.key, **self.params)
        return i18n.t(language, "error.reference.named", name=self.name, reason=reason) if self.name else reason


@dataclass(frozen=True)
class Reference:
    """A checked and cleaned reference image, ready to store and to send."""

    name: str
    data: bytes
    mime: str  # image/jpeg or image/png
    width: int
    height: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def extension(self) -> str:
        return "png" if self.mime == "image/png" else "jpg"


@dataclass(frozen=True)
class ReferenceRules:
    max_images: int = DEFAULT_MAX_IMAGES
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = MAX_PIXELS
    max_edge: int = MAX_EDGE

    def __post_init__(self):
        if not 1 <= self.max_images <= MAX_IMAGES_LIMIT:
            raise ValueError(f"max_images must be 1..{MAX_IMAGES_LIMIT}")

    def prepare(self, files: list[tuple[str, bytes | str | os.PathLike]]) -> list[Reference]:
        """[(name, bytes or path)] → cleaned references, in order; ReferenceRefused on the first
        file that fails (nothing is kept of the others: the caller holds or stores nothing)."""
        if len(files) > self.max_images:
            raise ReferenceRefused(None, "error.reference.too_many", count=len(files), limit=self.max_images)
        if len(files) <= 1:
            return [self.prepare_one(name, source) for name, source in files]
        # Pillow decodes and encodes without the GIL: a few at once use the machine's cores.
        with ThreadPoolExecutor(max_workers=min(len(files), PARALLEL, os.cpu_count() or 1), thread_name_prefix="studio-refs") as pool:
            return list(pool.map(lambda file: self.prepare_one(*file), files))  # the first refusal, in order

    def prepare_one(self, name: str, source: bytes | str | os.PathLike) -> Reference:
        name = _shown_name(name)
        data = self._read(name, source)
        head = data[:4096]
        try:
            image = Image.open(io.BytesIO(data), formats=ACCEPTED)
        except UnidentifiedImageError:
            raise ReferenceRefused(name, _unsupported(head)) from None
        except Image.DecompressionBombError:  # Pillow's own ceiling (~179 megapixels), met at open
            raise ReferenceRefused(name, "error.reference.bomb", claimed=f"{2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f}",
                                   limit=f"{self.max_pixels / 1e6:.0f}") from None
        except (OSError, ValueError, SyntaxError):
            raise ReferenceRefused(name, "error.reference.damaged") from None
        with image:
            width, height = image.size
            if width < 1 or height < 1:
                raise ReferenceRefused(name, "error.reference.no_pixels")
            if width * height > self.max_pixels:
                raise ReferenceRefused(name, "error.reference.too_many_pixels", width=width, height=height,
                                       megapixels=f"{width * height / 1e6:.0f}", limit=f"{self.max_pixels / 1e6:.0f}")
            if getattr(image, "n_frames", 1) > 1:
                raise ReferenceRefused(name, "error.reference.animated")
            try:
                cleaned = self._normalise(image)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
                raise ReferenceRefused(name, "error.reference.incomplete") from None
        return self._encode(name, cleaned)

    def prepare_mask(self, name: str, source: bytes | str | os.PathLike, first: Reference) -> bytes:
        """A mask for the first reference → a PNG of exactly its size whose alpha is 0 where the
        image is to change (what `images.edit` takes). The mask must have transparency, mark some
        region, and have the first reference's shape (it is scaled to its cleaned size)."""
        name = _shown_name(name)
        data = self._read(name, source)
        try:
            image = Image.open(io.BytesIO(data), formats=("PNG", "WEBP"))
        except UnidentifiedImageError:
            raise ReferenceRefused(name, "error.reference.mask_format") from None
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            raise ReferenceRefused(name, "error.reference.mask_damaged") from None
        with image:
            width, height = image.size
            if width * height > self.max_pixels:
                raise ReferenceRefused(name, "error.reference.mask_too_many_pixels",
                                       megapixels=f"{width * height / 1e6:.0f}", limit=f"{self.max_pixels / 1e6:.0f}")
            if abs(width / height - first.width / first.height) > 0.02 * (first.width / first.height):
                raise ReferenceRefused(name, "error.reference.mask_shape", width=width, height=height,
                                       first_width=first.width, first_height=first.height)
            try:
                image.load()
                has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
                if not has_alpha:
                    raise ReferenceRefused(name, "error.reference.mask_opaque")
                alpha = image.convert("RGBA").getchannel("A")
            except (OSError, ValueError, SyntaxError):
                raise ReferenceRefused(name, "error.reference.mask_incomplete") from None
        if alpha.size != (first.width, first.height):
            alpha = alpha.resize((first.width, first.height), Image.Resampling.NEAREST)
        if alpha.getextrema()[0] > 0:
            raise ReferenceRefused(name, "error.reference.mask_empty")
        mask = Image.new("RGBA", alpha.size, (0, 0, 0, 255))
        mask.putalpha(alpha)
        out = io.BytesIO()
        mask.save(out, "PNG", optimize=False, compress_level=6)
        return out.getvalue()

    def _read(self, name: str, source) -> bytes:
        if isinstance(source, bytes | bytearray | memoryview):
            size = len(source)
            if size > self.max_bytes:
                raise ReferenceRefused(name, "error.reference.too_big", **_too_big(size, self.max_bytes))
            data = bytes(source)
        else:
            path = Path(source)
            try:
                size = path.stat().st_size
                if size > self.max_bytes:
                    raise ReferenceRefused(name, "error.reference.too_big", **_too_big(size, self.max_bytes))
                with path.open("rb") as f:
                    data = f.read(self.max_bytes + 1)  # a file growing under us is still capped
            except OSError:
                raise ReferenceRefused(name, "error.reference.unreadable") from None
            if len(data) > self.max_bytes:
                raise ReferenceRefused(name, "error.reference.too_big", **_too_big(len(data), self.max_bytes))
        if not data:
            raise ReferenceRefused(name, "error.reference.empty")
        return data

    def _normalise(self, image: Image.Image) -> Image.Image:
        if image.format == "JPEG" and max(image.size) > self.max_edge:
            # Decode at 1/2, 1/4 or 1/8 scale when that lands within 10% under the target size: a
            # 4000×3000 photo decodes straight to 2000×1500, a quarter of the work, with no resize.
            scale = self.max_edge / max(image.size)
            image.draft("RGB", (int(image.width * scale * 0.9), int(image.height * scale * 0.9)))
        image.load()
        image = ImageOps.exif_transpose(image)  # a new image; the EXIF orientation is applied
        scale = self.max_edge / max(image.size)
        if scale < 1.0:
            target = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = _rgb(image).resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
        return _rgb(image)

    def _encode(self, name: str, image: Image.Image) -> Reference:
        image.info = {}  # Pillow's savers copy some of it (a JPEG comment, a PNG's ICC profile) otherwise
        out = io.BytesIO()
        if image.mode == "RGBA":
            image.save(out, "PNG", compress_level=3)
            mime = "image/png"
        else:
            image.save(out, "JPEG", quality=JPEG_QUALITY, subsampling=0, optimize=False)
            mime = "image/jpeg"
        # Only pixels are written: no exif=, icc_profile=, comment or XMP is passed to save().
        return Reference(name=name, data=out.getvalue(), mime=mime, width=image.width, height=image.height)


def mask_from_layers(size: tuple[int, int], layers: list) -> bytes | None:
    """What a person painted over an image (the editor's layers: RGBA images or arrays) → a mask PNG
    of `size`: alpha 0 where anything was painted, 255 elsewhere. None when nothing was painted."""
    import numpy as np

    painted = np.zeros((size[1], size[0]), dtype=bool)
    for layer in layers or []:
        image = layer if isinstance(layer, Image.Image) else Image.fromarray(np.asarray(layer))
        if image.mode != "RGBA":
            continue
        alpha = image.getchannel("A")
        if alpha.size != size:
            alpha = alpha.resize(size, Image.Resampling.NEAREST)
        painted |= np.asarray(alpha) > 0
    if not painted.any():
        return None
    mask = Image.new("RGBA", size, (0, 0, 0, 255))
    mask.putalpha(Image.fromarray(np.where(painted, 0, 255).astype(np.uint8), "L"))
    out = io.BytesIO()
    mask.save(out, "PNG")
    return out.getvalue()


def _rgb(image: Image.Image) -> Image.Image:
    """RGB, or RGBA when the image has any transparency; other modes (P, LA, CMYK, I;16, …) converted."""
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        image = image.convert("RGBA")
        if image.getchannel("A").getextrema()[0] == 255:
            return image.convert("RGB")  # an alpha channel that hides nothing
        return image
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        import numpy as np  # 16-bit and float greyscale: scaled to 8 bits, not clipped

        values = np.asarray(image, dtype=np.float64)
        peak = values.max() or 1.0
        image = Image.fromarray(np.clip(values * (255.0 / max(peak, 255.0)), 0, 255).astype(np.uint8), "L")
    return image.convert("RGB")


def _unsupported(head: bytes) -> str:
    for test, what in _KNOWN_OTHERS:
        if test(head):
            return f"error.reference.is_{what}"
    return "error.reference.not_an_image"


def _too_big(size: int, limit: int) -> dict[str, str]:
    return {"size": f"{size / 1e6:.1f}", "limit": f"{limit / 1e6:.0f}"}


def _shown_name(name: str | None) -> str:
    """The file's own name (no folders), printable, at most 100 characters."""
    name = os.path.basename(str(name or "").replace("\\", "/")) or "image"
    name = "".join(ch if ch.isprintable() else "?" for ch in name)
    return name if len(name) <= 100 else name[:97] + "..."
