"""The OpenAI-compatible images API (/v1) through the real `openai` SDK against the served app:
generations (b64_json, url, n, sizes, formats, the studio extensions), every refusal in OpenAI's
error shape with its status, the balance exact after each, /v1/models, and 30 concurrent calls for
one key with credit for 10."""

from __future__ import annotations

import base64
import dataclasses
import io
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from openai import OpenAI
from PIL import Image

from tests.e2e.conftest import api_user, balance_of, sign_up
from tests.fakes.openai_server import FakeOpenAI
from tests.pictures import mask, picture


def sdk(app, key: str) -> OpenAI:
    # No retries: a 429 or 502 must reach the test as it was answered.
    return OpenAI(base_url=f"{app.url}/v1", api_key=key, max_retries=0, timeout=120)


def studio_of(response) -> dict:
    return response.model_extra["studio"]


def decoded(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def assert_error(exc: openai.APIStatusError, status: int, *, type_: str, code: str | None, param: str | None,
                 says: str) -> None:
    """OpenAI's error JSON: {"error": {"message", "type", "param", "code"}} with the studio's message."""
    assert exc.status_code == status
    error = exc.response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"], error["param"]) == (type_, code, param)
    assert says in error["message"]


# Generations ----------------------------------------------------------------------------------


def test_generate_b64_json_maps_size_to_ratio_and_tier(served_app):
    user, key = api_user(served_app, credits=100)
    client = sdk(served_app, key)
    response = client.images.generate(model="gpt-image-2", prompt="a lighthouse at dusk", size="1536x1024")
    studio = studio_of(response)
    assert (studio["aspect_ratio"], studio["resolution"], studio["style"]) == ("3:2", "1K", "none")
    assert studio["charged"] == 10 and studio["balance"] == 90 == balance_of(served_app, user)
    assert len(response.data) == 1 and len(studio["generation_ids"]) == 1
    image = decoded(response.data[0].b64_json)
    assert image.format == "PNG" and max(image.size) == 1024 and response.size == f"{image.width}x{image.height}"
    assert abs(image.width / image.height - 1.5) < 0.01
    assert response.usage is not None and response.output_format == "png"

    tall = client.images.generate(prompt="a tower", size="2160x3840")  # 9:16, long edge 3840 → 4K
    assert (studio_of(tall)["aspect_ratio"], studio_of(tall)["resolution"]) == ("9:16", "4K")
    assert studio_of(tall)["charged"] == 40 and balance_of(served_app, user) == 50
    assert decoded(tall.data[0].b64_json).size == (2160, 3840)


def test_n_images_are_each_charged_and_returned(served_app):
    user, key = api_user(served_app, credits=100)
    response = sdk(served_app, key).images.generate(prompt="three red apples", n=3, size="1024x1024")
    studio = studio_of(response)
    assert len(response.data) == 3 and len(set(studio["generation_ids"])) == 3
    assert studio["charged"] == 30 and studio["balance"] == 70 == balance_of(served_app, user)
    assert served_app.services.studio.gallery(user_id=user.id).total == 3
    assert all(decoded(d.b64_json).size == (1024, 1024) for d in response.data)


def test_url_and_formats_and_studio_extensions(served_app):
    user, key = api_user(served_app, credits=100)
    other, other_key = api_user(served_app)
    client = sdk(served_app, key)
    response = client.images.generate(prompt="a harbour", response_format="url", output_format="webp",
                                      size="auto", extra_body={"style": "watercolor", "resolution": "2K"})
    studio = studio_of(response)
    assert (studio["style"], studio["resolution"], studio["aspect_ratio"], studio["charged"]) == \
        ("watercolor", "2K", "1:1", 20)
    url = response.data[0].url
    assert url == f"{served_app.url}/images/{studio['generation_ids'][0]}/webp"
    assert "a harbour" in response.data[0].revised_prompt and response.data[0].revised_prompt != "a harbour"
    with served_app.client(headers={"Authorization": f"Bearer {key}"}) as http:
        fetched = http.get(url)
        assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/webp"
        assert Image.open(io.BytesIO(fetched.content)).size == (2048, 2048)
    with served_app.client(headers={"Authorization": f"Bearer {other_key}"}) as http:
        assert http.get(url).status_code == 404, "only the owner can fetch the URL"

    jpeg = client.images.generate(prompt="a harbour at night", output_format="jpeg", quality="low")
    assert decoded(jpeg.data[0].b64_json).format == "JPEG"
    webp = client.images.generate(prompt="a harbour at noon", output_format="webp")
    assert decoded(webp.data[0].b64_json).format == "WEBP"
    assert balance_of(served_app, user) == 100 - 20 - 10 - 10
    assert balance_of(served_app, other) == 40


def test_models_lists_the_instance_model(served_app):
    _, key = api_user(served_app)
    client = sdk(served_app, key)
    assert [m.id for m in client.models.list()] == ["offline-preview"]
    assert client.models.retrieve("offline-preview").owned_by == "image-studio"
    with pytest.raises(openai.NotFoundError) as refused:
        client.models.retrieve("dall-e-2")
    assert_error(refused.value, 404, type_="invalid_request_error", code="model_not_found", param="model",
                 says="offline-preview")


# Refusals: OpenAI's error shape, the studio's message, nothing charged ------------------------


def test_bad_or_missing_key_is_401(served_app):
    user, key = api_user(served_app)
    for bad in ("sk_studio_not-a-real-key", "sk-openai-style-key", key + "x"):
        with pytest.raises(openai.AuthenticationError) as refused:
            sdk(served_app, bad).images.generate(prompt="a cat")
        assert_error(refused.value, 401, type_="invalid_request_error", code="invalid_api_key", param=None,
                     says="API key")
    with pytest.raises(openai.AuthenticationError):
        sdk(served_app, "sk_studio_nope").models.list()
    with served_app.client() as anonymous:
        answer = anonymous.post("/v1/images/generations", json={"prompt": "a cat"})
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "invalid_api_key"
        assert answer.headers["www-authenticate"] == "Bearer"
    browser = sign_up(served_app, f"v1-browser-{uuid.uuid4().hex[:8]}@example.com")
    try:
        answer = browser.get("/v1/models", headers={"Accept": "application/json"})
        assert answer.status_code == 401, "a session cookie is no API key"
    finally:
        browser.close()
    assert balance_of(served_app, user) == 40


@pytest.mark.parametrize(("kwargs", "param", "says"), [
    ({"prompt": ""}, "prompt", "Please enter a prompt"),
    ({"prompt": "a cat\x00"}, "prompt", "control character"),
    ({"prompt": "x" * 4001}, "prompt", "The prompt is too long"),
    ({"prompt": "a cat", "size": "huge"}, "size", "WIDTHxHEIGHT"),
    ({"prompt": "a cat", "size": "0x1024"}, "size", "WIDTHxHEIGHT"),
    ({"prompt": "a cat", "n": 5}, "n", "between 1 and 4"),
    ({"prompt": "a cat", "n": 0}, "n", "between 1 and 4"),
    ({"prompt": "a cat", "response_format": "svg"}, "response_format", "b64_json, url"),
    ({"prompt": "a cat", "output_format": "gif"}, "output_format", "png, webp, jpeg"),
    ({"prompt": "a cat", "quality": "ultra"}, "quality", "auto, low"),
    ({"prompt": "a cat", "extra_body": {"style": "no-such-style"}}, "style", "Unknown style"),
    ({"prompt": "a cat", "extra_body": {"resolution": "16K"}}, "resolution", "Unknown resolution"),
])
def test_invalid_request_is_400_with_the_param_named(served_app, kwargs, param, says):
    user, key = api_user(served_app)
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(served_app, key).images.generate(**kwargs)
    assert_error(refused.value, 400, type_="invalid_request_error", code=refused.value.code, param=param, says=says)
    assert refused.value.code in ("invalid_value", "invalid_type")
    assert balance_of(served_app, user) == 40
    assert served_app.services.studio.gallery(user_id=user.id).total == 0


def test_not_json_is_400(served_app):
    user, key = api_user(served_app)
    with served_app.client(headers={"Authorization": f"Bearer {key}"}) as http:
        answer = http.post("/v1/images/generations", content=b"prompt=a cat",
                           headers={"Content-Type": "application/json"})
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_json"
        answer = http.post("/v1/images/generations", json=["a cat"])
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_json"
        too_big = http.post("/v1/images/generations", json={"prompt": "x" * 300_000})
        assert too_big.status_code == 413
    assert balance_of(served_app, user) == 40


def test_not_enough_credits_is_402_and_charges_nothing(served_app):
    user, key = api_user(served_app)  # 40 trial credits
    client = sdk(served_app, key)
    with pytest.raises(openai.APIStatusError) as refused:
        client.images.generate(prompt="a cat", n=3, extra_body={"resolution": "2K"})  # 60 credits
    assert_error(refused.value, 402, type_="insufficient_credits", code="insufficient_credits", param=None,
                 says="need 60 credits and you have 40")
    assert balance_of(served_app, user) == 40

    client.images.generate(prompt="a cat", extra_body={"resolution": "2K"})
    assert balance_of(served_app, user) == 20
    with pytest.raises(openai.APIStatusError) as refused:
        client.images.generate(prompt="a cat", size="3840x2160")  # 4K: 40 credits
    assert_error(refused.value, 402, type_="insufficient_credits", code="insufficient_credits", param=None,
                 says="This needs 40 credits and you have 20")
    assert balance_of(served_app, user) == 20
    assert served_app.services.studio.gallery(user_id=user.id).total == 1
    assert served_app.services.ledger.reconcile(user.id) == []


def test_blocked_prompt_is_400_moderation_blocked(served_app):
    user, key = api_user(served_app)
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(served_app, key).images.generate(prompt="child porn")  # the local blocklist
    assert_error(refused.value, 400, type_="image_generation_user_error", code="moderation_blocked",
                 param="prompt", says="refused by our content rules")
    assert balance_of(served_app, user) == 40


def test_streaming_sends_openais_events_and_refuses_with_status(served_app):
    user, key = api_user(served_app, credits=100)
    client = sdk(served_app, key)
    events = list(client.images.generate(prompt="a lighthouse", stream=True, partial_images=2, size="1024x1536"))
    assert [e.type for e in events] == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
    assert [e.partial_image_index for e in events[:2]] == [0, 1]
    for frame in events[:2]:  # the studio's previews: 640 px on the long edge, in the asked format
        preview = decoded(frame.b64_json)
        assert (preview.format, max(preview.size), frame.size) == ("PNG", 640, f"{preview.width}x{preview.height}")
        assert frame.model_extra["studio"]["generation_id"] == events[-1].model_extra["studio"]["generation_id"]
    done = events[-1]
    image = decoded(done.b64_json)
    assert (image.format, image.size, done.size, done.output_format) == ("PNG", (683, 1024), "683x1024", "png")
    studio = done.model_extra["studio"]
    assert (studio["aspect_ratio"], studio["charged"], studio["balance"]) == ("2:3", 10, 90)
    assert studio["generation_id"] == studio["generation_ids"][0] and balance_of(served_app, user) == 90

    events = list(client.images.generate(prompt="two boats", stream=True, n=2, output_format="webp"))
    assert [e.type for e in events] == ["image_generation.completed"] * 2
    assert {decoded(e.b64_json).format for e in events} == {"WEBP"}
    assert len({e.model_extra["studio"]["generation_id"] for e in events}) == 2 and balance_of(served_app, user) == 70

    with pytest.raises(openai.APIStatusError) as refused:  # refusals keep their status and error JSON
        client.images.generate(prompt="a cat", stream=True, n=2, extra_body={"resolution": "4K"})
    assert_error(refused.value, 402, type_="insufficient_credits", code="insufficient_credits", param=None,
                 says="need 80 credits and you have 70")
    with pytest.raises(openai.BadRequestError) as refused:
        client.images.generate(prompt="child porn", stream=True)
    assert refused.value.code == "moderation_blocked"
    assert balance_of(served_app, user) == 70


def test_rate_limit_is_429_with_retry_after(serve_app, clock):
    app = serve_app(GENERATION_RATE_PER_MINUTE=2)
    app.services.studio.clock = clock  # the minute does not run out while a slow machine works
    user, key = api_user(app)
    client = sdk(app, key)
    for _ in range(2):
        client.images.generate(prompt="a cat")
    with pytest.raises(openai.RateLimitError) as refused:
        client.images.generate(prompt="a cat")
    assert_error(refused.value, 429, type_="rate_limit_error", code="rate_limit_exceeded", param=None,
                 says="2 images a minute")
    assert refused.value.response.headers["retry-after"] == "60"
    assert balance_of(app, user) == 20


def test_when_some_of_n_images_are_refused_the_others_are_returned_and_only_they_charged(serve_app, clock):
    app = serve_app(GENERATION_RATE_PER_MINUTE=3)
    app.services.studio.clock = clock
    user, key = api_user(app, credits=100)
    client = sdk(app, key)
    client.images.generate(prompt="one", n=2)
    assert balance_of(app, user) == 80
    response = client.images.generate(prompt="two more", n=2)  # the rate limit admits one of them
    studio = studio_of(response)
    assert len(response.data) == 1 and studio["charged"] == 10 and studio["balance"] == 70 == balance_of(app, user)
    assert [f["code"] for f in studio["failed"]] == ["rate_limit_exceeded"]
    assert app.services.ledger.reconcile(user.id) == []


def test_a_stream_of_n_images_where_one_is_refused_lists_it_on_the_last_image(serve_app, clock):
    app = serve_app(GENERATION_RATE_PER_MINUTE=1)
    app.services.studio.clock = clock
    user, key = api_user(app)
    events = list(sdk(app, key).images.generate(prompt="two kites", n=2, stream=True, partial_images=1))
    assert [e.type for e in events] == ["image_generation.partial_image", "image_generation.completed"]
    studio = events[-1].model_extra["studio"]
    assert [f["code"] for f in studio["failed"]] == ["rate_limit_exceeded"]
    assert (studio["charged"], studio["balance"]) == (10, 30) and balance_of(app, user) == 30
    with pytest.raises(openai.RateLimitError):  # nothing left to make: the refusal keeps its status
        list(sdk(app, key).images.generate(prompt="two more kites", n=2, stream=True, partial_images=1))
    assert balance_of(app, user) == 30 and app.services.ledger.reconcile(user.id) == []


# Edits ----------------------------------------------------------------------------------------


def test_edit_with_images_and_a_mask(served_app):
    user, key = api_user(served_app, credits=100)
    client = sdk(served_app, key)
    first, second = picture(300, 200, fmt="PNG"), picture(200, 200, colour=(200, 60, 40), seed=2)
    response = client.images.edit(image=[("room.png", first, "image/png"), ("chair.jpg", second, "image/jpeg")],
                                  mask=("mask.png", mask(300, 200, (50, 50, 150, 150)), "image/png"),
                                  prompt="put the red chair in the room", model="gpt-image-2")
    studio = studio_of(response)
    assert (studio["aspect_ratio"], studio["resolution"], studio["references"]) == ("3:2", "1K", 2), \
        "size auto keeps the first image's shape"
    assert studio["charged"] == 10 and studio["balance"] == 90 == balance_of(served_app, user)
    image = decoded(response.data[0].b64_json)
    assert image.format == "PNG" and abs(image.width / image.height - 1.5) < 0.01
    gen_id = studio["generation_ids"][0]
    kept = served_app.services.studio.references_of(user_id=user.id, generation_id=gen_id)
    assert [r["name"] for r in kept] == ["room.png", "chair.jpg"]

    one = client.images.edit(image=("photo.jpg", picture(240, 320), "image/jpeg"), prompt="make it dusk",
                             size="1024x1024", n=2, response_format="url")  # a single `image`, n charged each
    assert studio_of(one)["aspect_ratio"] == "1:1" and studio_of(one)["charged"] == 20
    assert all(d.url.startswith(f"{served_app.url}/images/") for d in one.data) and len(one.data) == 2
    assert balance_of(served_app, user) == 70
    assert served_app.services.studio.gallery(user_id=user.id).total == 3
    assert served_app.services.ledger.reconcile(user.id) == []


def test_edit_refusals_name_the_parameter_and_charge_nothing(served_app):
    user, key = api_user(served_app)  # 40 trial credits
    client = sdk(served_app, key)
    photo = ("photo.png", picture(300, 200, fmt="PNG"), "image/png")
    cases = [
        (dict(image=[("notes.png", b"just some text, not a picture", "image/png")], prompt="x"), "image", "notes.png"),
        (dict(image=[photo], mask=("mask.png", picture(300, 200, fmt="PNG"), "image/png"), prompt="x"), "mask",
         "transparency"),
        (dict(image=[photo], mask=("mask.png", mask(100, 300, (0, 0, 10, 10)), "image/png"), prompt="x"), "mask",
         "first reference"),
        (dict(image=[photo], prompt=""), "prompt", "Please enter a prompt"),
        (dict(image=[photo], prompt="x", n=7), "n", "between 1 and 4"),
        (dict(image=[photo], prompt="x", size="big"), "size", "WIDTHxHEIGHT"),
    ]
    for kwargs, param, says in cases:
        with pytest.raises(openai.BadRequestError) as refused:
            client.images.edit(**kwargs)
        error = refused.value.response.json()["error"]
        assert (error["param"], error["type"]) == (param, "invalid_request_error"), error
        assert says in error["message"], error
    with pytest.raises(openai.BadRequestError) as refused:
        client.images.edit(image=[photo], prompt="child porn")
    assert_error(refused.value, 400, type_="image_generation_user_error", code="moderation_blocked", param="prompt",
                 says="refused by our content rules")
    with pytest.raises(openai.APIStatusError) as refused:
        client.images.edit(image=[photo], prompt="a cat", n=3, extra_body={"resolution": "2K"})
    assert_error(refused.value, 402, type_="insufficient_credits", code="insufficient_credits", param=None,
                 says="need 60 credits and you have 40")
    with served_app.client(headers={"Authorization": f"Bearer {key}"}) as http:
        no_image = http.post("/v1/images/edits", data={"prompt": "a cat"}, files={"other": ("a.txt", b"x")})
        assert no_image.status_code == 400 and no_image.json()["error"]["param"] == "other"
        no_image = http.post("/v1/images/edits", data={"prompt": "a cat"}, files={"mask": ("m.png", b"x")})
        assert no_image.status_code == 400 and no_image.json()["error"]["param"] == "image"
        as_json = http.post("/v1/images/edits", json={"prompt": "a cat", "image": "x"})
        assert as_json.status_code == 400 and as_json.json()["error"]["code"] == "invalid_content_type"
        bad_n = http.post("/v1/images/edits", data={"prompt": "a cat", "n": "two"}, files={"image": photo})
        assert bad_n.status_code == 400 and bad_n.json()["error"]["param"] == "n"
    with pytest.raises(openai.AuthenticationError):
        sdk(served_app, "sk_studio_nope").images.edit(image=[photo], prompt="a cat")
    assert balance_of(served_app, user) == 40
    assert served_app.services.studio.gallery(user_id=user.id).total == 0


def test_edit_price_includes_the_reference_surcharge(serve_app):
    app = serve_app()
    studio = app.services.studio
    studio.catalog = dataclasses.replace(studio.catalog, reference_surcharge=5)  # as assets/catalog.json may say
    user, key = api_user(app)  # 40 credits
    images = [(f"p{i}.png", picture(100, 100, fmt="PNG", seed=i), "image/png") for i in range(2)]
    client = sdk(app, key)
    with pytest.raises(openai.APIStatusError) as refused:  # 3 × (10 + 2 × 5) = 60
        client.images.edit(image=images, prompt="two tiles", n=3)
    assert refused.value.status_code == 402 and "need 60 credits and you have 40" in refused.value.message
    made = client.images.edit(image=images, prompt="two tiles", n=2)
    assert (studio_of(made)["cost_per_image"], studio_of(made)["charged"]) == (20, 40)
    assert balance_of(app, user) == 0 and app.services.ledger.reconcile(user.id) == []


def test_edit_streams_image_edit_events(served_app):
    user, key = api_user(served_app, credits=100)
    events = list(sdk(served_app, key).images.edit(image=[("p.png", picture(200, 300, fmt="PNG"), "image/png")],
                                                   prompt="a window", stream=True, partial_images=2))
    assert [e.type for e in events] == ["image_edit.partial_image"] * 2 + ["image_edit.completed"]
    done = events[-1]
    assert decoded(done.b64_json).format == "PNG" and done.model_extra["studio"]["aspect_ratio"] == "2:3"
    assert done.model_extra["studio"]["references"] == 1 and balance_of(served_app, user) == 90


def test_open_webuis_requests_as_it_sends_them(served_app):
    """Open WebUI's image router (backend/open_webui/routers/images.py) posts JSON to /images/generations
    and multipart (`image`, or `image[]` for several, plus text fields) to /images/edits, then reads
    data[].b64_json."""
    user, key = api_user(served_app, credits=100)
    with served_app.client(headers={"Authorization": f"Bearer {key}"}) as http:
        made = http.post("/v1/images/generations", json={"model": "gpt-image-2", "prompt": "a red fox", "n": 1,
                                                         "size": "512x512", "response_format": "b64_json"})
        assert made.status_code == 200, made.text
        assert decoded(made.json()["data"][0]["b64_json"]).size == (1024, 1024)
        photo = picture(300, 200, fmt="PNG")
        edited = http.post("/v1/images/edits", files=[("image", (f"{uuid.uuid4()}.png", photo, "image/png"))],
                           data={"model": "gpt-image-2", "prompt": "make it snow", "size": "1024x1024",
                                 "response_format": "b64_json"})
        assert edited.status_code == 200, edited.text
        assert edited.json()["studio"]["references"] == 1 and edited.json()["studio"]["aspect_ratio"] == "1:1"
        several = http.post("/v1/images/edits", files=[("image[]", (f"{uuid.uuid4()}.png", photo, "image/png")),
                                                        ("image[]", (f"{uuid.uuid4()}.png", photo, "image/png"))],
                            data={"model": "gpt-image-2", "prompt": "side by side", "n": "1",
                                  "background": "auto", "response_format": "b64_json"})
        assert several.status_code == 200 and several.json()["studio"]["references"] == 2
        assert several.json()["studio"]["aspect_ratio"] == "3:2"
    assert balance_of(served_app, user) == 70


# Through GPT Image (the fake OpenAI server): moderation and provider failures -----------------


@pytest.fixture
def openai_app(serve_app, fake_openai: FakeOpenAI):
    return serve_app(IMAGE_PROVIDER="openai", OPENAI_API_KEY="sk-test-fake", OPENAI_BASE_URL=fake_openai.url)


def test_through_gpt_image_moderation_and_provider_failures(openai_app, fake_openai):
    user, key = api_user(openai_app)
    client = sdk(openai_app, key)
    assert [m.id for m in client.models.list()] == ["gpt-image-2"]

    with pytest.raises(openai.BadRequestError) as refused:  # the fake's /v1/moderations flags it
        client.images.generate(prompt="a forbidden ritual")
    assert_error(refused.value, 400, type_="image_generation_user_error", code="moderation_blocked",
                 param="prompt", says="refused by our content rules")
    assert fake_openai.calls("/images/generations") == [] and balance_of(openai_app, user) == 40

    fake_openai.fail("moderation_blocked", times=1)  # the provider's own safety system
    with pytest.raises(openai.BadRequestError) as refused:
        client.images.generate(prompt="a harmless cat")
    assert_error(refused.value, 400, type_="image_generation_user_error", code="moderation_blocked",
                 param="prompt", says="you were not charged")
    assert balance_of(openai_app, user) == 40

    fake_openai.fail("error_500")  # every attempt, the engine's own retries included
    with pytest.raises(openai.InternalServerError) as refused:
        client.images.generate(prompt="a harmless dog")
    assert_error(refused.value, 502, type_="server_error", code="provider_error", param=None,
                 says="Generation failed — you were not charged")
    assert balance_of(openai_app, user) == 40
    fake_openai.fail(None)

    made = client.images.generate(prompt="a harmless bird", size="1024x1536", quality="high")
    assert studio_of(made)["charged"] == 10 and balance_of(openai_app, user) == 30
    assert made.usage.output_tokens > 0, "the provider's usage is passed on"
    sent = fake_openai.calls("/images/generations")[-1].body
    assert sent["prompt"] == "a harmless bird" and sent["model"] == "gpt-image-2"
    assert openai_app.services.ledger.reconcile(user.id) == []


def test_streaming_through_gpt_image_sends_partial_frames_before_the_image(openai_app, fake_openai):
    user, key = api_user(openai_app)
    client = sdk(openai_app, key)
    fake_openai.latency = 3.0  # spread over the provider's frames: each one leaves a second before the next
    seen = []  # (event, seconds since the request, the user's held credits when it arrived)
    started = time.monotonic()
    for event in client.images.generate(prompt="a harmless lighthouse", stream=True, partial_images=2,
                                        size="1536x1024", output_format="webp"):
        seen.append((event, time.monotonic() - started, openai_app.services.ledger.balance(user.id).held))
    assert [e.type for e, _, _ in seen] == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
    first, second, done = (e for e, _, _ in seen)
    assert (first.partial_image_index, second.partial_image_index) == (0, 1)
    assert seen[0][2] == 10, "the first frame arrived while the image was still being made (its credits held)"
    assert seen[0][1] < seen[2][1] and seen[1][1] < seen[2][1]
    preview, image = decoded(first.b64_json), decoded(done.b64_json)
    assert (preview.format, first.output_format, first.size) == ("WEBP", "webp", f"{preview.width}x{preview.height}")
    assert max(preview.size) == 640 and abs(preview.width / preview.height - 1.5) < 0.02
    assert image.size == (1024, 683) and done.size == "1024x683" and done.model_extra["studio"]["charged"] == 10
    assert seen[2][2] == 0 and balance_of(openai_app, user) == 30
    assert fake_openai.calls("/images/generations")[-1].body["partial_images"] == 2

    fake_openai.latency = 0.0
    for asked, frames in ((1, 1), (0, 0)):  # at most what was asked for
        events = list(client.images.generate(prompt="a harmless boat", stream=True, partial_images=asked))
        assert [e.type for e in events] == ["image_generation.partial_image"] * frames + ["image_generation.completed"]
    assert balance_of(openai_app, user) == 10
    assert openai_app.services.ledger.reconcile(user.id) == []


def test_a_stream_cut_after_a_partial_frame_is_an_error_event_and_charges_nothing(openai_app, fake_openai):
    user, key = api_user(openai_app)
    client = sdk(openai_app, key)
    fake_openai.fail("cut_stream", times=1)  # one partial frame, then the provider's connection drops
    got = []
    with pytest.raises(openai.APIError) as broke:
        for event in client.images.generate(prompt="a harmless cat", stream=True, partial_images=2):
            got.append(event)
    assert [e.type for e in got] == ["image_generation.partial_image"]
    assert not isinstance(broke.value, openai.APIStatusError), "the 200 stream had begun: an error event"
    assert set(broke.value.body) == {"message", "type", "param", "code"}
    assert (broke.value.type, broke.value.code) == ("server_error", "provider_error")
    assert "you were not charged" in broke.value.message
    balance = openai_app.services.ledger.balance(user.id)
    assert (balance.total, balance.held) == (40, 0)
    assert openai_app.services.studio.gallery(user_id=user.id).total == 0
    assert openai_app.services.ledger.reconcile(user.id) == []

    with served_stream(openai_app, key, {"prompt": "a harmless dog", "stream": True, "partial_images": 1}) as lines:
        assert lines[-2:] == ["event: image_generation.completed", lines[-1]]  # the wire format, as sent
    assert balance_of(openai_app, user) == 30


def served_stream(app, key: str, body: dict):
    """The raw SSE lines of a streamed request (non-empty lines), for the wire format itself."""
    import contextlib

    @contextlib.contextmanager
    def reading():
        with app.client(headers={"Authorization": f"Bearer {key}"}) as http, \
                http.stream("POST", "/v1/images/generations", json=body) as answer:
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/event-stream")
            yield [line for line in answer.iter_lines() if line]

    return reading()


def test_edits_through_gpt_image(openai_app, fake_openai):
    user, key = api_user(openai_app)
    client = sdk(openai_app, key)
    room, chair = picture(320, 240, fmt="PNG"), picture(200, 200, colour=(200, 60, 40), seed=2)
    made = client.images.edit(image=[("room.png", room, "image/png"), ("chair.jpg", chair, "image/jpeg")],
                              mask=("mask.png", mask(320, 240, (0, 0, 100, 100)), "image/png"),
                              prompt="a harmless chair in the room")
    assert studio_of(made)["charged"] == 10 and balance_of(openai_app, user) == 30
    sent = fake_openai.edits[-1]
    assert len(sent.images) == 2 and sent.mask is not None, "both images, in order, and the mask reach the model"
    assert Image.open(io.BytesIO(sent.images[0])).size == Image.open(io.BytesIO(sent.mask)).size == (320, 240)
    assert sent.fields["prompt"] == "a harmless chair in the room"

    fake_openai.fail("cut_stream", times=1)
    got = []
    with pytest.raises(openai.APIError) as broke:
        for event in client.images.edit(image=[("room.png", room, "image/png")], prompt="a harmless lamp",
                                         stream=True, partial_images=2):
            got.append(event)
    assert [e.type for e in got] == ["image_edit.partial_image"] and broke.value.code == "provider_error"

    fake_openai.fail("error_500")
    with pytest.raises(openai.InternalServerError) as refused:
        client.images.edit(image=[("room.png", room, "image/png")], prompt="a harmless rug")
    assert_error(refused.value, 502, type_="server_error", code="provider_error", param=None,
                 says="you were not charged")
    fake_openai.fail(None)
    balance = openai_app.services.ledger.balance(user.id)
    assert (balance.total, balance.held) == (30, 0) and openai_app.services.ledger.reconcile(user.id) == []


# Concurrency ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_30_concurrent_calls_with_credit_for_10(served_app):
    user, key = api_user(served_app, credits=100)  # ten 1K images
    client = sdk(served_app, key)
    start = threading.Barrier(30)

    def call(_):
        start.wait()
        try:
            return studio_of(client.images.generate(prompt="a crowd of one", size="1024x1024"))["charged"]
        except openai.APIStatusError as err:
            return err.status_code

    with ThreadPoolExecutor(max_workers=30) as pool:
        outcomes = list(pool.map(call, range(30)))
    assert sorted(outcomes) == [10] * 10 + [402] * 20
    balance = served_app.services.ledger.balance(user.id)
    assert (balance.total, balance.held) == (0, 0)
    assert served_app.services.studio.gallery(user_id=user.id).total == 10
    assert served_app.services.ledger.reconcile(user.id) == []
