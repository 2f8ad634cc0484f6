"""The Generate tab in a real browser (Debian's chromium, driven by Playwright), against GPT Image
served by the fake OpenAI at a few seconds of latency: a person sees partial previews before the
final image, Ctrl+Enter generates, a refusal is a notice next to the button with no error badge and
the last image kept, Generate is disabled (with the reason) when the balance cannot pay, a session
ended in another tab sends the page to the sign-in page, and Back after signing out does not show the
app. Desktop (1280x900) and phone (390x844). Screenshots go to SCREENSHOT_DIR (default: tmp)."""

from __future__ import annotations

import contextlib
import time
import uuid

import pytest

from tests.e2e.browser import needs_chromium

VIEWPORTS = [{"width": 1280, "height": 900}, {"width": 390, "height": 844}]

pytestmark = needs_chromium

SHOWN = "(sel) => { const i = document.querySelector(sel); return !!i && i.complete && i.naturalWidth > 0; }"
ERROR_BADGES = ".error, .toast-body.error, [data-testid='error']"


def sign_up(page, app, email: str) -> None:
    page.goto(f"{app.url}/signup")
    page.fill("#email", email)
    page.fill("#password", "correct horse battery")
    page.click("button[type=submit]")
    page.get_by_text("40 credits").first.wait_for(timeout=60_000)


def visible_error_badges(page) -> list[str]:
    return [e.inner_text() for e in page.locator(ERROR_BADGES).all() if e.is_visible()]


@pytest.mark.parametrize("viewport", VIEWPORTS, ids=["desktop", "phone"])
def test_previews_then_the_image_then_refusals_inline(serve_app, fake_openai, browser, shots, viewport):
    app = serve_app(OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=fake_openai.url, IMAGE_PROVIDER="openai")
    fake_openai.latency = 4.5  # a frame at 1.5 s, another at 3 s, the image at 4.5 s
    name = "desktop" if viewport["width"] > 600 else "phone"
    page = browser.new_page(viewport=viewport)
    sign_up(page, app, f"previews-{uuid.uuid4().hex[:8]}@example.com")

    go = page.locator("#studio-generate")
    go.wait_for()
    if name == "phone":  # the form and Generate fit the first screen
        box = go.bounding_box()
        assert box["y"] + box["height"] <= viewport["height"], f"Generate is below the first screen: {box}"
        for label in ("Aspect ratio", "Resolution"):
            assert page.get_by_text(label, exact=True).first.bounding_box()["y"] < viewport["height"]
    default_style = app.services.catalog.style(app.services.catalog.default_style)
    assert page.locator("#studio-style input").input_value() == default_style.label
    assert page.get_by_text(default_style.description).is_visible(), "the description is shown below"
    assert page.evaluate("() => { const i = document.querySelector('#studio-style input');"
                         " return i.scrollWidth <= i.clientWidth; }"), "the style name is shown whole"
    page.screenshot(path=str(shots / f"generate-form-{name}.png"), full_page=True)

    page.get_by_label("Prompt").fill("a lighthouse at dusk")
    started = time.monotonic()
    page.get_by_label("Prompt").press("Control+Enter")  # the keyboard shortcut generates
    page.wait_for_function(SHOWN, arg="#studio-result img[src*='/previews/']", timeout=60_000)
    first_preview = time.monotonic() - started
    assert page.get_by_text("Preview 1 of 2").or_(page.get_by_text("Preview 2 of 2")).first.is_visible()
    assert not page.locator("#studio-result img[src*='/images/']").count(), "the preview came before the image"
    page.screenshot(path=str(shots / f"generate-preview-{name}.png"), full_page=False)

    page.wait_for_function(SHOWN, arg="#studio-result img[src*='/images/']", timeout=60_000)
    final_at = time.monotonic() - started
    assert first_preview < final_at
    assert page.evaluate("() => document.querySelector(\"#studio-result img[src*='/images/']\").naturalWidth") == 1024
    page.get_by_text("10 credits charged").first.wait_for()
    if name == "phone":  # the result is at the top of the screen after generating
        top = page.locator("#studio-result").bounding_box()["y"]
        assert -5 <= top < viewport["height"] / 3, f"the result is not at the top: y={top}"
    page.screenshot(path=str(shots / f"generate-image-{name}.png"), full_page=False)
    shown = page.locator("#studio-result img").get_attribute("src")

    # A refusal: a notice next to Generate, no error badge anywhere, the image stays as it was.
    page.get_by_label("Prompt").fill("")
    go.click()
    notice = page.locator("#studio-notice .studio-notice")
    notice.wait_for(timeout=30_000)
    assert "Please enter a prompt." in notice.inner_text()
    page.wait_for_timeout(500)
    assert visible_error_badges(page) == []
    assert page.locator("#studio-result img").get_attribute("src") == shown
    page.screenshot(path=str(shots / f"generate-refusal-{name}.png"), full_page=True)

    # 30 credits left: 4K (40) cannot be paid, Generate is off with the reason; 1K turns it on again.
    page.get_by_text("4K", exact=False).first.click()
    page.get_by_text("Not enough credits for a 4K image").wait_for(timeout=30_000)
    page.wait_for_function("() => document.querySelector('#studio-generate').disabled", timeout=30_000)
    page.screenshot(path=str(shots / f"generate-disabled-{name}.png"), full_page=True)
    page.get_by_text("1K", exact=False).first.click()
    page.wait_for_function("() => !document.querySelector('#studio-generate').disabled", timeout=30_000)
    page.close()


def test_a_session_ended_in_another_tab_sends_the_page_to_sign_in(serve_app, browser, shots):
    from playwright.sync_api import Error as PlaywrightError

    app = serve_app()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    first = context.new_page()
    sign_up(first, app, f"ended-{uuid.uuid4().hex[:8]}@example.com")
    second = context.new_page()
    second.goto(app.url)
    second.get_by_role("button", name="Sign out").click()
    second.wait_for_url("**/login?msg=signed_out", timeout=30_000)

    first.locator("#studio-generate").click()  # the next action in the first tab
    first.get_by_text("Your session ended - sign in again").wait_for(timeout=30_000)
    # The page leaves for the sign-in page on its own: a screenshot may meet the navigation.
    with contextlib.suppress(PlaywrightError):
        first.screenshot(path=str(shots / "session-ended.png"), timeout=5_000)
    first.wait_for_url("**/login?next=/", timeout=30_000)
    assert first.locator("#email").is_visible()

    # Back after signing out: the app page is not cached, so the server answers again — with the
    # landing page for a signed-out visitor at `/`, its Sign in button, not a broken studio.
    second.go_back()
    second.get_by_role("link", name="Sign in").first.wait_for(timeout=30_000)
    assert second.locator("#studio-generate").count() == 0
    context.close()


def test_arrow_keys_move_within_a_choice_group(serve_app, browser):
    """Gradio names every radio input apart, so the browser's own arrow keys did nothing: the page
    moves the choice itself, and the cost line follows."""
    app = serve_app()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_up(page, app, f"keys-{uuid.uuid4().hex[:8]}@example.com")
    checked = "() => [...document.querySelectorAll('input[type=radio]:checked')].map(i => i.value)"
    assert page.evaluate(checked) == ["1:1", "1K"]
    page.get_by_label("1:1 Square").focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function(f"() => ({checked})().includes('4:3')", timeout=30_000)
    page.get_by_label("1K · 10 credits").focus()
    page.keyboard.press("ArrowDown")
    page.wait_for_function(f"() => ({checked})().includes('2K')", timeout=30_000)
    page.get_by_text("This image costs 20 credits").first.wait_for(timeout=30_000)
    page.keyboard.press("ArrowLeft")
    page.wait_for_function(f"() => ({checked})().includes('1K')", timeout=30_000)
    assert page.evaluate(checked) == ["4:3", "1K"]
    page.close()
