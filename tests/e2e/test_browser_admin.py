"""The Admin tab in a real browser (Debian's chromium): a member does not see it; an admin opens
it, finds a member by email and disables them; the member's open page is refused at once."""

from __future__ import annotations

import uuid

from tests.e2e.browser import needs_chromium

pytestmark = needs_chromium


def signed_in_page(browser, app, email: str):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{app.url}/login")
    page.fill("#email", email)
    page.fill("#password", "right password")
    page.click("button[type=submit]")
    page.get_by_text(email).first.wait_for(timeout=60_000)
    return page


def test_the_admin_tab_for_admins_only(serve_app, browser, shots):
    app = serve_app(MONTHLY_ALLOWANCE_CREDITS="25")
    accounts = app.services.accounts
    boss = f"boss-{uuid.uuid4().hex[:6]}@example.com"
    member = f"member-{uuid.uuid4().hex[:6]}@example.com"
    accounts.create_user(email=boss, password="right password", admin=True)
    accounts.create_user(email=member, password="right password")

    theirs = signed_in_page(browser, app, member)
    theirs.get_by_role("tab", name="Account").click()
    theirs.get_by_text("Team allowance (monthly): 25").first.wait_for(timeout=30_000)
    assert theirs.get_by_role("tab", name="Admin").count() == 0

    page = signed_in_page(browser, app, boss)
    page.get_by_role("tab", name="Admin").click()
    page.screenshot(path=str(shots / "admin-tab-open.png"), full_page=True)
    page.get_by_text(member).filter(visible=True).first.wait_for(timeout=30_000)
    page.get_by_label("Search by email").fill(member)
    page.get_by_role("button", name="Search").click()
    page.get_by_label("Member email").fill(member)
    page.get_by_role("button", name="Disable member").click()
    page.get_by_text(f"{member} is disabled").wait_for(timeout=30_000)
    page.get_by_text("disabled", exact=True).filter(visible=True).first.wait_for(timeout=30_000)
    page.screenshot(path=str(shots / "admin-tab.png"), full_page=True)

    theirs.get_by_role("tab", name="Gallery").click()  # their next request
    theirs.get_by_text("sign in again", exact=False).first.wait_for(timeout=30_000)
