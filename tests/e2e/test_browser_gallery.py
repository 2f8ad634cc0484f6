"""A person's gallery in a real browser (Debian's chromium, driven by Playwright), at desktop and phone
sizes: the grid keeps each image's shape, the preview shows the details beside the image and moves
with the arrow keys (Escape closes), search, Delete after a confirmation, restore from the trash,
Download all (a zip of the full-size PNGs), and the account history's link to the image.
Screenshots go to SCREENSHOT_DIR (default: the test's tmp folder)."""

from __future__ import annotations

import io
import re
import uuid
import zipfile

import pytest
from gradio_client import Client
from PIL import Image

from tests.e2e.browser import ARGS, CHROMIUM, needs_chromium

pytestmark = needs_chromium


def make_images(app, email: str) -> dict[str, str]:
    """Two images through the public API with the person's key: a 16:9 and a square one."""
    user = app.services.accounts.get_user_by_email(email)
    _, key = app.services.accounts.create_api_key(user_id=user.id, name="browser test")
    client = Client(app.url, headers={"Authorization": f"Bearer {key}"}, verbose=False)
    made = {}
    try:
        for prompt, style, ratio in (("a lighthouse at dusk", "cinematic", "16:9"),
                                     ("a red fox in the snow", "photographic", "1:1")):
            _, message, _ = client.predict(prompt, style, ratio, "1K", api_name="/generate")
            made[prompt] = message.split("/images/", 1)[1].split("/png", 1)[0]
    finally:
        client.close()
    return made


def open_tab(page, name: str) -> None:
    """Click a tab; on a narrow screen Gradio may list it under its "⋯" overflow menu."""
    tab = page.get_by_role("tab", name=name)
    if not tab.is_visible():
        page.locator(".overflow-menu > button").first.click()
        page.locator(".overflow-dropdown button", has_text=name).first.click()
    else:
        tab.click()


GRID_LOADED = ("n => { const i = [...document.querySelectorAll('#studio-gallery .sg-item img')];"
               " return i.length === n && i.every(x => x.complete && x.naturalWidth > 0); }")


def boxes(page) -> list[dict]:
    return page.evaluate("() => [...document.querySelectorAll('#studio-gallery .sg-item')].map(f => {"
                         " const r = f.getBoundingClientRect(), i = f.querySelector('img');"
                         " return {prompt: f.dataset.prompt, w: r.width, h: r.height,"
                         " nw: i.naturalWidth, nh: i.naturalHeight}; })")


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 900}, {"width": 390, "height": 844}],
                         ids=["desktop", "phone"])
def test_a_person_browses_searches_deletes_restores_and_downloads_the_gallery(serve_app, shots, viewport,
                                                                                tmp_path):
    from playwright.sync_api import expect, sync_playwright

    app = serve_app()
    email = f"gallery-{uuid.uuid4().hex[:8]}@example.com"
    name = "desktop" if viewport["width"] > 600 else "phone"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = browser.new_context(viewport=viewport, accept_downloads=True)
            page = context.new_page()
            page.goto(f"{app.url}/signup")
            page.fill("#email", email)
            page.fill("#password", "correct horse battery")
            page.click("button[type=submit]")
            page.get_by_text("40 credits").first.wait_for(timeout=60_000)
            made = make_images(app, email)

            # The grid: each thumbnail keeps its image's shape (nothing cropped to a square).
            open_tab(page, "Gallery")
            page.wait_for_function(GRID_LOADED, arg=2, timeout=60_000)
            page.get_by_text("2 images, newest first.").wait_for()
            shapes = {b["prompt"]: b for b in boxes(page)}
            wide, square = shapes["a lighthouse at dusk"], shapes["a red fox in the snow"]
            assert wide["w"] > wide["h"] * 1.6, wide
            assert abs(square["w"] - square["h"]) <= 2, square
            for b in (wide, square):
                assert abs(b["w"] / b["h"] - b["nw"] / b["nh"]) < 0.03, f"the box has the image's shape: {b}"
            assert page.evaluate("() => document.documentElement.scrollWidth") <= viewport["width"]
            page.screenshot(path=str(shots / f"gallery-grid-{name}.png"), full_page=True)

            # The preview: details beside (or, on a phone, below) the image; arrows move, Escape closes.
            lightbox = page.locator("#studio-gallery .sg-lightbox")
            page.locator("#studio-gallery .sg-item").first.click()
            expect(lightbox).to_be_visible()
            expect(lightbox.locator(".sg-prompt")).to_have_text("a red fox in the snow")
            expect(lightbox.locator("[data-field=size]")).to_have_text("1024 × 1024 px")
            expect(lightbox.locator("[data-field=credits]")).to_have_text("10")
            expect(lightbox.locator("[data-field=style]")).to_have_text("photographic")
            expect(lightbox.locator("[data-field=bytes]")).to_have_text(re.compile(r"^\d+(\.\d)? (KB|MB)$"))
            page.wait_for_function("() => { const i = document.querySelector('#studio-gallery .sg-full');"
                                   " return i.complete && i.naturalWidth === 1024; }")
            full = lightbox.locator(".sg-full").bounding_box()
            details = lightbox.locator(".sg-details").bounding_box()
            if name == "desktop":
                assert details["x"] >= full["x"] + full["width"] - 1, "the details sit beside the image"
                assert full["width"] > 500, "a large preview"
            else:
                assert details["y"] >= full["y"] + full["height"] - 1, "on a phone the details follow the image"
                assert full["width"] > 300
            page.screenshot(path=str(shots / f"gallery-preview-{name}.png"))
            page.keyboard.press("ArrowRight")
            expect(lightbox.locator(".sg-prompt")).to_have_text("a lighthouse at dusk")
            expect(lightbox.locator("[data-field=size]")).to_have_text("1024 × 576 px")
            expect(lightbox.locator(".sg-count")).to_have_text("2 of 2")
            page.keyboard.press("ArrowRight")  # the last one: stays
            expect(lightbox.locator(".sg-prompt")).to_have_text("a lighthouse at dusk")
            page.keyboard.press("ArrowLeft")
            expect(lightbox.locator(".sg-prompt")).to_have_text("a red fox in the snow")
            page.keyboard.press("Escape")
            expect(lightbox).to_be_hidden()

            # Search by prompt text.
            search = page.get_by_label("Search prompts")
            search.fill("lighthouse")
            search.press("Enter")
            page.get_by_text("1 image matching “lighthouse”").wait_for()
            page.wait_for_function(GRID_LOADED, arg=1)
            search.fill("")
            search.press("Enter")
            page.get_by_text("2 images, newest first.").wait_for()
            page.wait_for_function(GRID_LOADED, arg=2)

            # Delete asks first, then moves the image to the trash.
            page.locator("#studio-gallery .sg-item[data-prompt='a lighthouse at dusk']").click()
            lightbox.get_by_role("button", name="Delete").click()
            confirm = lightbox.locator(".sg-confirm")
            expect(confirm).to_be_visible()
            expect(confirm).to_contain_text("Move this image to the trash? You can restore it from the Trash for 30 days.")
            page.screenshot(path=str(shots / f"gallery-delete-confirm-{name}.png"))
            confirm.get_by_role("button", name="Cancel").click()
            expect(confirm).to_be_hidden()
            lightbox.get_by_role("button", name="Delete").click()
            confirm.get_by_role("button", name="Move to trash").click()
            page.get_by_text("1 image, newest first.").wait_for()
            page.wait_for_function(GRID_LOADED, arg=1)
            assert [b["prompt"] for b in boxes(page)] == ["a red fox in the snow"]
            gone = made["a lighthouse at dusk"]
            assert page.request.get(f"{app.url}/images/{gone}/webp").status == 404

            # The trash: its preview, then Restore.
            page.get_by_label("Trash", exact=True).check()
            page.get_by_text("1 image in the trash.").wait_for()
            page.wait_for_function(GRID_LOADED, arg=1)
            page.screenshot(path=str(shots / f"gallery-trash-{name}.png"), full_page=True)
            page.locator("#studio-gallery .sg-item").first.click()
            expect(lightbox.locator(".sg-prompt")).to_have_text("a lighthouse at dusk")
            lightbox.get_by_role("button", name="Restore").click()
            page.get_by_text("The trash is empty.").wait_for()
            page.get_by_label("Gallery", exact=True).check()
            page.get_by_text("2 images, newest first.").wait_for()
            page.wait_for_function(GRID_LOADED, arg=2)
            assert page.request.get(f"{app.url}/images/{gone}/webp").status == 200

            # Download all: a zip of the PNG originals at full size.
            with page.expect_download() as downloading:
                page.get_by_role("link", name="Download all").click()
            target = tmp_path / f"all-{name}.zip"
            downloading.value.save_as(target)
            with zipfile.ZipFile(target) as archive:
                sizes = sorted(Image.open(io.BytesIO(archive.read(n))).size for n in archive.namelist())
                assert all(n.endswith(".png") for n in archive.namelist())
            assert sizes == [(1024, 576), (1024, 1024)]

            # The account history: each generation with its style, resolution and a link to the image.
            open_tab(page, "Account")
            history = page.locator("#account-history")
            row = history.locator("li", has_text="cinematic · 1K · 16:9")
            expect(row).to_contain_text("Image generation")
            expect(row).to_contain_text("-10")
            link = row.get_by_role("link", name="View image")
            assert link.get_attribute("href") == f"/images/{gone}/webp/image-{gone[:12]}.webp"
            box = row.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], "the row fits the screen"
            assert page.evaluate("() => document.documentElement.scrollWidth") <= viewport["width"]
            page.screenshot(path=str(shots / f"account-history-{name}.png"), full_page=True)
            with context.expect_page() as opened:
                link.click()
            image_page = opened.value
            image_page.wait_for_load_state()
            assert image_page.evaluate("() => document.images[0] && document.images[0].naturalWidth") == 1024
        finally:
            browser.close()
