"""Reference images in a real browser (Debian's chromium, driven by Playwright; issue #11): a person
adds a picture on the Generate tab, sees its thumbnail, opens "Edit a region", paints over part of
it, generates (offline engine: the painted region changes, the rest stays), and finds the result in
the gallery with the reference shown in its details. Screenshots go to SCREENSHOT_DIR (default: tmp)."""

from __future__ import annotations

import uuid

from sqlmodel import select

from models.generation import Generation
from tests import pictures
from tests.e2e.browser import needs_chromium

pytestmark = needs_chromium

LOADED = "(sel) => { const i = document.querySelector(sel); return !!i && i.complete && i.naturalWidth > 0; }"


def select_tab(page, name: str) -> None:
    """Click a tab until it is the selected one (a handler switching tabs may still be on its way)."""
    tab = page.get_by_role("tab", name=name)
    for _ in range(10):
        tab.click()
        page.wait_for_timeout(1_000)
        if tab.get_attribute("aria-selected") == "true":
            return
    raise AssertionError(f"the {name} tab could not be selected")


def open_preview(page) -> None:
    """Open the gallery's first image; the tab redraws its grid when shown, which closes a preview
    opened before the redraw arrived, so try again until it stays open."""
    page.wait_for_function(LOADED, arg="#studio-gallery .sg-item img", timeout=30_000)
    for _ in range(5):
        page.locator("#studio-gallery .sg-item").first.click()
        try:
            page.locator("#studio-gallery .sg-lightbox:not([hidden])").wait_for(timeout=3_000)
            page.wait_for_timeout(3_000)
            if page.locator("#studio-gallery .sg-lightbox:not([hidden])").count():
                return
        except Exception:  # noqa: BLE001 - a redraw closed it: again
            continue
    raise AssertionError("the gallery preview did not stay open")


def test_upload_a_reference_paint_a_mask_generate_and_see_it_in_the_gallery(serve_app, browser, shots, tmp_path):
    app = serve_app()
    reference = tmp_path / "harbour.jpg"
    reference.write_bytes(pictures.jpeg_with_gps(640, 480, colour=(30, 90, 200)))
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(f"{app.url}/signup")
    page.fill("#email", f"refs-{uuid.uuid4().hex[:8]}@example.com")
    page.fill("#password", "correct horse battery")
    page.click("button[type=submit]")
    page.get_by_text("40 credits").first.wait_for(timeout=60_000)

    page.get_by_label("Prompt").fill("the harbour in autumn colours")
    page.get_by_text("Reference images (up to 8)").first.click()
    page.locator("#studio-ref-picker input[type=file]").set_input_files(str(reference))
    page.wait_for_function(LOADED, arg="#studio-ref-thumbs .sr-item img", timeout=30_000)
    assert page.locator("#studio-ref-thumbs figcaption").inner_text() == "1. harbour.jpg"
    page.get_by_text("This image costs 10 credits").first.wait_for()

    page.locator("#studio-edit-region").click()
    canvas = page.locator("#studio-editor canvas").first
    canvas.wait_for(timeout=30_000)
    page.wait_for_timeout(500)  # the editor draws the background first
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.35, box["y"] + box["height"] * 0.4)
    page.mouse.down()
    for step in range(12):
        page.mouse.move(box["x"] + box["width"] * (0.35 + step * 0.02), box["y"] + box["height"] * 0.45, steps=2)
    page.mouse.up()
    page.screenshot(path=str(shots / "references-painted.png"), full_page=True)

    page.locator("#studio-generate").click()
    page.wait_for_function(LOADED, arg="#studio-result img[src*='/images/']", timeout=60_000)
    page.get_by_text("from 1 reference image (a painted region changed)").first.wait_for(timeout=30_000)
    page.screenshot(path=str(shots / "references-result.png"), full_page=True)
    with app.services.db.session() as s:
        made = s.exec(select(Generation)).one()
    assert made.masked and made.reference_images[0]["name"] == "harbour.jpg" and made.cost == 10
    stored = page.request.get(f"{app.url}/images/{made.id}/ref0.jpg")
    assert stored.status == 200 and not pictures.has_gps(stored.body())
    # After generating, the references are the stored copies (the upload itself is gone).
    page.wait_for_function(LOADED, arg=f"#studio-ref-thumbs img[src*='/images/{made.id}/ref0.jpg']", timeout=30_000)

    select_tab(page, "Gallery")
    open_preview(page)
    page.wait_for_function(LOADED, arg="#studio-gallery .sg-refs img", timeout=30_000)
    assert page.locator("#studio-gallery .sg-refs img").get_attribute("alt") == "harbour.jpg"
    assert page.get_by_text("Made from these reference images").is_visible()
    page.screenshot(path=str(shots / "references-gallery.png"), full_page=False)

    # "Use as reference" puts the stored image into the Generate tab's references (no upload).
    page.locator("#studio-gallery .sg-use").click()
    page.wait_for_function(LOADED, arg=f"#studio-ref-thumbs img[src*='/images/{made.id}/thumb/']", timeout=30_000)
    assert page.locator("#studio-ref-thumbs .sr-item").count() == 2
