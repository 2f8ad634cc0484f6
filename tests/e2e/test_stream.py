"""Live previews through the served app: the engine's partial frames reach gradio_client (in
`job.outputs()`, before the final image) and the page's own event; a stream that breaks after a
partial frame charges nothing; the page's refusals are notices, not errors; the app page is never
cached. The real openai SDK talks to the fake OpenAI's SSE stream."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

from tests.e2e.conftest import keep_closing, queue_event, sign_up


def api_user(app, tmp_path: Path):
    user = app.services.accounts.create_user(email=f"stream-{uuid.uuid4().hex[:10]}@example.com",
                                             password="correct horse battery")
    _, key = app.services.accounts.create_api_key(user_id=user.id, name="e2e")
    client = Client(app.url, headers={"Authorization": f"Bearer {key}"}, verbose=False,
                    download_files=str(tmp_path / f"downloads-{user.id}"))
    keep_closing(client)
    return user, key, client


def gpt_image(serve_app, fake_openai, **settings):
    return serve_app(OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=fake_openai.url, IMAGE_PROVIDER="openai",
                     IMAGE_MODEL="gpt-image-2", **settings)


def balance_of(app, user) -> int:
    return app.services.ledger.balance(user.id).total


def test_partial_frames_reach_gradio_client_before_the_final_image(serve_app, fake_openai, tmp_path, closing):
    app = gpt_image(serve_app, fake_openai)
    fake_openai.latency = 0.9  # three steps of 0.3 s: frame, frame, final
    alice, alice_key, client = api_user(app, tmp_path)
    _, bob_key, _ = api_user(app, tmp_path)

    job = client.submit("a lighthouse at dusk", "cinematic", "16:9", "1K", api_name="/generate")
    image, message, balance = job.result(timeout=120)
    outputs = job.outputs()

    assert [o[1].split(" · ")[0] for o in outputs[:-1]] == ["Preview 1 of 2", "Preview 2 of 2"]
    for preview_path, _, preview_balance in outputs[:-1]:
        frame = Image.open(preview_path)
        assert (frame.format, frame.size) == ("WEBP", (640, 360)), "a small, fast WebP of the frame"
        assert preview_balance is None
    assert outputs[-1] == (image, message, balance)
    final = Image.open(image)
    assert (final.format, final.size) == ("WEBP", (1024, 576))
    assert "10 credits charged" in message and balance == 30 == balance_of(app, alice)
    body = fake_openai.calls("/images/generations")[0].body
    assert body["stream"] is True and body["partial_images"] == 2

    generation_id = message.split("/images/", 1)[1].split("/png", 1)[0]
    url = f"/previews/{generation_id}/0/preview-{generation_id[:12]}-1.webp"
    with app.client(headers={"Authorization": f"Bearer {alice_key}"}) as http:
        mine = http.get(url)
        assert mine.status_code == 200 and mine.content == Path(outputs[0][0]).read_bytes()
        assert "no-store" in mine.headers["cache-control"]
        assert http.get(f"/previews/{generation_id}/0/other.webp").status_code == 404
    with app.client(headers={"Authorization": f"Bearer {bob_key}"}) as http:
        assert http.get(url).status_code == 404, "another user's preview"
    with httpx.Client(base_url=app.url) as anonymous:
        assert anonymous.get(url).status_code == 401


def test_a_stream_cut_after_one_partial_frame_leaves_the_balance_whole(serve_app, fake_openai, tmp_path, closing):
    app = gpt_image(serve_app, fake_openai)
    user, key, client = api_user(app, tmp_path)
    fake_openai.fail("cut_stream", times=1)

    job = client.submit("a lighthouse at dusk", "cinematic", "1:1", "1K", api_name="/generate")
    with pytest.raises(AppError, match="you were not charged.*broke before the image was finished"):
        job.result(timeout=120)
    seen = job.outputs()
    assert [o[1].split(" · ")[0] for o in seen] == ["Preview 1 of 2"], "the frame was shown, then the stream broke"
    assert balance_of(app, user) == 40, "not charged"
    assert app.services.ledger.balance(user.id).held == 0, "the hold was released"
    assert app.services.studio.gallery(user_id=user.id).total == 0

    # The next request streams whole and is charged once.
    _, message, balance = client.predict("a lighthouse at dusk", "cinematic", "1:1", "1K", api_name="/generate")
    assert balance == 30 == balance_of(app, user) and "10 credits charged" in message


def test_api_refusals_keep_their_message_and_say_what_happened_in_the_title(serve_app, tmp_path, closing):
    app = serve_app()
    user, _, client = api_user(app, tmp_path)
    client.predict("a cat", "none", "1:1", "1K", api_name="/generate")  # 30 credits left
    for args, message, title in ((("", "none", "1:1", "1K"), "Please enter a prompt.", "Please check your request"),
                                 (("a cat", "none", "1:1", "4K"), "This needs 40 credits and you have 30",
                                  "Not enough credits"),
                                 (("child porn", "none", "1:1", "1K"), "refused by our content rules",
                                  "Prompt refused")):
        with pytest.raises(AppError, match=message) as refused:
            client.predict(*args, api_name="/generate")
        assert refused.value.title == title
    assert balance_of(app, user) == 30


def test_the_offline_engine_streams_drafts_and_partial_images_zero_streams_none(serve_app, tmp_path, closing):
    app = serve_app()
    _, _, client = api_user(app, tmp_path)
    job = client.submit("a lighthouse at dusk", "cinematic", "16:9", "1K", api_name="/generate")
    job.result(timeout=120)
    stages = [o[1].split(" · ")[0] for o in job.outputs()]
    assert stages[:2] == ["Preview 1 of 2", "Preview 2 of 2"] and "offline preview" in stages[2]

    quiet = serve_app(PARTIAL_IMAGES=0)
    _, _, client = api_user(quiet, tmp_path)
    job = client.submit("a lighthouse at dusk", "cinematic", "16:9", "1K", api_name="/generate")
    job.result(timeout=120)
    assert len(job.outputs()) == 1, "no partial frames: only the final image"


class Page:
    """A signed-in browser session calling the page's own events through Gradio's queue."""

    def __init__(self, app):
        self.http = sign_up(app, f"page-{uuid.uuid4().hex[:8]}@example.com")
        self.config = self.http.get("/config").json()
        self.session_hash = uuid.uuid4().hex  # one tab: its gr.State (the last good image) carries over

    def event(self, api_name: str) -> int:
        return next(d["id"] for d in self.config["dependencies"] if d.get("api_name") == api_name)

    def generate(self, *args) -> dict:
        # last good image, then the references area (its list, the editor, editing): the session's state
        return queue_event(self.http, self.event("generate_ui"), [*args, None, None, None, None],
                           session_hash=self.session_hash)


def test_the_pages_refusals_are_notices_not_errors(serve_app):
    app = serve_app()
    page = Page(app)
    try:
        made = page.generate("a lighthouse", "cinematic", "16:9", "1K")
        assert made["success"]
        image, details, notice, *_ = made["output"]["data"]
        assert "/images/" in image["url"] and "10 credits charged" in details and notice == ""

        for args, said in ((("", "cinematic", "16:9", "1K"), "Please enter a prompt."),
                           (("a cat", "cinematic", "16:9", "4K"), "This needs 40 credits and you have 30."),
                           (("child porn", "cinematic", "16:9", "1K"), "refused by our content rules")):
            refused = page.generate(*args)
            assert refused["success"], "a refusal is no error"
            kept, message, notice, *_ = refused["output"]["data"]
            assert said in notice and 'class="studio-notice"' in notice
            assert kept == {"__type__": "update"}, "the last image stays as it was"
            assert message == details, "the status line reverts to the last image's details"
    finally:
        page.http.close()


def test_the_app_page_is_never_cached(serve_app):
    app = serve_app()
    http = sign_up(app, f"cache-{uuid.uuid4().hex[:8]}@example.com")
    try:
        page = http.get("/", headers={"accept": "text/html"})
        assert page.status_code == 200 and "no-store" in page.headers["cache-control"]
    finally:
        http.close()
