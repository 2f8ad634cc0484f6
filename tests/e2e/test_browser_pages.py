"""The pages a visitor meets, in a real browser (Debian's chromium, driven by Playwright), at desktop
and phone sizes: the landing page → sign up → the studio's header and tabs → Pricing (Buy disabled
when payments are off; with the fake Stripe, a pack bought and its credits shown) → the API page.
Every request the browser makes is recorded: none leaves 127.0.0.1 (no web font, no CDN).
Screenshots go to SCREENSHOT_DIR (default: the test's tmp folder)."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.e2e.browser import needs_chromium
from tests.e2e.conftest import shop

VIEWPORTS = [pytest.param({"width": 1280, "height": 900}, id="desktop"),
             pytest.param({"width": 390, "height": 844}, id="phone")]
TABS = ("Generate", "Compare", "Gallery", "Pricing", "Account")
PASSWORD = "correct horse battery"

pytestmark = needs_chromium


def open_page(browser, app, viewport):
    """A page that records every URL it requests that is not the app's own."""
    page = browser.new_page(viewport=viewport)
    page.outside = []
    page.on("request", lambda r: None if r.url.startswith((app.url, "data:", "blob:")) else page.outside.append(r.url))
    return page


def sign_up_from_landing(page, app, email: str) -> None:
    page.goto(f"{app.url}/")
    page.get_by_role("heading", name="Create images from a sentence").wait_for()
    trial = app.settings.trial_credits
    page.get_by_role("link", name=f"Sign up — {trial} free credits").click()
    page.wait_for_url("**/signup")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.get_by_text(f"{trial} credits").first.wait_for(timeout=60_000)


def overlaps(a: dict, b: dict) -> bool:
    return not (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
                or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_landing_sign_up_pricing_without_payments_and_the_api_page(serve_app, browser, shots, viewport, request):
    app = serve_app()
    name = request.node.callspec.id
    page = open_page(browser, app, viewport)
    email = f"visitor-{uuid.uuid4().hex[:10]}@example.com"

    page.goto(f"{app.url}/")
    page.get_by_role("heading", name="Create images from a sentence").wait_for()
    assert page.get_by_text(f"New accounts get {app.settings.trial_credits} free credits").is_visible()
    page.wait_for_function("() => [...document.querySelectorAll('.showcase img')].length > 0 && "
                           "[...document.querySelectorAll('.showcase img')].every(i => i.complete && i.naturalWidth > 0)")
    for pack in app.services.pricing.packs:
        assert page.get_by_text(pack.display_price, exact=True).first.is_visible()
    page.screenshot(path=str(shots / f"pages-landing-{name}.png"), full_page=True)
    pages_font = page.evaluate("() => getComputedStyle(document.body).fontFamily")
    pages_accent = page.evaluate("() => getComputedStyle(document.querySelector('.cta .button')).backgroundColor")

    sign_up_from_landing(page, app, email)
    # The header: the email never sits on the balance; every tab is on screen, none behind "⋯".
    user_box = page.get_by_text(email).first.bounding_box()
    balance_box = page.locator(".studio-balance").get_by_text(f"{app.settings.trial_credits} credits").bounding_box()
    assert user_box and balance_box and not overlaps(user_box, balance_box), (user_box, balance_box)
    assert user_box["x"] + user_box["width"] <= viewport["width"]
    for tab in TABS:
        assert page.get_by_role("tab", name=tab, exact=True).is_visible(), tab
    page.screenshot(path=str(shots / f"pages-studio-{name}.png"))
    # The same look as the server pages: the font stack and the accent of the primary button.
    app_font = page.evaluate("() => getComputedStyle(document.querySelector('.gradio-container')).fontFamily")
    assert pages_font.startswith("ui-sans-serif, system-ui") and app_font.startswith("ui-sans-serif, system-ui")
    primary = page.get_by_role("button", name="Generate", exact=True)
    assert primary.evaluate("b => getComputedStyle(b).backgroundColor") == pages_accent == "rgb(109, 74, 255)"

    page.get_by_role("tab", name="Pricing", exact=True).click()
    page.get_by_text("Payments are off on this instance").wait_for()
    buys = page.get_by_role("button", name=re.compile(r"^(Buy |Subscribe to )"))
    assert buys.count() == len(app.services.pricing.packs) + len(app.services.pricing.plans)
    assert all(buys.nth(i).is_disabled() for i in range(buys.count()))
    assert not page.get_by_role("button", name="Manage subscription").is_visible()
    assert page.get_by_text("★ Best value").first.is_visible()
    assert page.get_by_text("$0.033 per credit · $0.33 per 1K image").first.is_visible()
    assert not page.get_by_text("Error", exact=True).count()
    page.screenshot(path=str(shots / f"pages-pricing-off-{name}.png"), full_page=True)

    page.locator(".studio-footer").get_by_role("link", name="API").click()
    page.wait_for_url("**/api")
    assert page.get_by_text("Authorization: Bearer YOUR_API_KEY", exact=True).is_visible()
    assert page.get_by_text(app.services.catalog.default_style, exact=True).first.is_visible()
    page.screenshot(path=str(shots / f"pages-api-{name}.png"), full_page=True)
    assert page.outside == [], f"requests left the machine: {page.outside}"


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_a_pack_bought_on_the_pricing_tab_shows_its_credits(serve_app, browser, shots, viewport, fake_stripe,
                                                             request):
    app = shop(serve_app, database_url=None, stripe_url=fake_stripe.url, webhook_secret="whsec_pages")
    name = request.node.callspec.id
    page = open_page(browser, app, viewport)
    pack = app.services.pricing.packs[0]
    trial = app.settings.trial_credits

    sign_up_from_landing(page, app, f"buyer-{uuid.uuid4().hex[:10]}@example.com")
    page.get_by_role("tab", name="Pricing", exact=True).click()
    page.get_by_text("You have no subscription").wait_for()
    assert not page.get_by_text("Payments are off").count()
    assert not page.get_by_role("button", name="Manage subscription").is_visible()
    buy = page.get_by_role("button", name=f"Buy {pack.credits:,} credits")
    assert buy.is_enabled()
    buy.click()
    link = page.get_by_role("link", name=re.compile(f"Continue to checkout: {re.escape(pack.name)}"))
    link.wait_for(timeout=30_000)
    page.screenshot(path=str(shots / f"pages-pricing-checkout-{name}.png"), full_page=True)

    # The customer pays on (the fake) Stripe's page, which sends the browser back to the app.
    session_id = link.get_attribute("href").rsplit("/pay/", 1)[1]
    fake_stripe.complete_checkout(session_id)
    page.goto(f"{app.url}/billing/success?session_id={session_id}")
    page.get_by_text("Thank you! Your payment was received").first.wait_for(timeout=30_000)
    page.get_by_role("link", name="Back to the studio").click()  # the result page, then the studio
    page.locator(".studio-balance").get_by_text(f"{trial + pack.credits} credits").wait_for(timeout=30_000)
    page.screenshot(path=str(shots / f"pages-paid-{name}.png"), full_page=True)
    assert page.outside == [], f"requests left the machine: {page.outside}"
