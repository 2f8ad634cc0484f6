"""Signed-in devices on the Account tab, through the served UI's own events: the list (a short
browser label, never an IP), sign out one device, sign out everywhere else; a revoked session is
refused on its next request, and nobody can sign out another user's session."""

from __future__ import annotations

import uuid

import pytest
from sqlmodel import select

from models.user import UserSession
from services.errors import NotFound
from tests.e2e.conftest import csrf_of, queue_event

PASSWORD = "correct horse battery"
FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0"
SAFARI_IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                 "Version/18.0 Mobile/15E148 Safari/604.1")
CHROME_WINDOWS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/131.0.0.0 Safari/537.36")


@pytest.fixture
def app(serve_app, database_url):
    return serve_app(database_url=database_url)


def browser_signed_up(app, email: str, user_agent: str):
    client = app.client(follow_redirects=False, headers={"user-agent": user_agent})
    page = client.get("/signup")
    assert client.post("/signup", data={"email": email, "password": PASSWORD, "csrf": csrf_of(page)}).status_code == 303
    return client


def browser_signed_in(app, email: str, user_agent: str):
    client = app.client(follow_redirects=False, headers={"user-agent": user_agent})
    page = client.get("/login")
    assert client.post("/login", data={"email": email, "password": PASSWORD, "csrf": csrf_of(page)}).status_code == 303
    return client


def event(client, api_name: str, data: list) -> dict:
    """One event of the page open in `client` (one Gradio session per browser, as a real page)."""
    config = client.get("/config").json()
    fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == api_name)
    page = client.__dict__.setdefault("page_session", uuid.uuid4().hex)
    return queue_event(client, fn_index, data, session_hash=page)


def devices(client) -> tuple[list[list], list]:
    """The Account tab's device table and the choices of its "Sign out a device" dropdown."""
    done = event(client, "render_devices", [])
    assert done["success"], done
    table, dropdown = done["output"]["data"][:2]
    return table["data"], dropdown["choices"]


def signed_in(app, client) -> bool:
    """The studio answers this browser (a signed-out one gets the landing page at `/`, also a 200)."""
    return client.get("/config").status_code == 200


def test_list_sign_out_one_and_everywhere_else(app):
    email = f"devices-{uuid.uuid4().hex[:8]}@example.com"
    laptop = browser_signed_up(app, email, FIREFOX_LINUX)
    phone = browser_signed_in(app, email, SAFARI_IPHONE)
    office = browser_signed_in(app, email, CHROME_WINDOWS)

    rows, choices = devices(laptop)
    assert sorted(r[0] for r in rows) == ["Chrome on Windows", "Firefox on Linux", "Safari on iPhone"]
    assert [r[3] for r in rows if r[0] == "Firefox on Linux"] == ["this device"]
    assert not any("127.0.0.1" in str(cell) for row in rows for cell in row), "no IP is shown"
    assert len(choices) == 2, "the current device is not offered for signing out"
    phone_id = next(value for label, value in choices if label.startswith("Safari on iPhone"))

    done = event(laptop, "sign_out_device", [phone_id])
    assert done["success"], done
    assert not signed_in(app, phone), "the revoked session is refused on its next request"
    assert phone.get("/config").status_code == 401
    assert signed_in(app, office) and signed_in(app, laptop)

    done = event(laptop, "sign_out_other_devices", [])
    assert done["success"] and "1 session" in str(done["output"]["data"][2])
    assert not signed_in(app, office)
    assert signed_in(app, laptop)
    rows, choices = devices(laptop)
    assert [r[0] for r in rows] == ["Firefox on Linux"] and choices == []


def test_nobody_signs_out_another_users_session(app):
    alice = browser_signed_up(app, f"alice-{uuid.uuid4().hex[:8]}@example.com", FIREFOX_LINUX)
    bob = browser_signed_up(app, f"bob-{uuid.uuid4().hex[:8]}@example.com", CHROME_WINDOWS)
    accounts = app.services.accounts
    alice_id = accounts.user_for_session(alice.cookies["studio_session"]).id
    bob_id = accounts.user_for_session(bob.cookies["studio_session"]).id
    with app.services.db.session() as s:
        bob_session = s.exec(select(UserSession.id).where(UserSession.user_id == bob_id)).one()
    devices(alice)
    done = event(alice, "sign_out_device", [bob_session])  # a session id Alice's page never offered
    assert not done["success"]
    with pytest.raises(NotFound):  # and the service itself checks the owner
        accounts.revoke_session(user_id=alice_id, session_id=bob_session)
    assert signed_in(app, bob)
    # "everywhere else" for Alice leaves Bob alone
    assert event(alice, "sign_out_other_devices", [])["success"]
    assert signed_in(app, bob) and signed_in(app, alice)
