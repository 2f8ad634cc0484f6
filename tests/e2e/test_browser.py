"""A person in a real browser (Debian's chromium, driven by Playwright): sign up, generate, see the
image and its thumbnail come from the owner-checked route, sign out with the page's own button.
Screenshots go to SCREENSHOT_DIR (default: the test's tmp folder) for a human to look at."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.browser import ARGS, CHROMIUM, needs_chromium

pytestmark = needs_chromium


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 900}, {"width": 390, "height": 844}],
                         ids=["desktop", "phone"])
def test_a_person_generates_sees_the_image_and_signs_out(serve_app, shots, viewport):
    from playwright.sync_api import sync_playwright

    app = serve_app()
    email = f"person-{uuid.uuid4().hex[:8]}@example.com"
    name = "desktop" if viewport["width"] > 600 else "phone"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport=viewport)
            page.goto(f"{app.url}/signup")
            page.fill("#email", email)
            page.fill("#password", "correct horse battery")
            page.click("button[type=submit]")
            page.get_by_text("40 credits").first.wait_for(timeout=60_000)

            page.get_by_label("Prompt").fill("a lighthouse at dusk")
            page.get_by_role("button", name="Generate", exact=True).click()
            image = page.locator("img[src*='/images/']").first
            image.wait_for(timeout=120_000)
            page.wait_for_function("() => { const i = document.querySelector(\"img[src*='/images/']\");"
                                   " return i && i.complete && i.naturalWidth > 0; }", timeout=60_000)
            assert image.get_attribute("src").startswith(f"{app.url}/images/")
            assert page.evaluate("() => document.querySelector(\"img[src*='/images/']\").naturalWidth") == 1024
            page.get_by_text("10 credits charged").first.wait_for()
            page.screenshot(path=str(shots / f"generate-{name}.png"), full_page=True)

            page.get_by_role("tab", name="Gallery").click()
            page.wait_for_function("() => [...document.querySelectorAll('img')]"
                                   ".some(i => i.src.includes('/thumb/') && i.naturalWidth > 0)", timeout=60_000)
            page.get_by_text("1 image, newest first.").wait_for()
            page.screenshot(path=str(shots / f"gallery-{name}.png"), full_page=True)

            page.get_by_role("button", name="Sign out").click()
            page.wait_for_url("**/login?msg=signed_out", timeout=30_000)
            assert page.get_by_text("You are signed out.").is_visible()
            page.goto(app.url)  # signed out, `/` is the landing page
            page.get_by_role("link", name="Sign in").first.wait_for()
        finally:
            browser.close()
