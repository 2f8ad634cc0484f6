"""A person in a real browser (Debian's chromium, Playwright) clicks "Sign in with ACME ID" on the
sign-in page, goes through the fake provider and lands in the studio, signed in, with the trial.
Screenshots go to SCREENSHOT_DIR (default: the test's tmp folder)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from tests.e2e.browser import ARGS, CHROMIUM, needs_chromium
from tests.e2e.test_oidc import oidc_settings
from tests.fakes.oidc_server import FakeOIDC

pytestmark = needs_chromium


def test_the_provider_button_signs_a_person_in(serve_app, tmp_path):
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with FakeOIDC() as provider:
        app = serve_app(**oidc_settings(provider))
        email = f"sso-{uuid.uuid4().hex[:8]}@example.com"
        provider.person = {"sub": f"sub-{uuid.uuid4().hex}", "email": email, "email_verified": True}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(f"{app.url}/")  # not signed in: the sign-in page
                button = page.get_by_role("button", name="Sign in with ACME ID")
                button.wait_for(timeout=30_000)
                page.screenshot(path=str(shots / "oidc-sign-in-page.png"), full_page=True)
                button.click()
                page.get_by_text("40 credits").first.wait_for(timeout=60_000)
                page.get_by_text(email).first.wait_for(timeout=30_000)
                assert page.url.rstrip("/") == app.url
                page.screenshot(path=str(shots / "oidc-signed-in.png"), full_page=True)
                cookies = {c["name"] for c in page.context.cookies()}
                assert "studio_session" in cookies

                # the Account tab shows this device and the linked provider
                page.get_by_role("tab", name="Account").click()
                page.get_by_text("Signed-in devices").first.click()
                page.get_by_text("this device").filter(visible=True).first.wait_for(timeout=30_000)
                page.get_by_text("Chrome on Linux").filter(visible=True).first.wait_for(timeout=30_000)
                page.get_by_text("Sign-in methods").first.click()
                page.get_by_text("You sign in with ACME ID.").filter(visible=True).first.wait_for(timeout=30_000)
                page.get_by_text("ACME ID").filter(visible=True).first.wait_for(timeout=30_000)
                page.screenshot(path=str(shots / "oidc-account-tab.png"), full_page=True)
            finally:
                browser.close()
