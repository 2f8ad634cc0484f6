"""The zh-CN walk in a real browser (Debian's chromium): landing → sign up → generate → pricing,
with screenshots, and no English left on those screens except the allowed brand and technical
names (and what the user typed). Then the switch: an English browser that picks 简体中文 gets the
studio in Chinese, and keeps it after signing out and in again."""

from __future__ import annotations

import re
import uuid

from tests.e2e.browser import needs_chromium

pytestmark = needs_chromium
PASSWORD = "correct horse battery"
# Names that stay as they are in every language: the brand, products and formats, key names, the
# resolutions and units the catalog names, and the switch's "English".
ALLOWED = ["Image Studio", "GPT Image", "OPENAI_API_KEY", "Ctrl+Enter", "Ctrl", "Enter", "WebP", "PNG", "API",
           "Stripe", "WeCom", "English", "US$", "USD", "support@example.com", "UTC"]
ENGLISH = re.compile(r"[A-Za-z]{2,}(?:[ '’-][A-Za-z]+)*")


def english_left(page, *also_allowed: str) -> list[str]:
    """The runs of Latin letters in the visible text once the allowed names are taken out."""
    text = page.evaluate("() => document.body.innerText")
    for word in sorted([*ALLOWED, *also_allowed], key=len, reverse=True):
        text = text.replace(word, " ")
    return sorted(set(ENGLISH.findall(text)))


def test_the_zh_cn_walk_has_no_english(serve_app, browser, shots, tmp_path):
    from PIL import Image

    qr = tmp_path / "wecom.png"
    Image.new("RGB", (96, 96), "black").save(qr)
    app = serve_app(SUPPORT_QR_IMAGE=str(qr), SUPPORT_HOURS="9:00–18:00")
    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    email = f"zh-{uuid.uuid4().hex[:8]}@example.com"
    trial = app.settings.trial_credits

    page.goto(f"{app.url}/")
    page.get_by_role("heading", name="一句话生成图片").wait_for()
    page.screenshot(path=str(shots / "i18n-zh-landing.png"), full_page=True)
    assert english_left(page) == []

    page.get_by_role("link", name=f"注册 — 赠送 {trial} 个免费点数").click()
    page.wait_for_url("**/signup")
    page.get_by_role("heading", name="创建账户").wait_for()
    assert english_left(page) == []
    page.screenshot(path=str(shots / "i18n-zh-signup.png"), full_page=True)
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")

    page.locator(".studio-balance").get_by_text(f"{trial} 个点数").wait_for(timeout=60_000)
    page.get_by_role("tab", name="生成").wait_for()
    page.get_by_text("这张图片需要").wait_for(timeout=30_000)
    assert english_left(page, email) == []
    page.screenshot(path=str(shots / "i18n-zh-studio.png"), full_page=True)

    page.fill("#studio-prompt textarea", "雨中的灯塔")
    page.locator("#studio-generate").click()
    page.locator("#studio-message").get_by_text("完成").wait_for(timeout=120_000)
    page.locator(".studio-balance").get_by_text(f"{trial - 10} 个点数").wait_for(timeout=30_000)
    assert english_left(page, email) == []
    page.screenshot(path=str(shots / "i18n-zh-generated.png"), full_page=True)

    # The gallery: filters, summary, pages and the preview's details and actions, all in Chinese.
    page.get_by_role("tab", name="图库").click()
    page.locator(".sg-summary").get_by_text("共 1 张图片，最新的在前。").wait_for(timeout=30_000)
    page.get_by_text("第 1 页，共 1 页").wait_for()
    assert english_left(page, email) == []
    page.locator("#studio-gallery .sg-item").first.click()
    lightbox = page.locator("#studio-gallery .sg-lightbox")
    lightbox.get_by_role("button", name="沿用设置").wait_for()
    assert lightbox.locator(".sg-count").inner_text() == "第 1 张，共 1 张"
    assert "年" in lightbox.locator("[data-field=date]").inner_text()
    assert english_left(page, email, "KB", "MB", "px") == []
    page.screenshot(path=str(shots / "i18n-zh-gallery.png"), full_page=True)
    page.keyboard.press("Escape")

    # The account: balance by bucket, the history's rows and pages.
    page.get_by_role("tab", name="账户").click()
    page.get_by_text(f"可用点数：{trial - 10}").wait_for(timeout=30_000)
    page.locator("#account-history").get_by_text("生成图片").first.wait_for()
    assert english_left(page, email) == []
    page.screenshot(path=str(shots / "i18n-zh-account.png"), full_page=True)

    # Compare: the style wall, the cost line, My styles (its template label shows {prompt} itself).
    page.get_by_role("tab", name="对比").click()
    page.locator("#compare-cost").get_by_text("最多选择").wait_for(timeout=30_000)
    page.locator("#my-styles").get_by_text("我的风格").first.click()
    page.get_by_text("模板：您的提示词会放在 {prompt} 处").wait_for(timeout=30_000)
    assert english_left(page, email, "{prompt}") == []  # the template's placeholder, typed as it is
    page.screenshot(path=str(shots / "i18n-zh-compare.png"), full_page=True)

    page.get_by_role("tab", name="价格").click()
    page.get_by_text("点数包").first.wait_for(timeout=30_000)
    page.get_by_role("button", name="购买 100 个点数").wait_for()
    page.locator(".pricing-support img.support-qr").wait_for()  # the way to a person, on the money page
    page.get_by_text("扫码联系客服").wait_for()
    assert english_left(page, email) == []
    page.screenshot(path=str(shots / "i18n-zh-pricing.png"), full_page=True)
    context.close()


def test_the_switch_turns_an_english_browser_chinese_and_the_choice_survives_sign_in(serve_app, browser, shots):
    app = serve_app()
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    email = f"switch-{uuid.uuid4().hex[:8]}@example.com"

    page.goto(f"{app.url}/signup")
    page.get_by_role("heading", name="Create your account").wait_for()
    page.get_by_role("link", name="简体中文").click()
    page.get_by_role("heading", name="创建账户").wait_for()
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.get_by_role("tab", name="价格").wait_for(timeout=60_000)
    page.get_by_role("button", name="退出登录").wait_for(timeout=30_000)  # the header, in the chosen language
    assert english_left(page, email) == []

    context.clear_cookies()  # another visit, English by the browser: signing in brings the choice back
    page.goto(f"{app.url}/login")
    page.get_by_role("heading", name="Sign in").wait_for()
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.get_by_role("button", name="退出登录").wait_for(timeout=60_000)
    page.screenshot(path=str(shots / "i18n-switch-studio.png"), full_page=True)

    page.get_by_role("link", name="English").click()  # the header's switch
    page.get_by_role("tab", name="Pricing").wait_for(timeout=60_000)
    context.close()
