"""Hardening of the UI (issue 17): the image URLs the UI hands out are owner-checked, nothing of a
generation lands in Gradio's cache, and an unexpected error reaches the user as a reference id, never
as its text. Driven like a browser: the Gradio queue over HTTP with a session cookie, and gradio_client
with an API key."""

from __future__ import annotations

import io
import logging
import re
import uuid
from pathlib import Path

import gradio as gr
import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

from tests.e2e.conftest import queue_event, sign_up
from ui import build_ui, gallery, generate
from ui.common import Shell

REFERENCE = re.compile(r"Something went wrong on our side\. Reference: ([0-9a-f]{8})")
LEAKS = ("sqlite", "psycopg", "OperationalError", "ProgrammingError", "no such table", "does not exist",
         "SELECT", "INSERT", "generations", "credit_grants", "Traceback")


class Browser:
    """A signed-in browser session: calls the UI's events (public or private) as the page does."""

    def __init__(self, app, email: str):
        self.email = email
        self.http = sign_up(app, email)
        self.config = self.http.get("/config").json()
        self.session_hash = uuid.uuid4().hex

    def close(self) -> None:
        self.http.close()

    def fn_index(self, *, api_name: str | None = None, outputs_type: str | None = None, inputs: int = 0) -> int:
        types = {c["id"]: c.get("type") for c in self.config["components"]}
        for dep in self.config["dependencies"]:
            if api_name is not None and dep.get("api_name") == api_name:
                return dep["id"]
            if outputs_type is not None and len(dep["inputs"]) == inputs \
                    and any(types.get(o) == outputs_type for o in dep["outputs"]):
                return dep["id"]
        raise AssertionError(f"no event {api_name or outputs_type} in the page")

    def call(self, fn_index: int, data: list) -> list:
        """One event through Gradio's queue (join, then the event stream), as the browser does."""
        message = queue_event(self.http, fn_index, data, session_hash=self.session_hash)
        assert message["success"], message
        return message["output"]["data"]


def generate_in_browser(browser: Browser) -> tuple[str, str]:
    """Generate on the Generate tab; returns (the displayed image's URL, the generation id)."""
    image, details, *_ = browser.call(browser.fn_index(api_name="generate_ui"),
                                      ["a private lighthouse", "cinematic", "16:9", "1K", None, None, None, None])
    generation_id = details.split("/images/", 1)[1].split("/png", 1)[0]
    return image["url"], generation_id


def gallery_thumbnails(browser: Browser) -> list[str]:
    """The thumbnail URLs the Gallery tab shows (its search event with no filter: the grid's HTML)."""
    outputs = browser.call(browser.fn_index(api_name="gallery_search"), ["", "", "", "Gallery"])
    grid = outputs[1].get("value") if isinstance(outputs[1], dict) else outputs[1]
    return re.findall(r'<img src="([^"]+)"', grid or "")


def test_display_and_thumbnail_urls_are_for_their_owner_only(served_app):
    alice = Browser(served_app, f"alice-{uuid.uuid4().hex[:8]}@example.com")
    bob = Browser(served_app, f"bob-{uuid.uuid4().hex[:8]}@example.com")
    try:
        shown_url, generation_id = generate_in_browser(alice)
        thumbs = gallery_thumbnails(alice)
        assert len(thumbs) == 1
        urls = [shown_url, thumbs[0]]

        for url in urls:
            mine = alice.http.get(url)
            assert mine.status_code == 200 and mine.headers["content-type"] == "image/webp"
            assert Image.open(io.BytesIO(mine.content)).format == "WEBP"
            assert bob.http.get(url).status_code == 404, f"bob fetched {url}"
            with httpx.Client(timeout=30) as anonymous:
                assert anonymous.get(url).status_code == 401
        assert Image.open(io.BytesIO(alice.http.get(shown_url).content)).size == (1024, 576), "full resolution"
        assert gallery_thumbnails(bob) == []
        assert urls == [f"{served_app.url}/images/{generation_id}/{variant}/image-{generation_id[:12]}.webp"
                        for variant in ("webp", "thumb")]
        assert alice.http.get(f"/images/{generation_id}/webp/other.webp").status_code == 404, "only its own name"

        owner = served_app.services.accounts.get_user_by_email(alice.email)
        served_app.services.studio.delete(user_id=owner.id, generation_id=generation_id)
        for url in urls:
            assert alice.http.get(url).status_code == 404, f"{url} still served after the delete"
    finally:
        alice.close()
        bob.close()


def test_no_generation_lands_in_gradios_cache_and_the_api_still_downloads_the_webp(serve_app, tmp_path,
                                                                                    monkeypatch):
    cache = tmp_path / "gradio-cache"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))  # read when the app's components are built
    app = serve_app()
    user = app.services.accounts.create_user(email=f"api-{uuid.uuid4().hex[:8]}@example.com",
                                             password="correct horse battery")
    _, key = app.services.accounts.create_api_key(user_id=user.id, name="e2e")
    client = Client(app.url, headers={"Authorization": f"Bearer {key}"}, verbose=False,
                    download_files=str(tmp_path / "downloads"))
    browser = Browser(app, f"browser-{uuid.uuid4().hex[:8]}@example.com")
    try:
        image, message, balance = client.predict("a lighthouse at dusk", "cinematic", "16:9", "1K",
                                                 api_name="/generate")
        generation_id = message.split("/images/", 1)[1].split("/png", 1)[0]
        downloaded = Image.open(image)
        assert (downloaded.format, downloaded.size) == ("WEBP", (1024, 576))
        assert Path(image).name == f"image-{generation_id[:12]}.webp", "saved as a .webp file, as README says"
        with app.client(headers={"Authorization": f"Bearer {key}"}) as http:
            assert Path(image).read_bytes() == http.get(f"/images/{generation_id}/webp").content
        assert balance == 30

        generate_in_browser(browser)
        assert len(gallery_thumbnails(browser)) == 1
    finally:
        browser.close()
        client.close()
    cached = [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []
    assert cached == [], f"generations were written into Gradio's cache: {cached}"


def break_the_store(app) -> None:
    """Rename tables the studio and the ledger read: every call that needs them fails unexpectedly."""
    with app.services.db.write_connection() as conn:
        conn.exec_driver_sql("ALTER TABLE generations RENAME TO generations_gone")
        conn.exec_driver_sql("ALTER TABLE credit_grants RENAME TO credit_grants_gone")


def assert_reference_only(text: str, caplog) -> str:
    match = REFERENCE.search(text)
    assert match, f"no reference id in {text!r}"
    assert not [leak for leak in LEAKS if leak.lower() in text.lower()], text
    reference = match.group(1)
    logged = [r for r in caplog.records if reference in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None, "the details are logged under the reference"
    assert "generations" in str(logged[0].exc_info[1]) or "credit_grants" in str(logged[0].exc_info[1])
    return reference


def test_unexpected_errors_show_a_reference_never_the_exception(serve_app, caplog):
    caplog.set_level(logging.ERROR, logger="studio")
    app = serve_app()
    user = app.services.accounts.create_user(email=f"broken-{uuid.uuid4().hex[:8]}@example.com",
                                             password="correct horse battery")
    _, key = app.services.accounts.create_api_key(user_id=user.id, name="e2e")
    client = Client(app.url, headers={"Authorization": f"Bearer {key}"}, verbose=False)
    try:
        image, message, _ = client.predict("a cat", "none", "1:1", "1K", api_name="/generate")
        generation_id = message.split("/images/", 1)[1].split("/png", 1)[0]
        break_the_store(app)

        references = []
        for args, api_name in ((("a cat", "none", "1:1", "1K"), "/generate"), ((), "/balance")):
            with pytest.raises(AppError) as refused:
                client.predict(*args, api_name=api_name)
            references.append(assert_reference_only(str(refused.value), caplog))

        with app.client(headers={"Authorization": f"Bearer {key}"}) as http:
            r = http.get(f"/images/{generation_id}/webp")
        assert r.status_code == 500
        references.append(assert_reference_only(r.json()["detail"], caplog))
        assert len(set(references)) == 3, "each failure has its own reference"
    finally:
        client.close()


def test_every_handler_maps_errors_in_one_place(served_app):
    """Issue 9: every event handler goes through ui.common.user_facing (DomainError → its message,
    anything else → a reference id), instead of an `except DomainError` block in each."""
    demo = build_ui(served_app.services)
    handlers = [f.fn for f in demo.fns.values() if f.fn is not None]
    assert len(handlers) > 20
    bare = sorted({f"{fn.__module__}.{fn.__qualname__}" for fn in handlers
                   if fn.__code__.co_qualname != "user_facing.<locals>.handler"})
    assert bare == []


def test_the_gallery_gets_the_generate_form_as_an_argument(served_app):
    """Issue 9: tabs do not reach each other through attributes set on the shared Shell at build time."""
    services = served_app.services
    shell = Shell(services)
    with gr.Blocks() as demo, gr.Tabs() as tabs:
        with gr.Tab("Generate", id="generate"):
            form = generate.build(services, shell, tabs=tabs)
        with gr.Tab("Gallery", id="gallery"):
            gallery.build(services, shell, form=form, tabs=tabs)
    # built_words: the per-language words (Shell.words) the tabs register for gr.I18n, made by Shell itself
    assert set(vars(shell)) == {"services", "balance", "tab_loaders", "built_words"}, "no tab left anything on the shell"
    reuse = [f for f in demo.fns.values() if f.name == "reuse_settings"]
    assert len(reuse) == 1
    refs = form.references  # "Reuse settings" re-attaches the references (issue #11)
    assert [block._id for block in reuse[0].outputs] == \
        [c._id for c in (form.prompt, form.style, form.aspect_ratio, form.resolution, refs.items, refs.thumbs,
                         refs.edit_region, refs.editor, refs.editing, refs.stop, tabs)]

    with gr.Blocks() as alone:
        gallery.build(services, Shell(services))
    assert not [f for f in alone.fns.values() if f.name == "reuse_settings"], "no form, no Reuse settings"
