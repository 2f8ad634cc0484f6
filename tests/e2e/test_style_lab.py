"""The style lab through the served app: /compare and /variations (gradio_client with API keys,
the fake OpenAI failing some requests), the batch in the gallery, and saved styles through the
API and the page's own events (owner only, every validation message, share codes)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.e2e.conftest import queue_event, sign_up
from tests.fakes.openai_server import FakeOpenAI

_open: list = []


@pytest.fixture
def closing():
    """Request it after the app fixture: clients close before the app stops."""
    yield
    while _open:
        _open.pop().close()


class Person:
    """A signed-up person: a browser session (the page's events) and an API key (gradio_client)."""

    def __init__(self, app, name: str, credits: int = 0):
        self.app = app
        email = f"{name}-{uuid.uuid4().hex[:8]}@example.com"
        self.http = sign_up(app, email)
        _open.append(self.http)
        self.user = app.services.accounts.get_user_by_email(email)
        if credits:
            app.services.ledger.grant(user_id=self.user.id, amount=credits, kind="admin",
                                      idempotency_key=f"e2e:{uuid.uuid4().hex}")
        _, key = app.services.accounts.create_api_key(user_id=self.user.id, name="e2e")
        self.client = Client(app.url, headers={"Authorization": f"Bearer {key}"}, verbose=False)
        _open.append(self.client)
        self.config = self.http.get("/config").json()
        self.session_hash = uuid.uuid4().hex

    @property
    def balance(self) -> int:
        return self.app.services.ledger.balance(self.user.id).total

    def api(self, *args, api_name: str):
        return self.client.predict(*args, api_name=api_name)

    def refused(self, *args, api_name: str) -> str:
        with pytest.raises(AppError) as caught:
            self.client.predict(*args, api_name=api_name)
        return str(caught.value)

    def event(self, api_name: str, data: list, *, event_data: dict | None = None) -> dict:
        fn = next(d["id"] for d in self.config["dependencies"] if d.get("api_name") == api_name)
        return queue_event(self.http, fn, data, session_hash=self.session_hash, event_data=event_data)


def _value(output):
    return output.get("value") if isinstance(output, dict) else output


SIX = ["photographic", "anime", "watercolor", "pixel art", "comic", "cinematic"]


@pytest.fixture
def openai_app(serve_app, fake_openai: FakeOpenAI):
    return serve_app(IMAGE_PROVIDER="openai", OPENAI_API_KEY="sk-test-fake", OPENAI_BASE_URL=fake_openai.url,
                     GENERATION_MAX_CONCURRENT=6)


def test_compare_six_styles_two_fail_four_charged_one_batch(openai_app, fake_openai, closing):
    ann = Person(openai_app, "ann", credits=100)
    start = ann.balance  # the trial and the grant
    fake_openai.hold()  # every request waits in the fake until released: the overlap is counted
    fake_openai.fail("not_an_image", times=2)
    job = ann.client.submit("a fox in the snow", SIX, "1:1", "1K", api_name="/compare")
    fake_openai.wait_until(lambda f: f.in_flight == 6)
    assert fake_openai.max_in_flight == 6 <= openai_app.settings.generation_max_concurrent
    fake_openai.release_all()
    images, message, balance = job.result(timeout=120)

    assert len(images) == 4 and all(i["image"].endswith(".webp") for i in images)
    lines = message.splitlines()
    assert [line.split(":", 1)[0] for line in lines[:6]] == [s[:1].upper() + s[1:] for s in SIX]
    assert sum("not charged" in line for line in lines[:6]) == 2
    assert sum("done · 10 credits charged" in line for line in lines[:6]) == 4
    asked = [line.split(":", 1)[0] for line in lines[:6] if "done" in line]
    assert [i["caption"] for i in images] == asked, "the delivered images in the order asked"
    assert "4 of 6 images made · 40 credits charged · 2 not charged" in lines[6]
    assert balance == start - 40 == ann.balance

    done = ann.event("gallery_search", ["", "", "", "Gallery"])
    grid = _value(done["output"]["data"][1])
    assert grid.count('class="sg-batch"') == 1, "the batch appears once"
    batch = grid.split('class="sg-batch"', 1)[1]
    assert len(re.findall(r'data-id="[0-9a-f]{32}"', batch)) == 4 and "Compare · 4 styles" in batch


def test_compare_refused_up_front_charges_nothing_and_calls_no_engine(openai_app, fake_openai, closing):
    bob = Person(openai_app, "bob", credits=5)  # 40 trial + 5
    start = bob.balance
    said = bob.refused("a fox", SIX, "1:1", "1K", api_name="/compare")
    assert f"6 images × 10 credits = 60 · you have {start}: enough for 4" in said and "Nothing was charged" in said
    assert "Unknown style “nope”" in bob.refused("a fox", ["anime", "nope"], "1:1", "1K", api_name="/compare")
    assert "at most 6 styles" in bob.refused("a fox", SIX + ["comic"], "1:1", "1K", api_name="/compare")
    assert bob.balance == start
    assert fake_openai.calls("/v1/images/generations") == []


def test_variations_and_saved_styles_in_compare_and_generate(serve_app, closing):
    app = serve_app()
    cat = Person(app, "cat", credits=100)
    start = cat.balance
    saved = cat.api(0, "Moody fog", "A moody, foggy photo of {prompt}", "16:9", "", api_name="/save_style")
    images, message, balance = cat.api("a pier", ["Moody fog", "anime"], "1:1", "1K", api_name="/compare")
    assert len(images) == 2 and message.startswith("Moody fog: done")
    _, said, _ = cat.api("a pier", "moody fog", "", "1K", api_name="/generate")  # the style's own 16:9
    assert "16:9" in said
    images, message, balance = cat.api("a pier", "anime", 3, "1:1", "1K", api_name="/variations")
    assert len(images) == 3 and balance == start - 60 == cat.balance
    with app.services.db.session() as s:
        from models.generation import Generation
        rows = s.query(Generation).filter(Generation.user_id == cat.user.id, Generation.style == "Moody fog").all()
    assert {g.styled_prompt for g in rows} == {"A moody, foggy photo of a pier"} and len(rows) == 2
    assert saved["aspect_ratio"] == "16:9"
    reused = cat.event("gallery_reuse", [], event_data={"id": rows[0].id})  # the gallery's "Reuse settings"
    assert reused["success"] and _value(reused["output"]["data"][1]) == "Moody fog"
    assert cat.api(api_name="/prompt_history") == ["a pier"]
    zh = Client(app.url, headers={**cat.client.headers, "Accept-Language": "zh-CN"}, verbose=False)
    _open.append(zh)
    images, message, balance = zh.predict("a pier", ["anime", "watercolor"], "1:1", "1K", api_name="/compare")
    assert len(images) == 2 and "done" not in message and "charged" not in message, message
    assert message.count("\n") == 2 and balance == cat.balance, "a line per style, then the summary, in Chinese"


def test_saved_styles_api_crud_limits_and_every_validation_message(serve_app, closing):
    app = serve_app()
    app.services.styles.max_styles = 5
    dee = Person(app, "dee")
    cases = [
        (("", "{prompt}"), "Please give the style a name"),
        (("x" * 61, "{prompt}"), "too long: 61 characters (at most 60)"),
        (("bad\x07", "{prompt}"), "control character (U+0007)"),
        (("Anime", "{prompt}"), "name of a built-in style"),
        (("Mine", ""), "template containing {prompt}"),
        (("Mine", "no placeholder"), "does not contain {prompt}"),
        (("Mine", "{prompt} {prompt}"), "more than once"),
        (("Mine", "x" * 1001 + "{prompt}"), "too long: 1,009 characters"),
        (("Mine", "one\n{prompt}"), "control character (U+000A)"),
    ]
    for (name, template), message in cases:
        assert message in dee.refused(0, name, template, "", "", api_name="/save_style")
    assert "Unknown aspect ratio" in dee.refused(0, "Mine", "{prompt}", "7:5", "", api_name="/save_style")
    assert "Unknown resolution" in dee.refused(0, "Mine", "{prompt}", "", "16K", api_name="/save_style")
    assert dee.api(api_name="/my_styles") == []

    one = dee.api(0, "Mine", "mine {prompt}", "", "", api_name="/save_style")
    assert "already have a style called “Mine”" in dee.refused(0, "MINE", "{prompt}", "", "", api_name="/save_style")
    edited = dee.api(one["id"], "Mine too", "mine too {prompt}", "1:1", "2K", api_name="/save_style")
    assert (edited["id"], edited["name"], edited["resolution"]) == (one["id"], "Mine too", "2K")
    copy = dee.api("watercolor", api_name="/duplicate_style")
    assert copy["name"] == "Watercolor (my copy)" and copy["base_style"] == "watercolor"
    for n in range(3):
        dee.api(0, f"Style {n}", "{prompt}", "", "", api_name="/save_style")
    assert "most you can keep is 5" in dee.refused(0, "Sixth", "{prompt}", "", "", api_name="/save_style")
    assert dee.api(one["id"], api_name="/delete_style") == "Deleted “Mine too”."
    assert [s["name"] for s in dee.api(api_name="/my_styles")] == ["Style 0", "Style 1", "Style 2",
                                                                   "Watercolor (my copy)"]


def test_another_user_cannot_read_use_or_delete_a_style_api_and_ui(serve_app, closing):
    app = serve_app()
    eve, fay = Person(app, "eve"), Person(app, "fay")
    mine = eve.api(0, "Eve's secret", "secret sauce {prompt}", "", "", api_name="/save_style")
    assert fay.api(api_name="/my_styles") == []
    start = fay.balance
    assert "Unknown style" in fay.refused("a cat", "Eve's secret", "1:1", "1K", api_name="/generate")
    assert "Unknown style" in fay.refused("a cat", ["Eve's secret"], "1:1", "1K", api_name="/compare")
    assert fay.balance == start
    for api_name, args in (("/delete_style", (mine["id"],)), ("/export_style", (mine["id"],)),
                           ("/save_style", (mine["id"], "Taken", "{prompt}", "", ""))):
        assert "No such style among your styles" in fay.refused(*args, api_name=api_name)
    # The page's own (private) events: the same refusals.
    for api_name, data in (("delete_style_ui", [mine["id"], []]), ("export_style_ui", [mine["id"]]),
                           ("save_style_ui", [mine["id"], "Taken", "{prompt}", "", "", []])):
        done = fay.event(api_name, data)
        assert not done["success"] and "No such style among your styles" in done["output"]["error"]
    shown = fay.event("save_style_ui", [None, "Fay's own", "fay {prompt}", "", "", []])
    assert shown["success"] and "Eve" not in str(shown["output"]["data"])
    assert [s["name"] for s in eve.api(api_name="/my_styles")] == ["Eve's secret"]

    code = eve.api(mine["id"], api_name="/export_style")
    copy = fay.api(code, api_name="/import_style")
    assert (copy["name"], copy["template"], copy["shared"]) == ("Eve's secret", "secret sauce {prompt}", False)
    assert copy["id"] != mine["id"] and re.fullmatch(r"[A-Za-z0-9_-]{16}", code), "a random code, nothing else"
    assert set(copy) == {"id", "name", "template", "aspect_ratio", "resolution", "base_style", "shared"}
    fay.api(copy["id"], "Fay's version", "fay's {prompt}", "", "", api_name="/save_style")
    assert eve.api(api_name="/my_styles")[0]["template"] == "secret sauce {prompt}", "an independent copy"
    _, said, _ = fay.api("a cat", "Fay's version", "1:1", "1K", api_name="/generate")
    assert "in the Fay&#x27;s version style" in said  # the message is Markdown, escaped
    assert "No style has this code" in fay.refused("A" * 16, api_name="/import_style")


def test_a_new_user_compares_six_styles_offline_with_the_default_trial(serve_app, closing):
    """No key, the product's default trial (60 credits, not the tests' 40): one click, six distinct
    offline previews, exactly 60 charged."""
    from services.settings import Settings

    default_trial = Settings.model_fields["trial_credits"].default
    app = serve_app(TRIAL_CREDITS=str(default_trial))
    new = Person(app, "new")
    assert new.balance == default_trial == 60
    images, message, balance = new.api("a lighthouse at dusk", SIX, "1:1", "1K", api_name="/compare")
    assert len(images) == 6 and balance == 0 == new.balance, message
    assert len({Path(img["image"]).read_bytes() for img in images}) == 6, "six distinct previews"
