"""The gallery and the account history through the served app: the Gallery tab's events through
Gradio's queue exactly as the page sends them (search, filters, delete into the trash, restore),
the owner-checked image routes (a trashed image is refused, its trash preview is not), Download
all (a streamed zip of the full-size PNG originals), and the history rows of every kind with a
working link to the image. Images are made through the public /generate API (gradio_client)."""

from __future__ import annotations

import io
import json
import re
import uuid
import zipfile
from datetime import UTC, datetime

import httpx
import pytest
from gradio_client import Client
from PIL import Image

from services.admin import OPERATOR
from tests.e2e.conftest import queue_event, shop, sign_up
from tests.fakes.stripe_server import signed
from ui.downloads import zip_stream

IDS = re.compile(r'data-id="([0-9a-f]{32})"')
SECRET = "whsec_gallery_secret"


class Person:
    """A signed-up person: a browser session (cookie) for the page's events and an API key."""

    def __init__(self, app, name: str):
        self.app = app
        self.email = f"{name}-{uuid.uuid4().hex[:8]}@example.com"
        self.http = sign_up(app, self.email)
        self.user = app.services.accounts.get_user_by_email(self.email)
        _, self.key = app.services.accounts.create_api_key(user_id=self.user.id, name="e2e")
        self.config = self.http.get("/config").json()
        self.session_hash = uuid.uuid4().hex

    def close(self) -> None:
        self.http.close()

    def generate(self, prompt: str, style: str, ratio: str, resolution: str = "1K") -> str:
        client = Client(self.app.url, headers={"Authorization": f"Bearer {self.key}"}, verbose=False)
        try:
            _, message, _ = client.predict(prompt, style, ratio, resolution, api_name="/generate")
        finally:
            client.close()
        return message.split("/images/", 1)[1].split("/png", 1)[0]

    def fn(self, api_name: str) -> int:
        return next(d["id"] for d in self.config["dependencies"] if d.get("api_name") == api_name)

    def event(self, fn: int, data: list, *, event_data: dict | None = None) -> dict:
        """One event through Gradio's queue as the page sends it; returns the final message."""
        return queue_event(self.http, fn, data, session_hash=self.session_hash, event_data=event_data)

    def gallery(self, api_name: str, data: list, *, event_data: dict | None = None) -> tuple[str, str]:
        """A Gallery tab event; returns (the summary line's text, the grid's HTML)."""
        message = self.event(self.fn(api_name), data, event_data=event_data)
        assert message["success"], message
        summary, grid = (_value(v) for v in message["output"]["data"][:2])
        return re.sub(r"<[^>]+>", "", summary), grid

    def search(self, query: str = "", style: str = "", resolution: str = "", show: str = "Gallery"):
        return self.gallery("gallery_search", [query, style, resolution, show])


def _value(output):
    return output.get("value") if isinstance(output, dict) else output


@pytest.fixture
def people(served_app):
    made = []

    def person(name: str) -> Person:
        made.append(Person(served_app, name))
        return made[-1]

    yield person
    for p in made:
        p.close()


def test_search_filter_delete_into_the_trash_and_restore(served_app, people):
    alice, bob = people("alice"), people("bob")
    served_app.services.admin.grant_credits(actor=OPERATOR, email=alice.email, amount=100)
    dusk = alice.generate("A lighthouse at dusk", "cinematic", "16:9")
    fog = alice.generate("lighthouse in the fog", "photographic", "1:1")
    fox = alice.generate("a red fox", "cinematic", "1:1", "2K")
    bobs = bob.generate("bob's own lighthouse", "cinematic", "1:1")

    summary, grid = alice.search()
    assert summary.startswith("3 images, newest first.") and "Download all" in summary
    assert IDS.findall(grid) == [fox, fog, dusk]
    assert f'/images/{dusk}/thumb/image-{dusk[:12]}.webp' in grid
    assert re.search(rf'style="--w:1024;--h:576"[^>]*data-id="{dusk}"', grid), "the grid keeps the 16:9 shape"
    assert 'data-prompt="A lighthouse at dusk"' in grid and 'data-credits="10"' in grid

    assert IDS.findall(alice.search("LIGHTHOUSE")[1]) == [fog, dusk]
    assert IDS.findall(alice.search(style="cinematic")[1]) == [fox, dusk]
    assert IDS.findall(alice.search("lighthouse", style="cinematic")[1]) == [dusk]
    summary, grid = alice.search(resolution="2K")
    assert IDS.findall(grid) == [fox] and summary.startswith("1 image matching 2K")
    summary, grid = alice.search("zebra")
    assert IDS.findall(grid) == [] and summary == "No image matches “zebra”."
    assert IDS.findall(bob.search("lighthouse")[1]) == [bobs], "bob finds only his own"

    # The tab keeps its view (search and page) in its session: "Newer" redraws the same search.
    alice.search("lighthouse")
    summary, grid = alice.gallery("gallery_newer", [None])
    assert summary.startswith("2 images matching “lighthouse”") and IDS.findall(grid) == [fog, dusk]

    # Reuse settings (from the preview) fills the Generate tab with the image's settings.
    reused = alice.event(alice.fn("gallery_reuse"), [], event_data={"id": dusk})
    assert reused["success"] and reused["output"]["data"][:4] == ["A lighthouse at dusk", "cinematic", "16:9", "1K"]
    assert not bob.event(bob.fn("gallery_reuse"), [], event_data={"id": dusk})["success"]

    # Delete (after the page's confirmation) moves the image to the trash.
    urls = [f"/images/{dusk}/{v}/image-{dusk[:12]}.{'png' if v == 'png' else 'webp'}" for v in ("png", "webp", "thumb")]
    assert all(alice.http.get(u).status_code == 200 for u in urls)
    refused = bob.event(bob.fn("gallery_delete"), [None], event_data={"id": dusk})
    assert not refused["success"] and "not found" in json.dumps(refused).lower()
    summary, grid = alice.gallery("gallery_delete", [None], event_data={"id": dusk})
    assert summary.startswith("1 image matching “lighthouse”") and IDS.findall(grid) == [fog]
    assert [alice.http.get(u).status_code for u in urls] == [404, 404, 404], "a trashed image is refused"
    assert IDS.findall(alice.search()[1]) == [fox, fog]

    summary, grid = alice.search(show="Trash")
    assert summary.startswith("1 image in the trash.") and IDS.findall(grid) == [dusk]
    preview = f"/trash/{dusk}/thumb/image-{dusk[:12]}.webp"
    assert preview in grid and "Restore" in grid and "Download PNG" not in grid
    shown = alice.http.get(preview)
    assert shown.status_code == 200 and Image.open(io.BytesIO(shown.content)).size[0] > \
        Image.open(io.BytesIO(shown.content)).size[1]
    assert alice.http.get(f"/trash/{dusk}/png/image-{dusk[:12]}.png").status_code == 404, "no original from the trash"
    assert alice.http.get(f"/trash/{fog}/thumb/image-{fog[:12]}.webp").status_code == 404, "only trashed images"
    assert bob.http.get(preview).status_code == 404
    assert httpx.get(f"{served_app.url}{preview}").status_code == 401
    assert IDS.findall(bob.search(show="Trash")[1]) == []
    refused = bob.event(bob.fn("gallery_restore"), [None], event_data={"id": dusk})
    assert not refused["success"]

    summary, grid = alice.gallery("gallery_restore", [None], event_data={"id": dusk})
    assert summary.startswith("The trash is empty.") and IDS.findall(grid) == []
    assert IDS.findall(alice.search()[1]) == [fox, fog, dusk]
    assert all(alice.http.get(u).status_code == 200 for u in urls), "restored: served again"
    assert served_app.services.ledger.reconcile() == []


def _zip_of(response: httpx.Response) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(response.content))


def test_download_all_streams_a_zip_of_the_owners_full_size_pngs(served_app, people):
    alice, bob = people("alice"), people("bob")
    wide = alice.generate("a wide harbour", "cinematic", "16:9")
    square = alice.generate("a square tile", "photographic", "1:1")
    trashed = alice.generate("a draft", "cinematic", "1:1")
    bob.generate("bob's picture", "cinematic", "1:1")
    alice.gallery("gallery_delete", [None], event_data={"id": trashed})

    chunks = []
    with alice.http.stream("GET", "/images/download-all.zip") as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/zip"
        assert r.headers["content-disposition"].startswith('attachment; filename="image-studio-')
        assert "content-length" not in r.headers and r.headers.get("transfer-encoding") == "chunked", \
            "written while it is sent, not built first"
        chunks = list(r.iter_raw())
    assert len(chunks) > 2
    archive = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    assert archive.testzip() is None
    names = archive.namelist()
    assert len(names) == 2 and all(n.endswith(".png") for n in names)
    by_id = {gid: next(n for n in names if gid[:12] in n) for gid in (wide, square)}
    for gid, size in ((wide, (1024, 576)), (square, (1024, 1024))):
        data = archive.read(by_id[gid])
        image = Image.open(io.BytesIO(data))
        assert (image.format, image.size) == ("PNG", size), "the original at full size"
        assert data == alice.http.get(f"/images/{gid}/png").content

    bobs = _zip_of(bob.http.get("/images/download-all.zip"))
    assert len(bobs.namelist()) == 1 and not {wide[:12], square[:12]} & {n[18:30] for n in bobs.namelist()}
    assert httpx.get(f"{served_app.url}/images/download-all.zip").status_code == 401
    with httpx.Client(base_url=served_app.url, headers={"Authorization": f"Bearer {alice.key}"}) as api:
        assert len(_zip_of(api.get("/images/download-all.zip")).namelist()) == 2, "an API key works too"


def test_the_zip_is_written_while_the_originals_are_read(tmp_path):
    """The first bytes leave before the second original is even read: nothing is built in memory."""
    from services.studio.gallery import Original

    read = []

    def originals():
        for i in range(3):
            read.append(i)
            path = tmp_path / f"{i}.png"
            Image.new("RGB", (64 + i, 32)).save(path)
            yield Original(generation_id=f"{i:032x}", name=f"{i}.png", created_at=datetime.now(UTC), content=path)

    stream = zip_stream(originals())
    first = next(stream)
    assert first.startswith(b"PK\x03\x04") and read == [0]
    rest = b"".join(stream)
    archive = zipfile.ZipFile(io.BytesIO(first + rest))
    assert [Image.open(archive.open(f"{i}.png")).size for i in range(3)] == [(64, 32), (65, 32), (66, 32)]


@pytest.fixture
def shop_app(serve_app, database_url, fake_stripe):
    return shop(serve_app, database_url=database_url, stripe_url=fake_stripe.url, webhook_secret=SECRET)


def _webhook(app, fake_stripe, type_: str, obj: dict) -> None:
    payload, header = signed(fake_stripe.event(type_, obj), SECRET)
    r = httpx.post(f"{app.url}/webhooks/stripe", content=payload, headers={"Stripe-Signature": header})
    assert r.status_code == 200, r.text


def _history_rows(person: Person) -> list[str]:
    """The Account tab's history as the page shows it: one text per card, links kept as [text](href)."""
    components = {c["id"]: c for c in person.config["components"]}
    history = next(i for i, c in components.items() if c["props"].get("elem_id") == "account-history")
    dep = next(d for d in person.config["dependencies"]
               if history in d["outputs"] and any(t[1] == "load" for t in d["targets"]))
    message = person.event(dep["id"], [None] * len(dep["inputs"]))
    assert message["success"], message
    page = _value(message["output"]["data"][dep["outputs"].index(history)])
    cards = re.findall(r"<li[^>]*>(.*?)</li>", page)
    out = []
    for card in cards:
        card = re.sub(r'<a [^>]*href="([^"]+)"[^>]*>([^<]+)</a>', r"[\2](\1)", card)
        out.append(" | ".join(p for p in re.split(r"<[^>]+>", card) if p.strip()))
    return out


def test_history_rows_say_what_they_were_with_a_link_to_the_image(shop_app, fake_stripe):
    app = shop_app
    alice, bob = Person(app, "alice"), Person(app, "bob")
    try:
        gid = alice.generate("a lighthouse at dusk", "cinematic", "16:9")
        gone = alice.generate("a draft", "photographic", "1:1")
        app.services.studio.delete(user_id=alice.user.id, generation_id=gone)

        for product in ("pack_100", "basic_monthly"):
            url = app.services.billing.create_checkout(user=alice.user, product=product)
            session = fake_stripe.complete_checkout(url.rsplit("/", 1)[1])
            _webhook(app, fake_stripe, "checkout.session.completed", session)
            if product == "pack_100":
                pack_session = session
        _webhook(app, fake_stripe, "charge.refunded", fake_stripe.refund(pack_session["payment_intent"]))
        admin = app.services.accounts.create_user(email="admin@example.com", password="correct horse battery")
        app.services.admin.grant_credits(actor=admin, email=alice.email, amount=25,
                                         note="Sorry about the outage <b>yesterday</b>")

        rows = _history_rows(alice)
        assert len(rows) == 7, rows
        link = f"/images/{gid}/webp/image-{gid[:12]}.webp"
        expected = [
            ("Granted by an administrator", "+25", "Sorry about the outage <b>yesterday</b>"),
            ("Credits removed after a refund", "-100", "taken back from Starter pack"),
            ("Subscription", "+300", "Basic plan: credits for the new period"),
            ("Credit pack", "+100", "Starter pack"),
            ("Image generation", "-10", "photographic · 1K · 1:1 · in the trash"),
            ("Image generation", "-10", f"cinematic · 1K · 16:9 · [View image]({link})"),
            ("Free trial", "+40", None),
        ]
        for row, (what, delta, detail) in zip(rows, expected, strict=True):
            parts = row.split(" | ")
            assert parts[0] == what and parts[1] == delta, row
            if detail is not None:
                assert parts[2] == detail.replace("<", "&lt;").replace(">", "&gt;"), row
        assert "<b>" not in "".join(rows), "the note is shown as text"

        shown = alice.http.get(link)
        assert shown.status_code == 200 and Image.open(io.BytesIO(shown.content)).size == (1024, 576)
        assert bob.http.get(link).status_code == 404
        assert not [r for r in _history_rows(bob) if gid in r]
    finally:
        alice.close()
        bob.close()
