"""`/edit` through the served app (issue #11): gradio_client uploads reference images with
`handle_file`; what reaches the fake OpenAI server (real SDK) is checked on its bytes; bad uploads,
failures after the hold and another user's images leave every balance and the store as they were;
Gradio's upload route takes files only from signed-in users, capped per request."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from sqlalchemy import func
from sqlmodel import select

from models.generation import Generation
from tests import pictures

_clients: list[Client] = []


@pytest.fixture
def closing():
    """Request it after the app fixture: the clients close before the app stops."""
    yield
    while _clients:
        _clients.pop().close()


def api_user(app, tmp_path: Path, credits: int = 0):
    user = app.services.accounts.create_user(email=f"edit-{uuid.uuid4().hex[:10]}@example.com",
                                             password="correct horse battery")
    if credits:
        app.services.ledger.grant(user_id=user.id, amount=credits, kind="admin",
                                  idempotency_key=f"e2e:{uuid.uuid4().hex}")
    _, key = app.services.accounts.create_api_key(user_id=user.id, name="e2e")
    client = Client(app.url, headers={"Authorization": f"Bearer {key}"}, verbose=False,
                    download_files=str(tmp_path / f"downloads-{user.id}"))
    _clients.append(client)
    return user, key, client


def balance_of(app, user) -> int:
    return app.services.ledger.balance(user.id).total


def generations(app) -> int:
    with app.services.db.session() as s:
        return s.exec(select(func.count()).select_from(Generation)).one()


def write(folder: Path, name: str, data: bytes) -> str:
    path = folder / name
    path.write_bytes(data)
    return str(path)


def gpt_image(serve_app, fake_openai, **settings):
    return serve_app(OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=fake_openai.url, IMAGE_PROVIDER="openai",
                     IMAGE_MODEL="gpt-image-2", **settings)


def test_edit_sends_the_references_in_order_without_gps_and_the_mask(serve_app, fake_openai, tmp_path, closing):
    app = gpt_image(serve_app, fake_openai)
    user, key, client = api_user(app, tmp_path)
    start = balance_of(app, user)
    first = write(tmp_path, "holiday.jpg", pictures.jpeg_with_gps(480, 320, colour=(210, 60, 40)))
    second = write(tmp_path, "leaf.webp", pictures.picture(256, 256, colour=(40, 200, 60), fmt="WEBP"))
    mask = write(tmp_path, "mask.png", pictures.mask(480, 320, (0, 0, 240, 320)))  # the left half painted

    image, message, balance = client.predict(
        "make it autumn", "photographic", "3:2", "1K", [handle_file(first), handle_file(second)],
        handle_file(mask), api_name="/edit")

    received, = fake_openai.edits
    assert [pictures.size_of(i) for i in received.images] == [(480, 320), (256, 256)]
    assert pictures.mean_colour(received.images[0])[0] > 150 and pictures.mean_colour(received.images[1])[1] > 150
    assert b"SpyCam" in Path(first).read_bytes()
    assert not any(pictures.has_gps(i) for i in received.images)  # GPS in, none out
    assert pictures.size_of(received.mask) == (480, 320)
    assert pictures.alpha_at(received.mask, 100, 160) == 0 and pictures.alpha_at(received.mask, 400, 160) == 255
    assert "from 2 reference images" in message and "10 credits charged" in message
    assert balance == start - 10 == balance_of(app, user)
    assert Path(image).is_file()

    generation_id = message.split("/images/", 1)[1].split("/png", 1)[0]
    with app.client(headers={"Authorization": f"Bearer {key}"}) as http:
        stored = http.get(f"/images/{generation_id}/ref0.jpg")
        assert stored.status_code == 200 and stored.content == received.images[0]
    _, bob_key, _ = api_user(app, tmp_path)
    with app.client(headers={"Authorization": f"Bearer {bob_key}"}) as http:
        assert http.get(f"/images/{generation_id}/ref0.jpg").status_code == 404
    from gradio.utils import get_upload_folder
    leftovers = [p for p in Path(get_upload_folder()).rglob("*") if p.name in ("holiday.jpg", "leaf.webp", "mask.png")]
    assert leftovers == []  # the uploads are gone once read


@pytest.mark.parametrize("name, data, reason", [
    ("anim.png", b"GIF89a" + bytes(200), "this is a GIF"),
    ("vector.png", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>', "an SVG"),
    ("photo.png", b"\x00\x00\x00\x18ftypheic" + bytes(200), "HEIC"),
    ("scan.jpg", b"%PDF-1.4\n" + bytes(200), "a PDF"),
    ("pics.png", b"PK\x03\x04" + bytes(200), "a zip archive"),
    ("cut.jpg", pictures.picture(300, 200)[:500], "damaged"),
])
def test_every_bad_upload_is_refused_by_name_and_nothing_is_charged(served_app, tmp_path, closing, name, data,
                                                                      reason):
    user, _, client = api_user(served_app, tmp_path)
    start, made = balance_of(served_app, user), generations(served_app)
    good = write(tmp_path, "good.jpg", pictures.picture())
    bad = write(tmp_path, name, data)
    with pytest.raises(AppError) as refused:
        client.predict("a cat", "photographic", "1:1", "1K", [handle_file(good), handle_file(bad)], None,
                       api_name="/edit")
    assert f"{name}: " in str(refused.value) and reason in str(refused.value)
    assert balance_of(served_app, user) == start and generations(served_app) == made


def test_a_bomb_too_many_and_a_bad_mask_are_refused(serve_app, tmp_path, closing):
    app = serve_app(REFERENCE_MAX_IMAGES=2)
    user, _, client = api_user(app, tmp_path)
    start = balance_of(app, user)
    small = write(tmp_path, "small.jpg", pictures.picture(64, 64))
    from tests.unit.test_references import png_header_only
    bomb = write(tmp_path, "bomb.png", png_header_only(8_000, 8_000))
    cases = [
        ([small, bomb], None, "bomb.png: 8000×8000 pixels is 64 megapixels"),
        ([small, small, small], None, "at most 2"),
        ([small], write(tmp_path, "flat.png", pictures.picture(64, 64, fmt="PNG")), "no transparency"),
    ]
    for refs, mask, said in cases:
        with pytest.raises(AppError, match=said):
            client.predict("a cat", "photographic", "1:1", "1K", [handle_file(r) for r in refs],
                           handle_file(mask) if mask else None, api_name="/edit")
    assert balance_of(app, user) == start and generations(app) == 0


@pytest.mark.parametrize("mode", ["error_500", "moderation_blocked"])
def test_a_failure_after_the_hold_is_released_and_not_charged(serve_app, fake_openai, tmp_path, closing, mode):
    app = gpt_image(serve_app, fake_openai)
    user, _, client = api_user(app, tmp_path)
    start = balance_of(app, user)
    fake_openai.fail(mode)
    with pytest.raises(AppError, match="not charged"):
        client.predict("a cat", "photographic", "1:1", "1K", [handle_file(write(tmp_path, "a.jpg", pictures.picture()))],
                       None, api_name="/edit")
    assert balance_of(app, user) == start
    with app.services.db.session() as s:
        generation = s.exec(select(Generation)).one()
    assert generation.status == "failed" and not app.services.studio.store.exists(generation.id)


def test_flagged_references_are_refused_before_the_hold(serve_app, fake_openai, tmp_path, closing):
    app = gpt_image(serve_app, fake_openai)
    user, _, client = api_user(app, tmp_path)
    start = balance_of(app, user)
    red = write(tmp_path, "red.png", pictures.picture(colour=(255, 0, 0), fmt="PNG"))
    with pytest.raises(AppError, match="refused by our content rules"):
        client.predict("a cat", "photographic", "1:1", "1K", [handle_file(red)], None, api_name="/edit")
    assert balance_of(app, user) == start and generations(app) == 0 and not fake_openai.edits


def test_generate_keeps_its_signature(served_app, tmp_path, closing):
    _, _, client = api_user(served_app, tmp_path)
    info = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert [p["parameter_name"] for p in info["/generate"]["parameters"]] == [
        "prompt", "style", "aspect_ratio", "resolution"]
    assert [p["parameter_name"] for p in info["/edit"]["parameters"]] == [
        "prompt", "style", "aspect_ratio", "resolution", "references", "mask"]
    assert len(info["/edit"]["returns"]) == 3


def test_uploads_only_for_signed_in_users_and_capped(serve_app, tmp_path):
    from gradio.utils import get_upload_folder

    app = serve_app(REFERENCE_MAX_BYTES=100_000, REFERENCE_MAX_IMAGES=2)
    folder = Path(get_upload_folder())
    before = sorted(folder.rglob("*")) if folder.exists() else []
    files = [("files", ("a.png", os.urandom(50_000), "image/png"))]
    with app.client() as anonymous:
        r = anonymous.post("/gradio_api/upload", files=files)
        assert r.status_code == 401 and "sign in" in r.text.lower()
    user, key, _ = api_user(app, tmp_path)
    with app.client(headers={"Authorization": f"Bearer {key}"}) as http:
        assert http.post("/gradio_api/process_recording", files=files).status_code == 403
        # The cap: 100 kB × (2 + 1) + 1 MiB ≈ 1.35 MB a request; 5 × 300 kB is over it.
        big = [("files", (f"f{i}.png", os.urandom(300_000), "image/png")) for i in range(5)]
        assert http.post("/gradio_api/upload", files=big).status_code == 413
        ok = http.post("/gradio_api/upload", files=[("files", ("one.png", os.urandom(90_000), "image/png"))])
        assert ok.status_code == 200 and len(ok.json()) == 1
    after = sorted(folder.rglob("*")) if folder.exists() else []
    assert len(after) > len(before)  # the signed-in upload was written; the refused ones were not


class Page:
    """One signed-in browser tab, driving the page's private events through Gradio's queue."""

    def __init__(self, app):
        from tests.e2e.conftest import sign_up

        self.http = sign_up(app, f"refs-{uuid.uuid4().hex[:8]}@example.com")
        self.config = self.http.get("/config").json()
        self.session_hash = uuid.uuid4().hex

    def event(self, api_name: str, data: list, event_data: dict | None = None) -> dict:
        from tests.e2e.conftest import queue_event

        fn = next(d["id"] for d in self.config["dependencies"] if d.get("api_name") == api_name)
        return queue_event(self.http, fn, data, session_hash=self.session_hash, event_data=event_data)

    def generate(self, prompt: str = "a quiet harbour") -> dict:
        return self.event("generate_ui", [prompt, "photographic", "1:1", "1K", None, None, None, None])


def test_gallery_images_become_references_only_for_their_owner(serve_app):
    app = serve_app()
    alice, bob = Page(app), Page(app)
    made = alice.generate()
    assert made["success"], made
    first = made["output"]["data"][1].split("/images/", 1)[1].split("/png", 1)[0]

    refused = bob.event("gallery_use_reference", [None], {"id": first})
    assert not refused["success"] and "not found" in json.dumps(refused).lower()
    refused = bob.event("gallery_edit", [], {"id": first})
    assert not refused["success"]

    opened = alice.event("gallery_edit", [], {"id": first})  # the image alone, open in the region editor
    assert opened["success"], opened
    assert f"/images/{first}/thumb/" in json.dumps(opened["output"]["data"][1])
    assert json.dumps(opened["output"]["data"][3]).count("background") >= 1  # the editor got the image

    added = alice.event("gallery_use_reference", [None], {"id": first})
    assert added["success"], added
    assert f"/images/{first}/thumb/" in json.dumps(added["output"]["data"][1])  # the thumbnail, owner-checked

    edited = alice.generate("the same harbour at night")
    assert edited["success"], edited
    details = edited["output"]["data"][1]
    assert "from 2 reference images" in details  # Edit's image, then the same one added again
    second = details.split("/images/", 1)[1].split("/png", 1)[0]
    with app.services.db.session() as s:
        row = s.get(Generation, second)
    assert [r["source"] for r in row.reference_images] == [first, first] and row.cost == 10
    assert alice.http.get(f"/images/{second}/ref0.jpg").status_code == 200
    assert bob.http.get(f"/images/{second}/ref0.jpg").status_code == 404

    # Reuse settings re-attaches the references the image was made from.
    reused = alice.event("gallery_reuse", [], {"id": second})
    assert reused["success"] and f"/images/{second}/ref0.jpg/" in json.dumps(reused["output"]["data"])
