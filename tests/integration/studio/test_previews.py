"""Partial frames at the service level, on SQLite and PostgreSQL: they reach `on_preview` as small
WebPs before the result, the image is charged once, and a stream that breaks after a partial frame
is a failure that charges nothing (the hold released, the ledger reconciled)."""

import asyncio
import io

import pytest
from PIL import Image

from services.errors import ProviderFailed
from services.studio import NOT_CHARGED

START = 100


def generate_with_previews(rig, uid, **kwargs):
    seen = []

    async def run():
        result = await rig.studio.generate(user_id=uid, is_admin=False, prompt="a lighthouse", style="photographic",
                                           aspect_ratio="16:9", resolution="1K", on_preview=seen.append, **kwargs)
        return result

    try:
        return asyncio.run(run()), seen
    except Exception as exc:
        exc.previews = seen
        raise


def test_partial_frames_come_first_and_the_image_is_charged_once(make_rig, fake_openai):
    rig = make_rig("openai", fake_openai)
    uid = rig.user(credits=START)
    result, previews = generate_with_previews(rig, uid)
    assert [(p.index, p.total, p.stage) for p in previews] == [(0, 2, "Preview 1 of 2"), (1, 2, "Preview 2 of 2")]
    for p in previews:
        frame = Image.open(io.BytesIO(p.webp))
        assert (frame.format, frame.size) == ("WEBP", (640, 360)) == ("WEBP", (p.width, p.height))
        assert p.generation_id == result.id
        assert rig.studio.preview_frame(user_id=uid, generation_id=result.id, index=p.index) == p.webp
    assert previews[0].elapsed <= previews[1].elapsed
    assert rig.balance(uid) == START - 10 and rig.ledger.reconcile() == []
    body = fake_openai.calls("/images/generations")[0].body
    assert body["stream"] is True and body["partial_images"] == 2


def test_a_stream_cut_after_one_partial_frame_charges_nothing(make_rig, fake_openai):
    rig = make_rig("openai", fake_openai)
    uid = rig.user(credits=START)
    fake_openai.fail("cut_stream", times=1)
    with pytest.raises(ProviderFailed) as caught:
        generate_with_previews(rig, uid)
    assert str(caught.value).startswith(NOT_CHARGED) and "broke before the image was finished" in str(caught.value)
    assert [p.stage for p in caught.value.previews] == ["Preview 1 of 2"]
    assert rig.balance(uid) == START and rig.ledger.balance(uid).held == 0
    assert rig.ledger.reconcile() == [] and rig.studio.gallery(user_id=uid).total == 0
    assert len(fake_openai.calls("/images/generations")) == 1, "a broken stream is not retried"


def test_the_offline_engine_streams_coarse_then_finer_drafts(make_rig):
    from services.engines import OfflineEngine

    rig = make_rig()
    rig.studio.engine = OfflineEngine(partial_images=2)
    uid = rig.user(credits=START)
    result, previews = generate_with_previews(rig, uid)
    assert [p.stage for p in previews] == ["Preview 1 of 2", "Preview 2 of 2"]
    assert len(previews[0].webp) < len(previews[1].webp), "the first draft is coarser"
    assert rig.balance(uid) == START - 10 and result.generation.engine == "offline"


def test_frames_are_skipped_while_the_encoders_are_behind_and_the_image_still_comes(make_rig, fake_openai):
    rig = make_rig("openai", fake_openai)
    uid = rig.user(credits=START)
    rig.studio.preview_backlog = 0  # as if the CPU pool were already full: no frame is worth encoding
    result, previews = generate_with_previews(rig, uid)
    assert previews == [], "no preview encoded"
    assert rig.balance(uid) == START - 10 and result.generation.status == "succeeded"
    assert [p.stage for p in generate_with_previews(rig, uid)[1]] == [], "still skipped"

    rig.studio.preview_backlog = 4
    _, previews = generate_with_previews(rig, uid)
    assert [p.stage for p in previews] == ["Preview 1 of 2", "Preview 2 of 2"], "the pool is idle: every frame"
    assert rig.studio._cpu_jobs == 0, "every CPU job counted out"
