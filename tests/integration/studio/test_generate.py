"""The happy path through the real store and Ledger: charged exactly once, stored, recorded."""

import io

import pytest
from PIL import Image
from sqlmodel import select

from models.generation import Generation
from models.ledger import Hold
from services.engines import safety_identifier
from services.moderation import MODERATION_MODEL


def _hold(db, job_id):
    with db.session() as s:
        return s.exec(select(Hold).where(Hold.job_id == job_id)).one()


def test_offline_generation_is_charged_exactly_and_stored(make_rig):
    rig = make_rig()
    uid = rig.user(credits=100)
    stages = []
    result = rig.generate(uid, prompt="  a lighthouse at dusk\n", style="cinematic", aspect_ratio="16:9",
                          resolution="2K", progress=lambda f, s: stages.append((f, s)))

    assert result.balance == 80 == rig.balance(uid)
    g = result.generation
    assert (g.status, g.engine, g.model, g.cost) == ("succeeded", "offline", "offline-preview", 20)
    assert (g.prompt, g.style, g.aspect_ratio, g.resolution) == ("a lighthouse at dusk", "cinematic", "16:9", "2K")
    assert g.styled_prompt.startswith("A cinematic film still of a lighthouse at dusk.")
    assert (g.width, g.height) == (2048, 1152) == (g.requested_width, g.requested_height)
    assert g.image_key == g.id and g.finished_at is not None and g.error is None
    assert {"engine_ms", "postprocess_ms", "store_ms", "total_ms"} <= set(g.timings)
    assert _hold(rig.db, g.id).status == "captured"
    assert rig.ledger.reconcile() == []
    assert "20 credits charged" in result.message and "offline preview" in result.message
    assert result.png_url == f"/images/{g.id}/png"

    png = Image.open(rig.store.open(g.id, "png"))
    assert (png.format, png.size) == ("PNG", (2048, 1152))
    display = Image.open(io.BytesIO(result.display_webp))
    assert (display.format, display.size) == ("WEBP", (2048, 1152))
    thumb = Image.open(rig.store.open(g.id, "thumb"))
    assert thumb.format == "WEBP" and max(thumb.size) <= 384
    fractions = [f for f, _ in stages]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(stages) >= 5


def test_openai_generation_sends_the_styled_prompt_size_and_safety_identifier(make_rig, fake_openai):
    rig = make_rig("openai", fake_openai)
    uid = rig.user(credits=50)
    result = rig.generate(uid, prompt="a red bicycle", style="anime", aspect_ratio="3:2", resolution="1K")

    assert rig.balance(uid) == 40
    paths = [r.path for r in fake_openai.requests]
    assert paths == ["/v1/moderations", "/v1/images/generations"], "moderation comes before the image"
    moderation, image = fake_openai.requests
    assert moderation.body == {"model": MODERATION_MODEL, "input": result.generation.styled_prompt}
    assert image.body["prompt"] == result.generation.styled_prompt
    assert image.body["prompt"].startswith("An anime illustration of a red bicycle.")
    assert image.body["model"] == "gpt-image-2" and image.body["n"] == 1
    assert image.body["size"] == "1024x688" and image.body["output_format"] == "png"
    assert image.body["quality"] == "low"
    assert image.body["safety_identifier"] == safety_identifier(uid) != str(uid)
    g = result.generation
    assert (g.engine, g.model, g.width, g.height) == ("openai", "gpt-image-2", 1024, 683)
    assert (g.requested_width, g.requested_height) == (1024, 688)
    assert g.usage["output_tokens"] > 0 and g.usage["input_tokens"] == 42
    assert "image in the anime style" in result.message


def test_the_provider_png_is_kept_byte_for_byte_when_it_is_already_the_right_size(make_rig, fake_openai):
    rig = make_rig("openai", fake_openai)
    uid = rig.user(credits=10)
    result = rig.generate(uid, aspect_ratio="16:9", resolution="1K")
    assert rig.store.read(result.id, "png") == fake_openai.png(1024, 576)


def test_every_style_goes_through_the_same_flow(make_rig, catalog):
    rig = make_rig()
    uid = rig.user(credits=10 * len(catalog.styles))
    for style in catalog.style_names:
        assert rig.generate(uid, prompt="a quiet harbour", style=style).generation.style == style
    assert rig.balance(uid) == 0
    with rig.db.session() as s:
        assert len(s.exec(select(Generation).where(Generation.status == "succeeded")).all()) == len(catalog.styles)


def test_admins_pay_too(make_rig):
    rig = make_rig()
    admin = rig.user(credits=40, role="admin")
    rig.generate(admin, resolution="4K", aspect_ratio="9:16", is_admin=True)
    assert rig.balance(admin) == 0


@pytest.mark.parametrize("resolution, cost", [("1K", 10), ("2K", 20), ("4K", 40)])
def test_price_follows_the_catalog(make_rig, resolution, cost):
    rig = make_rig()
    uid = rig.user(credits=100)
    assert rig.generate(uid, resolution=resolution, aspect_ratio="21:9").generation.cost == cost
    assert rig.balance(uid) == 100 - cost
