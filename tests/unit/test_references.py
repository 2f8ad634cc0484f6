"""Reference images (services/references.py): refused by content, size, pixel count and damage,
each refusal naming the file; cleaned of every piece of metadata, turned upright, scaled to the
model's input size. Real files made with Pillow; the assertions read the bytes that come out."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from services.references import MAX_EDGE, ReferenceRefused, ReferenceRules

RULES = ReferenceRules()


def photo(width=640, height=480, *, fmt="JPEG", mode="RGB", **save) -> bytes:
    rng = np.random.default_rng(7)
    channels = {"RGB": 3, "RGBA": 4, "CMYK": 4, "L": 1}[mode]
    pixels = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    if mode == "RGBA":
        pixels[..., 3] = 255
    image = Image.fromarray(pixels.squeeze() if channels == 1 else pixels, mode)
    out = io.BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()


def gps_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "SpyCam Inc."  # Make
    exif[0x0110] = "Model X"  # Model
    gps = {1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)}
    exif[0x8825] = gps  # GPSInfo
    return exif


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width×height (8-bit RGB) with one tiny compressed row: a bomb's shape."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def test_a_jpeg_with_gps_and_camera_comes_out_without_any_metadata():
    original = photo(exif=gps_exif().tobytes(), comment=b"taken at home")
    assert b"SpyCam" in original and b"taken at home" in original  # the input carries them
    ref, = RULES.prepare([("holiday.jpg", original)])
    assert ref.mime == "image/jpeg" and (ref.width, ref.height) == (640, 480)
    out = Image.open(io.BytesIO(ref.data))
    assert dict(out.getexif()) == {} and "exif" not in out.info and "icc_profile" not in out.info
    assert "comment" not in out.info
    assert b"SpyCam" not in ref.data and b"Model X" not in ref.data and b"taken at home" not in ref.data
    assert b"Exif\x00\x00" not in ref.data


def test_the_exif_orientation_is_applied_then_dropped():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    ref = RULES.prepare_one("sideways.jpg", photo(400, 200, exif=exif.tobytes()))
    assert (ref.width, ref.height) == (200, 400)
    assert Image.open(io.BytesIO(ref.data)).getexif().get(0x0112) is None


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_png_and_webp_are_accepted(fmt):
    ref = RULES.prepare_one(f"pic.{fmt.lower()}", photo(300, 200, fmt=fmt))
    assert ref.mime == "image/jpeg" and (ref.width, ref.height) == (300, 200)


def test_transparency_is_kept_as_png_and_an_opaque_alpha_is_dropped():
    pixels = np.zeros((100, 100, 4), dtype=np.uint8)
    pixels[..., 0] = 200
    pixels[:50, :, 3] = 255  # the top half opaque, the bottom transparent
    out = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(out, "PNG")
    ref = RULES.prepare_one("cutout.png", out.getvalue())
    assert ref.mime == "image/png"
    image = Image.open(io.BytesIO(ref.data))
    assert image.mode == "RGBA" and image.getpixel((10, 90))[3] == 0 and image.getpixel((10, 10))[3] == 255
    assert RULES.prepare_one("opaque.png", photo(50, 50, fmt="PNG", mode="RGBA")).mime == "image/jpeg"


def test_cmyk_and_greyscale_become_rgb():
    assert Image.open(io.BytesIO(RULES.prepare_one("print.jpg", photo(64, 64, mode="CMYK")).data)).mode == "RGB"
    assert Image.open(io.BytesIO(RULES.prepare_one("grey.png", photo(64, 64, fmt="PNG", mode="L")).data)).mode == "RGB"
    deep = io.BytesIO()
    Image.fromarray(np.full((32, 32), 40000, dtype=np.uint16)).save(deep, "PNG")
    ref = RULES.prepare_one("16bit.png", deep.getvalue())
    assert Image.open(io.BytesIO(ref.data)).getpixel((0, 0))[0] > 100, "scaled to 8 bits, not clipped to black"


def test_a_large_photo_is_scaled_to_the_models_input_size_keeping_its_shape():
    ref = RULES.prepare_one("big.jpg", photo(4000, 3000, quality=80))
    assert (ref.width, ref.height) == (2000, 1500), "decoded at half scale: within 10% under the limit"
    ref = RULES.prepare_one("huge.jpg", photo(6000, 4500, quality=80))
    assert (ref.width, ref.height) == (MAX_EDGE, 1536), "a half-scale decode (3000) is still too big: resized"
    ref = RULES.prepare_one("tall.png", photo(1000, 3000, fmt="PNG", compress_level=1))
    assert (ref.width, ref.height) == (683, MAX_EDGE)


@pytest.mark.parametrize(("data", "named"), [
    (b"GIF89a" + b"\x00" * 100, "a GIF"),
    (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>', "an SVG"),
    (b"<svg viewBox='0 0 1 1'></svg>", "an SVG"),
    (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "a HEIC/HEIF photo"),
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "a PDF"),
    (b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + b"\x00" * 40, "a zip archive"),
    (b"hello, I am text", "not an image we can read"),
])
def test_other_types_are_refused_by_content_whatever_their_name(data, named):
    with pytest.raises(ReferenceRefused) as refused:
        RULES.prepare_one("innocent.png", data)
    assert str(refused.value).startswith("innocent.png: ") and named in str(refused.value)
    assert "PNG, JPEG or WebP" in str(refused.value)


def test_a_gif_made_by_pillow_is_refused_even_though_pillow_reads_it():
    out = io.BytesIO()
    Image.new("RGB", (10, 10)).save(out, "GIF")
    with pytest.raises(ReferenceRefused, match="anim.png: this is a GIF"):
        RULES.prepare_one("anim.png", out.getvalue())


def test_a_decompression_bomb_is_refused_from_its_header():
    bomb = png_header_only(30_000, 30_000)  # 900 megapixels claimed, a few hundred bytes sent
    assert len(bomb) < 200
    with pytest.raises(ReferenceRefused, match=r"bomb.png: the image claims more than 179 megapixels; at most 40"):
        RULES.prepare_one("bomb.png", bomb)
    # Under Pillow's own ceiling (where it only warns, or says nothing), the header is enough for us.
    with pytest.raises(ReferenceRefused, match=r"wide.png: 10000×9000 pixels is 90 megapixels; at most 40"):
        RULES.prepare_one("wide.png", png_header_only(10_000, 9_000))
    with pytest.raises(ReferenceRefused, match=r"big.png: 10000×5000 pixels is 50 megapixels; at most 40"):
        RULES.prepare_one("big.png", png_header_only(10_000, 5_000))


def test_truncated_and_corrupt_files_are_refused():
    whole = photo(800, 600)
    with pytest.raises(ReferenceRefused, match="cut.jpg: the file is damaged or incomplete"):
        RULES.prepare_one("cut.jpg", whole[: len(whole) // 2])
    with pytest.raises(ReferenceRefused, match="lies.png: the file is damaged"):
        RULES.prepare_one("lies.png", png_header_only(100, 100))  # one row of data for a hundred
    with pytest.raises(ReferenceRefused, match="empty.png: the file is empty"):
        RULES.prepare_one("empty.png", b"")


def test_animations_are_refused():
    frames = [Image.new("RGB", (20, 20), c) for c in ("red", "blue")]
    out = io.BytesIO()
    frames[0].save(out, "WEBP", save_all=True, append_images=frames[1:])
    with pytest.raises(ReferenceRefused, match="moving.webp: animated images are not supported"):
        RULES.prepare_one("moving.webp", out.getvalue())


def test_size_is_checked_before_the_bytes_are_read(tmp_path):
    rules = ReferenceRules(max_bytes=10_000)
    big = tmp_path / "big.jpg"
    big.write_bytes(photo(400, 400, quality=95))
    assert big.stat().st_size > 10_000
    with pytest.raises(ReferenceRefused, match=r"big.jpg: 0\.\d MB is too large; at most 0 MB"):
        rules.prepare([("big.jpg", big)])
    with pytest.raises(ReferenceRefused, match="too large"):
        rules.prepare_one("big.jpg", big.read_bytes())
    small = tmp_path / "small.jpg"
    small.write_bytes(photo(40, 40))
    assert rules.prepare([("small.jpg", small)])[0].width == 40


def test_several_are_prepared_in_order_and_the_first_bad_one_is_named():
    files = [(f"ref{i}.jpg", photo(32 + i, 32)) for i in range(5)]
    assert [r.width for r in RULES.prepare(files)] == [32, 33, 34, 35, 36]
    files[3] = ("third-bad.png", b"GIF89a....")
    files[4] = ("fourth-bad.png", b"%PDF-1.4")
    with pytest.raises(ReferenceRefused, match="third-bad.png: this is a GIF"):
        RULES.prepare(files)


def test_the_count_is_limited_and_the_limit_itself_bounded():
    files = [(f"ref{i}.jpg", photo(32, 32)) for i in range(9)]
    with pytest.raises(ReferenceRefused, match="9 reference images: at most 8 per image"):
        RULES.prepare(files)
    assert len(ReferenceRules(max_images=16).prepare(files)) == 9
    with pytest.raises(ValueError):
        ReferenceRules(max_images=17)


def test_names_are_shown_without_folders_or_control_characters():
    with pytest.raises(ReferenceRefused) as refused:
        RULES.prepare_one("../../etc/\x1b[31mevil.png", b"nope")
    assert str(refused.value).startswith("?[31mevil.png: ")


# Masks (the first reference's region to change) ---------------------------------------------------


def _rgba(width, height, transparent_box=None, *, mode="RGBA") -> bytes:
    alpha = np.full((height, width), 255, dtype=np.uint8)
    if transparent_box:
        left, top, right, bottom = transparent_box
        alpha[top:bottom, left:right] = 0
    image = Image.new("RGBA", (width, height), (0, 0, 0, 255))
    image.putalpha(Image.fromarray(alpha, "L"))
    out = io.BytesIO()
    image.convert(mode).save(out, "PNG")
    return out.getvalue()


def test_a_mask_is_scaled_to_the_cleaned_first_reference_and_keeps_its_transparent_region():
    first = RULES.prepare_one("big.jpg", photo(4000, 3000))  # cleaned to 2048 px on the long edge
    mask = RULES.prepare_mask("mask.png", _rgba(800, 600, (0, 0, 400, 600)), first)
    out = Image.open(io.BytesIO(mask))
    assert out.mode == "RGBA" and out.size == (first.width, first.height)
    assert out.getpixel((10, 10))[3] == 0 and out.getpixel((first.width - 10, 10))[3] == 255


@pytest.mark.parametrize("data, reason", [
    (_rgba(64, 64, mode="RGB"), "no transparency"),
    (_rgba(64, 64), "marks no region"),
    (_rgba(64, 32, (0, 0, 8, 8)), "the mask is 64×32 but the first reference is 64×64"),
    (photo(64, 64), "a mask must be a PNG or WebP"),
    (b"not an image", "a mask must be a PNG or WebP"),
])
def test_bad_masks_are_refused_by_name(data, reason):
    first = RULES.prepare_one("first.png", photo(64, 64, fmt="PNG"))
    with pytest.raises(ReferenceRefused) as refused:
        RULES.prepare_mask("mask.png", data, first)
    assert str(refused.value).startswith("mask.png: ") and reason in str(refused.value)


def test_painted_layers_become_a_mask_transparent_where_painted():
    from services.references import mask_from_layers

    layer = Image.new("RGBA", (50, 40), (0, 0, 0, 0))
    layer.paste((255, 46, 136, 255), (10, 10, 20, 20))
    mask = Image.open(io.BytesIO(mask_from_layers((100, 80), [layer])))  # the editor's layer at half size
    assert mask.size == (100, 80)
    assert mask.getpixel((30, 30))[3] == 0 and mask.getpixel((5, 5))[3] == 255 and mask.getpixel((60, 60))[3] == 255
    assert mask_from_layers((100, 80), [Image.new("RGBA", (100, 80), (0, 0, 0, 0))]) is None  # nothing painted
