"""The studio through the served app: gradio_client with API keys, and the owner-checked image route."""

from __future__ import annotations

import io
import threading
import uuid

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

from tests.e2e.conftest import keep_closing


def api_user(app, *, extra_credits: int = 0, admin: bool = False):
    """A user created through the accounts service (trial credits included), with an API key client."""
    services = app.services
    user = services.accounts.create_user(email=f"studio-{uuid.uuid4().hex[:10]}@example.com",
                                         password="correct horse battery", admin=admin)
    if extra_credits:
        services.ledger.grant(user_id=user.id, amount=extra_credits, kind="admin",
                              idempotency_key=f"e2e:{uuid.uuid4().hex}")
    _, key = services.accounts.create_api_key(user_id=user.id, name="e2e")
    client = Client(app.url, headers={"Authorization": f"Bearer {key}"}, verbose=False)
    keep_closing(client)
    return user, key, client


def balance_of(app, user) -> int:
    return app.services.ledger.balance(user.id).total


def test_generate_and_balance(served_app, closing):
    user, key, client = api_user(served_app)
    start = balance_of(served_app, user)
    assert client.predict(api_name="/balance") == start

    image, message, balance = client.predict("a lighthouse at dusk", "cinematic", "16:9", "1K",
                                             api_name="/generate")
    assert balance == start - 10 == balance_of(served_app, user) == client.predict(api_name="/balance")
    shown = Image.open(image)
    assert (shown.format, shown.size) == ("WEBP", (1024, 576)), "the full-resolution WebP is displayed"
    assert "10 credits charged" in message and "offline preview" in message
    generation_id = message.split("/images/", 1)[1].split("/png", 1)[0]
    assert len(generation_id) == 32

    with served_app.client(headers={"Authorization": f"Bearer {key}"}) as http:
        png = http.get(f"/images/{generation_id}/png")
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert "attachment" in png.headers["content-disposition"]
        original = Image.open(io.BytesIO(png.content))
        assert (original.format, original.size) == ("PNG", (1024, 576))
        thumb = http.get(f"/images/{generation_id}/thumb")
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"


def test_refusals_raise_the_user_facing_message_and_charge_nothing(served_app, closing):
    user, _, client = api_user(served_app)
    client.predict("a cat", "none", "1:1", "1K", api_name="/generate")  # 40 trial credits - 10
    start = balance_of(served_app, user)
    cases = [
        (("", "photographic", "1:1", "1K"), "Please enter a prompt"),
        (("a cat\x00", "photographic", "1:1", "1K"), "control character"),
        (("a cat", "no-such-style", "1:1", "1K"), "Unknown style"),
        (("a cat", "photographic", "7:5", "1K"), "Unknown aspect ratio"),
        (("a cat", "photographic", "1:1", "16K"), "Unknown resolution"),
        (("child porn", "photographic", "1:1", "1K"), "refused by our content rules"),
        (("a cat", "photographic", "1:1", "4K"), f"This needs 40 credits and you have {start}"),
    ]
    for args, message in cases:
        with pytest.raises(AppError, match=message):
            client.predict(*args, api_name="/generate")
    assert balance_of(served_app, user) == start == 30
    assert served_app.services.studio.gallery(user_id=user.id).total == 1


def test_user_b_cannot_fetch_user_a_images(served_app, closing):
    alice, alice_key, alice_client = api_user(served_app)
    bob, bob_key, _ = api_user(served_app)
    _, message, _ = alice_client.predict("a private sketch", "pencil sketch", "3:4", "1K", api_name="/generate")
    generation_id = message.split("/images/", 1)[1].split("/png", 1)[0]

    with served_app.client(headers={"Authorization": f"Bearer {bob_key}"}) as http:
        for variant in ("png", "webp", "thumb"):
            assert http.get(f"/images/{generation_id}/{variant}").status_code == 404
        assert http.get("/images/../studio.db/png").status_code == 404
    with served_app.client() as anonymous:
        assert anonymous.get(f"/images/{generation_id}/png").status_code in (401, 303, 307)
    with served_app.client(headers={"Authorization": f"Bearer {alice_key}"}) as http:
        assert http.get(f"/images/{generation_id}/png").status_code == 200
        assert http.get(f"/images/{generation_id}/gif").status_code == 404
    assert served_app.services.studio.gallery(user_id=bob.id).total == 0
    assert [g.id for g in served_app.services.studio.gallery(user_id=alice.id).items] == [generation_id]


def test_rate_limit_through_the_api(serve_app, closing, clock):
    app = serve_app(GENERATION_RATE_PER_MINUTE=2)
    app.services.studio.clock = clock  # the minute does not run out while a slow machine works
    user, _, client = api_user(app)
    for _ in range(2):
        client.predict("a cat", "none", "1:1", "1K", api_name="/generate")
    with pytest.raises(AppError, match="2 images a minute"):
        client.predict("a cat", "none", "1:1", "1K", api_name="/generate")
    assert balance_of(app, user) == 20  # 40 trial credits, two images charged
    admin, _, admin_client = api_user(app, admin=True)
    for _ in range(3):
        admin_client.predict("a cat", "none", "1:1", "1K", api_name="/generate")
    assert balance_of(app, admin) == 10


@pytest.mark.slow
def test_many_users_generate_at_once_through_gpt_image(serve_app, fake_openai, closing):
    """Users are not served one after another: the engine holds every answer, and all eight
    requests reach it before any is answered."""
    app = serve_app(OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=fake_openai.url, IMAGE_PROVIDER="openai",
                    IMAGE_MODEL="gpt-image-2")
    clients = [api_user(app) for _ in range(8)]
    fake_openai.hold()
    results, errors = [], []

    def run(client):
        try:
            results.append(client.predict("a lighthouse", "photographic", "1:1", "1K", api_name="/generate"))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for _, _, c in clients]
    for t in threads:
        t.start()
    try:
        fake_openai.wait_until(lambda f: f.in_flight == 8, timeout=120)
    finally:
        fake_openai.release_all()
    for t in threads:
        t.join(timeout=120)
    assert errors == [] and len(results) == 8
    assert fake_openai.max_in_flight == 8 and fake_openai.timeline[:8] == [("start", n) for n in range(1, 9)]
    assert all(balance_of(app, user) == 30 for user, _, _ in clients)
    assert all("openai" not in m or "gpt-image-2" in m for _, m, _ in results)
    body = fake_openai.calls("/images/generations")[0].body
    assert body["model"] == "gpt-image-2" and body["size"] == "1024x1024"


def test_provider_failure_through_the_api_is_not_charged(serve_app, fake_openai, closing):
    app = serve_app(OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=fake_openai.url, IMAGE_PROVIDER="openai")
    user, _, client = api_user(app)
    fake_openai.fail("moderation_blocked")
    with pytest.raises(AppError, match="you were not charged"):
        client.predict("a harmless cat", "none", "1:1", "1K", api_name="/generate")
    with pytest.raises(AppError, match="refused by our content rules"):
        client.predict("a FORBIDDEN cat", "none", "1:1", "1K", api_name="/generate")
    assert balance_of(app, user) == 40
    assert len(fake_openai.calls("/images/generations")) == 1, "the flagged prompt never reached the engine"
