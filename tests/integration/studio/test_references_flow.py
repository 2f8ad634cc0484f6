"""Edits with reference images through Studio.generate (issue #11): the OpenAI engine against the
fake over the real SDK (what arrives, in order, cleaned; the mask), the offline engine's blend,
the price with the surcharge, validation and moderation before any hold, failures released, the
references stored with the generation and another user's images refused."""

from __future__ import annotations

import asyncio
import dataclasses
import io

import pytest
from PIL import Image
from sqlalchemy import func
from sqlmodel import select

from models.generation import Generation, ModerationEvent
from services.errors import ContentRejected, NotFound, ProviderFailed, ValidationFailed
from services.references import ReferenceRefused
from services.studio import NOT_CHARGED, GalleryImage
from tests import pictures

START = 100


def edit(rig, user_id, references, *, mask=None, prompt="make it look like a watercolour", resolution="1K",
         aspect_ratio="1:1", style="photographic"):
    return asyncio.run(rig.studio.generate(user_id=user_id, is_admin=False, prompt=prompt, style=style,
                                           aspect_ratio=aspect_ratio, resolution=resolution,
                                           references=references, mask=mask))


def count(db, model, *where):
    with db.session() as s:
        return s.exec(select(func.count()).select_from(model).where(*where)).one()


def surcharged(rig, credits: int):
    rig.studio.catalog = dataclasses.replace(rig.studio.catalog, reference_surcharge=credits)


def test_references_reach_the_api_in_order_cleaned_and_the_mask_transparent_where_painted(make_rig, fake_openai):
    rig = make_rig("openai", fake_openai)
    surcharged(rig, 3)
    uid = rig.user(credits=START)
    first = pictures.jpeg_with_gps(400, 300, colour=(200, 40, 40))
    second = pictures.picture(200, 200, colour=(40, 200, 40), fmt="PNG")
    result = edit(rig, uid, [("holiday.jpg", first), ("leaf.png", second)],
                  mask=("mask.png", pictures.mask(400, 300, (100, 50, 200, 150))))

    received, = fake_openai.edits
    assert len(received.images) == 2
    assert [pictures.size_of(image) for image in received.images] == [(400, 300), (200, 200)]
    red, green = (pictures.mean_colour(image) for image in received.images)
    assert red[0] > 150 > red[1] and green[1] > 150 > green[0]  # the order kept
    assert not any(pictures.has_gps(image) for image in received.images)  # GPS in, no GPS out
    assert pictures.size_of(received.mask) == (400, 300)
    assert pictures.alpha_at(received.mask, 150, 100) == 0 and pictures.alpha_at(received.mask, 10, 10) == 255
    assert received.fields["model"] == "gpt-image-2" and received.fields["stream"] == "true"
    assert received.fields["prompt"] == rig.studio.styled_prompt(prompt="make it look like a watercolour",
                                                                 style="photographic")
    assert not fake_openai.calls("/images/generations")

    assert result.generation.cost == 10 + 2 * 3 and rig.balance(uid) == START - 16
    assert "from 2 reference images" in result.message
    stored = rig.studio.references_of(user_id=uid, generation_id=result.id)
    assert [(r["name"], r["source"], r["variant"]) for r in stored] == [
        ("holiday.jpg", "upload", "ref0.jpg"), ("leaf.png", "upload", "ref1.jpg")]
    content, media = rig.studio.open_image(user_id=uid, generation_id=result.id, variant="ref0.jpg")
    assert media == "image/jpeg" and content.read_bytes() == received.images[0]
    assert result.generation.masked
    moderated = [c.body for c in fake_openai.calls("/moderations")]
    assert sum(1 for body in moderated if isinstance(body.get("input"), list)) == 2  # one per image


def test_edits_stream_partial_frames_like_generations(make_rig, fake_openai):
    rig = make_rig("openai", fake_openai, PARTIAL_IMAGES=2)
    rig.studio.engine.partial_images = 2
    uid = rig.user(credits=START)
    frames = []
    result = asyncio.run(rig.studio.generate(
        user_id=uid, is_admin=False, prompt="a bolder sky", style="photographic", aspect_ratio="1:1",
        resolution="1K", references=[("a.jpg", pictures.picture())], on_preview=frames.append))
    assert [f.index for f in frames] == [0, 1] and result.generation.status == "succeeded"
    assert fake_openai.edits[0].fields["partial_images"] == "2"


def test_offline_blend_uses_the_references_and_is_charged_exactly(make_rig):
    rig = make_rig("offline")
    surcharged(rig, 2)
    uid = rig.user(credits=START)
    result = edit(rig, uid, [("red.jpg", pictures.picture(colour=(230, 20, 20)))])
    assert rig.balance(uid) == START - 12 and result.generation.cost == 12
    r, g, b = pictures.mean_colour(result.display_webp)
    assert r > g + 30 and r > b + 30  # visibly made from the red reference
    plain = asyncio.run(rig.studio.generate(user_id=uid, is_admin=False, prompt="make it look like a watercolour",
                                            style="photographic", aspect_ratio="1:1", resolution="1K"))
    assert plain.generation.cost == 10 and plain.generation.reference_images is None


def test_offline_mask_keeps_the_unpainted_part_of_the_first_reference(make_rig):
    rig = make_rig("offline")
    uid = rig.user(credits=START)
    blue = pictures.picture(512, 512, colour=(20, 20, 230), fmt="PNG")
    red = pictures.picture(512, 512, colour=(230, 20, 20), fmt="PNG")
    result = edit(rig, uid, [("blue.png", blue), ("red.png", red)],
                  mask=("mask.png", pictures.mask(512, 512, (0, 0, 512, 256))))  # the top half painted
    image = Image.open(io.BytesIO(result.display_webp)).convert("RGB")
    w, h = image.size
    bottom = image.getpixel((w // 4, h * 3 // 4))
    top = image.getpixel((w // 4, h // 4))
    assert bottom[2] > 180 and bottom[0] < 60  # unpainted: the first reference as it was
    assert top[0] > 60  # painted: the blend, with the red reference in it


@pytest.mark.parametrize("name, data, reason", [
    ("anim.png", b"GIF89a" + b"\x00" * 64, "this is a GIF"),
    ("drawing.png", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>', "an SVG"),
    ("doc.jpg", b"%PDF-1.7\n" + b"\x00" * 64, "a PDF"),
    ("archive.png", b"PK\x03\x04" + b"\x00" * 64, "a zip archive"),
    ("cut.jpg", pictures.picture(400, 300)[:600], "damaged"),
    ("empty.png", b"", "empty"),
])
def test_bad_uploads_are_refused_before_anything_is_held_or_stored(make_rig, fake_openai, name, data, reason):
    rig = make_rig("openai", fake_openai)
    uid = rig.user(credits=START)
    with pytest.raises(ReferenceRefused) as refused:
        edit(rig, uid, [("ok.jpg", pictures.picture()), (name, data)])
    assert str(refused.value).startswith(f"{name}: ") and reason in str(refused.value)
    assert rig.balance(uid) == START and count(rig.db, Generation) == 0
    assert not fake_openai.edits and not fake_openai.calls("/moderations")
    assert not list(rig.store.list_keys())


def test_too_many_too_large_and_bad_masks_are_refused(make_rig):
    rig = make_rig("offline", REFERENCE_MAX_IMAGES=2, REFERENCE_MAX_BYTES=50_000)
    uid = rig.user(credits=START)
    small = pictures.picture(64, 64)
    with pytest.raises(ReferenceRefused, match="3 reference images: at most 2"):
        edit(rig, uid, [("a.jpg", small)] * 3)
    with pytest.raises(ReferenceRefused, match="big.png: .* too large"):
        edit(rig, uid, [("big.png", pictures.picture(400, 400, fmt="PNG"))])
    with pytest.raises(ReferenceRefused, match="m.png: the mask has no transparency"):
        edit(rig, uid, [("a.jpg", small)], mask=("m.png", pictures.picture(64, 64, fmt="PNG")))
    with pytest.raises(ReferenceRefused, match="m.png: the mask is 64×32"):
        edit(rig, uid, [("a.jpg", small)], mask=("m.png", pictures.mask(64, 32, (0, 0, 8, 8))))
    with pytest.raises(ReferenceRefused, match="marks no region"):
        edit(rig, uid, [("a.jpg", small)], mask=("m.png", pictures.mask(64, 64, (0, 0, 0, 0))))
    with pytest.raises(ValidationFailed, match="A mask needs a reference"):
        edit(rig, uid, [], mask=("m.png", pictures.mask(64, 64, (0, 0, 8, 8))))
    assert rig.balance(uid) == START and count(rig.db, Generation) == 0


def test_flagged_reference_images_are_refused_uncharged_and_logged(make_rig, fake_openai):
    rig = make_rig("openai", fake_openai)
    uid = rig.user(credits=START)
    with pytest.raises(ContentRejected, match="reference images were refused"):
        edit(rig, uid, [("fine.jpg", pictures.picture()), ("bad.jpg", pictures.picture(colour=(255, 0, 0)))])
    assert rig.balance(uid) == START and count(rig.db, Generation) == 0 and not fake_openai.edits
    with rig.db.session() as s:
        event, = s.exec(select(ModerationEvent)).all()
    assert event.user_id == uid and event.source == "moderation" and "reference image" in event.prompt
    assert "violence/graphic" in event.categories


@pytest.mark.parametrize("mode, error", [("error_500", ProviderFailed), ("moderation_blocked", ContentRejected)])
def test_failure_after_the_hold_releases_it(make_rig, fake_openai, mode, error):
    rig = make_rig("openai", fake_openai)
    uid = rig.user(credits=START)
    fake_openai.fail(mode)
    with pytest.raises(error) as caught:
        edit(rig, uid, [("a.jpg", pictures.picture())])
    assert str(caught.value).startswith(NOT_CHARGED)
    assert rig.balance(uid) == START
    with rig.db.session() as s:
        generation = s.exec(select(Generation)).one()
    assert generation.status == "failed" and not rig.store.exists(generation.id)
    assert not list(rig.store.list_keys())  # the references went with it


def test_own_images_are_references_without_upload_and_others_are_not_found(make_rig):
    rig = make_rig("offline")
    alice, bob = rig.user(credits=START), rig.user(credits=START)
    first = edit(rig, alice, [("holiday.jpg", pictures.jpeg_with_gps())])
    again = edit(rig, alice, [GalleryImage(first.id), GalleryImage(first.id, reference=0)])
    assert [r["source"] for r in again.generation.reference_images] == [first.id, first.id]
    assert again.generation.reference_images[1]["name"] == "holiday.jpg"
    for item in (GalleryImage(first.id), GalleryImage(first.id, reference=0), GalleryImage("0" * 32)):
        with pytest.raises(NotFound):
            edit(rig, bob, [item])
    with pytest.raises(NotFound):
        edit(rig, alice, [GalleryImage(first.id, reference=5)])
    with pytest.raises(NotFound):
        rig.studio.open_image(user_id=bob, generation_id=first.id, variant="ref0.jpg")
    assert rig.balance(bob) == START


def test_references_are_deleted_with_the_generation(make_rig, clock):
    rig = make_rig("offline")
    uid = rig.user(credits=START)
    result = edit(rig, uid, [("a.jpg", pictures.picture())])
    path = rig.studio.open_image(user_id=uid, generation_id=result.id, variant="ref0.jpg")[0]
    assert path.is_file()
    rig.studio.delete(user_id=uid, generation_id=result.id)
    clock.advance(days=31)
    assert rig.studio.purge_trash() == 1
    assert not path.exists() and not list(rig.store.list_keys())
