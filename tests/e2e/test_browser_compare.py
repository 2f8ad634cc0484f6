"""The Compare tab in a real browser (Debian's chromium, Playwright) against GPT Image served by the
fake OpenAI with a few seconds of latency: a person picks three styles from the thumbnail wall, sees
the price, watches the cells fill (previews, then the images), uses one style (back to Generate,
filled in), saves a style of their own and finds it in the picker. Screenshots go to SCREENSHOT_DIR."""

from __future__ import annotations

import uuid

from tests.e2e.browser import needs_chromium
from tests.e2e.test_browser_generate import SHOWN, sign_up, visible_error_badges

pytestmark = needs_chromium


def test_compare_three_styles_use_one_and_save_a_style(serve_app, fake_openai, browser, shots):
    app = serve_app(OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=fake_openai.url, IMAGE_PROVIDER="openai")
    fake_openai.latency = 3.0  # a frame each second, then the image
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_up(page, app, f"compare-{uuid.uuid4().hex[:8]}@example.com")

    page.get_by_role("tab", name="Compare").click()
    page.locator("#compare-prompt textarea").fill("a lighthouse at dusk")
    wall = page.locator("#compare-picker")
    for name in ("photographic", "anime", "watercolor"):
        card = wall.locator(f'.sl-card[data-name="{name}"]')
        assert card.locator("img").evaluate("i => i.complete && i.naturalWidth > 0") or card.locator("img").is_visible()
        card.click()
        page.locator(f'#compare-picker .sl-card.sl-on[data-name="{name}"]').wait_for(timeout=20_000)
    page.get_by_text("3 images × 10 credits = 30 · you have 40").wait_for(timeout=20_000)
    page.screenshot(path=str(shots / "compare-picked.png"), full_page=True)

    page.locator("#compare-go").click()
    page.get_by_text("preview 1 of").first.wait_for(timeout=30_000)  # a cell shows its live preview
    page.screenshot(path=str(shots / "compare-filling.png"), full_page=True)
    for i in range(3):
        page.wait_for_function(SHOWN, arg=f"#compare-cell-{i} img", timeout=60_000)
    page.get_by_text("3 of 3 images made · 30 credits charged").wait_for(timeout=30_000)
    assert app.services.ledger.balance(app.services.accounts.get_user_by_email(
        page.evaluate("() => document.querySelector('.studio-user').innerText").split(" ")[0]).id).total == 10
    assert page.locator("#compare-cell-1 img").get_attribute("src").split("/images/")[1].endswith("webp/" +
        page.locator("#compare-cell-1 img").get_attribute("src").rsplit("/", 1)[1])
    assert page.get_by_role("link", name="Download PNG").count() == 3
    assert not visible_error_badges(page)
    page.screenshot(path=str(shots / "compare-done.png"), full_page=True)

    page.locator("#compare-use-1").click()  # anime: back to Generate with everything filled in
    page.locator("#studio-generate").wait_for(state="visible", timeout=20_000)
    page.wait_for_function("() => document.querySelector('#studio-style input').value === 'Anime'", timeout=20_000)
    assert page.locator("#studio-prompt textarea").input_value() == "a lighthouse at dusk"

    page.get_by_role("tab", name="Compare").click()
    page.locator("#my-styles .label-wrap").first.click()
    page.locator("#my-style-name textarea").fill("Foggy harbour")
    page.locator("#my-style-template textarea").fill("A foggy harbour scene of {prompt}, muted greys")
    page.locator("#my-style-save").click()
    card = page.locator('#compare-picker .sl-card[data-name="Foggy harbour"]')
    card.wait_for(timeout=20_000)
    assert "yours" in card.inner_text()
    card.click()
    page.locator('#compare-picker .sl-card.sl-on[data-name="Foggy harbour"]').wait_for(timeout=20_000)
    page.screenshot(path=str(shots / "compare-my-style.png"), full_page=True)

    # The saved style in the Generate tab's own list: the page's Generate uses it.
    page.get_by_role("tab", name="Generate").click()
    page.locator("#studio-style input").click()
    page.get_by_role("option", name="Foggy harbour").click()
    page.locator("#studio-prompt textarea").fill("a small boat")
    page.locator("#studio-generate").click()
    page.get_by_text("in the Foggy harbour style").wait_for(timeout=60_000)
    sent = [c.body.get("prompt") for c in fake_openai.calls("/v1/images/generations")]
    assert "A foggy harbour scene of a small boat, muted greys" in sent
    page.screenshot(path=str(shots / "compare-saved-style-in-generate.png"), full_page=True)
