"""The style lab's services on SQLite and PostgreSQL: saved styles (rules, owners, share codes,
prompt history) and Compare / Variations (priced up front, one hold per image, one batch)."""

from __future__ import annotations

import asyncio
import re

import pytest
from sqlmodel import select

from models.generation import Generation
from models.ledger import Hold
from models.style import SavedStyle
from services.errors import Conflict, InsufficientCredits, NotFound, RateLimited, ValidationFailed
from services.studio.compare import Compare
from services.studio.styles import MyStyles


@pytest.fixture
def lab(make_rig):
    def _make(**kwargs):
        rig = make_rig(**kwargs)
        styles = MyStyles(db=rig.db, catalog=rig.studio.catalog, max_styles=kwargs.pop("max_styles", 50))
        rig.studio.style_resolver = styles.resolve
        return rig, styles, Compare(studio=rig.studio, ledger=rig.ledger, max_styles=6)
    return _make


def test_saved_style_rules_each_refused_with_its_message_and_nothing_saved(lab):
    rig, styles, _ = lab()
    uid = rig.user()
    good = {"name": "Moody", "template": "A moody photo of {prompt}, fog"}
    cases = [
        ({"name": ""}, "give the style a name"),
        ({"name": "   "}, "give the style a name"),
        ({"name": "x" * 61}, "too long: 61 characters (at most 60)"),
        ({"name": "bad\x07name"}, "control character (U+0007)"),
        ({"name": "Anime"}, "name of a built-in style"),
        ({"template": ""}, "template containing {prompt}"),
        ({"template": "no placeholder"}, "does not contain {prompt}"),
        ({"template": "{prompt} and {prompt}"}, "more than once"),
        ({"template": "x" * 992 + " {prompt}"}, "too long: 1,001 characters"),
        ({"template": "line one\n{prompt}"}, "control character (U+000A)"),
        ({"template": "tab\t{prompt}"}, "control character (U+0009)"),
        ({"aspect_ratio": "7:5"}, "Unknown aspect ratio"),
        ({"resolution": "16K"}, "Unknown resolution"),
    ]
    for change, message in cases:
        with pytest.raises(ValidationFailed, match=re.escape(message)):
            styles.create(user_id=uid, **{**good, **change})
    assert styles.list(user_id=uid) == []
    saved = styles.create(user_id=uid, name="x" * 60, template="y" * 992 + "{prompt}", aspect_ratio="16:9",
                          resolution="1K")
    assert (saved.aspect_ratio, saved.resolution) == ("16:9", "1K")
    styles.create(user_id=uid, **good)
    with pytest.raises(Conflict, match="already have a style called “Moody”"):
        styles.create(user_id=uid, name="moody", template="{prompt}")
    assert len(styles.list(user_id=uid)) == 2


def test_edit_delete_duplicate_and_the_fifty_limit(lab):
    rig, styles, _ = lab(max_styles=3)
    uid = rig.user()
    first = styles.create(user_id=uid, name="One", template="one {prompt}")
    copy = styles.duplicate(user_id=uid, style="anime")
    assert copy.name == "Anime (my copy)" and copy.base_style == "anime"
    assert copy.template == rig.studio.catalog.style("anime").template
    styles.create(user_id=uid, name="Three", template="three {prompt}")
    with pytest.raises(ValidationFailed, match="most you can keep is 3"):
        styles.create(user_id=uid, name="Four", template="four {prompt}")
    with pytest.raises(Conflict):
        styles.update(user_id=uid, style_id=first.id, name="three", template="x {prompt}")
    with pytest.raises(ValidationFailed, match="exactly once"):
        styles.update(user_id=uid, style_id=first.id, name="One", template="nothing")
    assert styles.get(user_id=uid, style_id=first.id).template == "one {prompt}", "nothing half-saved"
    styles.update(user_id=uid, style_id=first.id, name="One b", template="one b {prompt}", resolution="2K")
    assert styles.resolve(user_id=uid, name="ONE B").apply("cat") == "one b cat"
    assert styles.delete(user_id=uid, style_id=first.id) == "One b"
    styles.create(user_id=uid, name="Four", template="four {prompt}")  # room again
    assert [s.name for s in styles.list(user_id=uid)] == ["Anime (my copy)", "Four", "Three"]


def test_another_user_cannot_read_use_change_or_delete_a_style(lab):
    rig, styles, _ = lab()
    owner, other = rig.user(), rig.user()
    mine = styles.create(user_id=owner, name="Secret sauce", template="secret {prompt}")
    for call in (lambda: styles.get(user_id=other, style_id=mine.id),
                 lambda: styles.update(user_id=other, style_id=mine.id, name="Mine now", template="{prompt}"),
                 lambda: styles.delete(user_id=other, style_id=mine.id),
                 lambda: styles.export(user_id=other, style_id=mine.id)):
        with pytest.raises(NotFound):
            call()
    assert styles.resolve(user_id=other, name="Secret sauce") is None
    with pytest.raises(ValidationFailed, match="Unknown style"):
        rig.generate(other, style="Secret sauce")
    assert rig.balance(other) == 100, "a refused style charges nothing"
    made = rig.generate(owner, style="secret sauce")
    assert made.generation.style == "Secret sauce" and made.generation.styled_prompt == "secret a lighthouse at dusk"
    assert styles.get(user_id=owner, style_id=mine.id).template == "secret {prompt}"


def test_share_code_imports_an_independent_copy_and_reveals_nothing_else(lab):
    rig, styles, _ = lab()
    owner, other = rig.user(), rig.user()
    mine = styles.create(user_id=owner, name="Shared", template="shared {prompt}", aspect_ratio="16:9")
    code = styles.export(user_id=owner, style_id=mine.id)
    assert len(code) == 16 and code == styles.export(user_id=owner, style_id=mine.id)
    second = styles.create(user_id=owner, name="Shared too", template="too {prompt}")
    assert styles.export(user_id=owner, style_id=second.id) != code, "a random code per style, not the owner's"
    copy = styles.import_code(user_id=other, code=f"  {code} ")
    assert (copy.user_id, copy.name, copy.template, copy.aspect_ratio, copy.share_code) == \
        (other, "Shared", "shared {prompt}", "16:9", None)
    again = styles.import_code(user_id=other, code=code)
    assert again.name == "Shared (2)"
    styles.update(user_id=owner, style_id=mine.id, name="Shared", template="changed {prompt}")
    assert styles.get(user_id=other, style_id=copy.id).template == "shared {prompt}", "an independent copy"
    styles.delete(user_id=other, style_id=copy.id)
    assert styles.get(user_id=owner, style_id=mine.id).name == "Shared"
    for bad, message in (("nope", "not a style code"), ("A" * 16, "No style has this code")):
        with pytest.raises((ValidationFailed, NotFound), match=message):
            styles.import_code(user_id=other, code=bad)
    styles.delete(user_id=owner, style_id=mine.id)
    with pytest.raises(NotFound):
        styles.import_code(user_id=other, code=code)


def test_prompt_history_is_the_last_fifty_distinct_prompts(lab):
    rig, styles, _ = lab(GENERATION_RATE_PER_MINUTE=1000)
    uid = rig.user(credits=1000)
    for n in range(52):
        rig.generate(uid, prompt=f"prompt {n}")
        rig.clock.advance(seconds=1)
    rig.generate(uid, prompt="prompt 3")  # used again: first now
    history = styles.prompt_history(user_id=uid)
    assert len(history) == 50 and history[0] == "prompt 3" and history[1] == "prompt 51"
    assert "prompt 0" not in history and history.count("prompt 3") == 1
    assert styles.prompt_history(user_id=rig.user()) == []


def test_compare_charges_each_delivered_image_and_not_the_failed_ones(lab, fake_openai):
    rig, styles, compare = lab(engine="openai", fake=fake_openai, GENERATION_MAX_CONCURRENT=6)
    uid = rig.user(credits=100)
    styles.create(user_id=uid, name="Mine", template="mine: {prompt}")
    fake_openai.hold()
    fake_openai.fail("not_an_image", times=2)
    asked = ["photographic", "anime", "Mine", "watercolor", "pixel art", "comic"]
    seen = []

    async def run():
        task = asyncio.ensure_future(compare.compare(
            user_id=uid, is_admin=False, prompt="a fox", styles=asked, aspect_ratio="1:1", resolution="1K",
            on_update=lambda cell: seen.append((cell.index, cell.status))))
        await asyncio.to_thread(fake_openai.wait_until, lambda f: f.in_flight == 6)
        fake_openai.release_all()
        return await task

    result = asyncio.run(run())
    assert [c.style for c in result.cells] == asked
    assert sorted(c.status for c in result.cells) == ["done"] * 4 + ["failed"] * 2
    assert all("not charged" in c.message for c in result.cells if c.status == "failed")
    assert rig.balance(uid) == result.balance == 60
    assert fake_openai.max_in_flight == 6
    assert "4 of 6 images made · 40 credits charged · 2 not charged" in result.message
    with rig.db.session() as s:
        rows = s.exec(select(Generation).where(Generation.user_id == uid)).all()
        holds = s.exec(select(Hold).where(Hold.user_id == uid)).all()
    assert len(rows) == 6 and {g.batch_id for g in rows} == {result.batch_id}
    assert sorted(h.status for h in holds) == ["captured"] * 4 + ["released"] * 2
    assert {(i, "running") for i in range(6)} <= set(seen)


def test_compare_stays_within_the_per_user_limit(lab, fake_openai):
    rig, _, compare = lab(engine="openai", fake=fake_openai, GENERATION_MAX_CONCURRENT=4)
    uid = rig.user(credits=100)
    fake_openai.hold()

    async def run():
        task = asyncio.ensure_future(compare.compare(
            user_id=uid, is_admin=False, prompt="a fox", styles=["photographic", "anime", "comic", "watercolor",
                                                                  "pixel art", "cinematic"],
            aspect_ratio="1:1", resolution="1K"))
        await asyncio.to_thread(fake_openai.wait_until, lambda f: f.in_flight == 4)
        fake_openai.release_all()
        return await task

    result = asyncio.run(run())
    assert fake_openai.max_in_flight == 4 and len(result.delivered) == 6 and rig.balance(uid) == 40


def test_compare_refused_up_front_charges_nothing_and_calls_no_engine(lab, fake_openai):
    rig, _, compare = lab(engine="openai", fake=fake_openai)
    uid = rig.user(credits=45)

    def run(**kw):
        args = {"user_id": uid, "is_admin": False, "prompt": "a fox", "aspect_ratio": "1:1", "resolution": "1K",
                "styles": ["photographic", "anime", "comic", "watercolor", "pixel art", "cinematic"], **kw}
        return asyncio.run(compare.compare(**args))

    with pytest.raises(InsufficientCredits, match="6 images × 10 credits = 60 · you have 45: enough for 4"):
        run()
    for change, message in (({"styles": []}, "at least one style"), ({"styles": ["anime"] * 2}, "chosen twice"),
                            ({"styles": ["anime", "nope"]}, "Unknown style “nope”"),
                            ({"styles": ["a", "b", "c", "d", "e", "f", "g"]}, "at most 6 styles"),
                            ({"prompt": ""}, "enter a prompt"), ({"resolution": "16K"}, "Unknown resolution")):
        with pytest.raises(ValidationFailed, match=message):
            run(**change)
    assert rig.balance(uid) == 45
    assert fake_openai.calls("/v1/images/generations") == []
    with rig.db.session() as s:
        assert s.exec(select(Generation).where(Generation.user_id == uid)).all() == []
        assert s.exec(select(SavedStyle)).all() == []


def test_a_set_the_rate_limit_cannot_start_whole_is_refused_up_front(lab):
    rig, _, compare = lab(GENERATION_RATE_PER_MINUTE=5)
    uid = rig.user(credits=100)
    rig.generate(uid)
    with pytest.raises(RateLimited, match="room for 4 now, not 6"):
        asyncio.run(compare.compare(user_id=uid, is_admin=False, prompt="a fox", aspect_ratio="1:1", resolution="1K",
                                    styles=["photographic", "anime", "comic", "watercolor", "pixel art", "cinematic"]))
    assert rig.balance(uid) == 90
    result = asyncio.run(compare.compare(user_id=uid, is_admin=False, prompt="a fox", aspect_ratio="1:1",
                                         resolution="1K", styles=["anime", "comic", "watercolor", "pixel art"]))
    assert len(result.delivered) == 4 and rig.balance(uid) == 50


def test_variations_are_priced_and_held_per_image(lab):
    rig, _, compare = lab()
    uid = rig.user(credits=30)
    result = asyncio.run(compare.variations(user_id=uid, is_admin=False, prompt="a fox", style="anime", count=3,
                                            aspect_ratio="1:1", resolution="1K"))
    assert len(result.delivered) == 3 and rig.balance(uid) == 0
    assert len({c.result.id for c in result.cells}) == 3
    for bad in (1, 5, 2.5, True, "3"):
        with pytest.raises(ValidationFailed, match="2 to 4 variations"):
            asyncio.run(compare.variations(user_id=uid, is_admin=False, prompt="a fox", style="anime", count=bad,
                                           aspect_ratio="1:1", resolution="1K"))
    with pytest.raises(InsufficientCredits, match="2 images × 10 credits = 20 · you have 0: not enough for one"):
        asyncio.run(compare.variations(user_id=uid, is_admin=False, prompt="a fox", style="anime", count=2,
                                       aspect_ratio="1:1", resolution="1K"))
