"""Accounts through the served app: pages, cookies, lockout, reset, API keys, refusal without auth."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AuthenticationError
from sqlmodel import select

from models.user import ApiKey
from services.accounts import token_hash
from services.errors import NotFound
from tests.e2e.conftest import csrf_of, sign_in, sign_up

PASSWORD = "correct horse battery"


def new_email() -> str:
    return f"u-{uuid.uuid4().hex[:10]}@example.com"


def logged_mail(caplog, app, to: str) -> list[str]:
    """The bodies of the mails to `to` that the app's log mailer wrote to the server log (once
    every queued mail job has run)."""
    app.services.accounts.outbox.join()
    return [r.getMessage() for r in caplog.records if r.name == "studio.mail" and f" to {to}:" in r.getMessage()]


def test_healthz(served_app):
    r = httpx.get(f"{served_app.url}/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_browser_without_session_lands_on_sign_in(served_app):
    # `/` itself is the landing page (tests/e2e/test_pages.py); a deep link goes to sign-in and back.
    r = httpx.get(served_app.url + "/?tab=pricing", headers={"accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/%3Ftab%3Dpricing"
    page = httpx.get(served_app.url + "/?tab=pricing", headers={"accept": "text/html"}, follow_redirects=True)
    assert page.status_code == 200 and "Sign in" in page.text and 'type="password"' in page.text


def test_gradio_api_refuses_without_auth(served_app):
    r = httpx.get(f"{served_app.url}/config")
    assert r.status_code == 401
    with pytest.raises(AuthenticationError, match="credentials were not provided"):
        Client(served_app.url, verbose=False)


def test_sign_up_sign_in_sign_out(served_app):
    email = new_email()
    client = sign_up(served_app, email, PASSWORD)
    assert "studio_session" in client.cookies
    home = client.get("/", headers={"accept": "text/html"})
    assert home.status_code == 200 and "gradio" in home.text.lower()
    user = served_app.services.accounts.get_user_by_email(email)
    assert served_app.services.ledger.balance(user.id).total == served_app.settings.trial_credits

    token = client.cookies["studio_session"]
    out = client.post("/logout", data={"csrf": served_app.services.accounts.sign_out_proof(token)})
    assert out.status_code == 303 and out.headers["location"].startswith("/login")
    stale = httpx.get(served_app.url + "/config", cookies={"studio_session": token})
    assert stale.status_code == 401, "a signed-out session token must stop working"

    client2, r = sign_in(served_app, email, PASSWORD)
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert client2.cookies["studio_session"] != token, "sign-in issues a new token"
    assert client2.get("/config").status_code == 200


def test_session_cookie_flags(served_app):
    client = served_app.client(follow_redirects=False)
    page = client.get("/signup")
    csrf = csrf_of(page)
    r = client.post("/signup", data={"email": new_email(), "password": PASSWORD, "csrf": csrf})
    set_cookie = r.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=lax" in set_cookie and "studio_session=" in set_cookie
    assert "secure" not in set_cookie  # PUBLIC_URL is not https in tests


def test_wrong_password_and_unknown_email_get_the_same_answer(served_app):
    email = new_email()
    sign_up(served_app, email, PASSWORD)
    _, wrong = sign_in(served_app, email, "not the password")
    _, unknown = sign_in(served_app, new_email(), "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert "Incorrect email or password." in wrong.text and "Incorrect email or password." in unknown.text
    assert "studio_session" not in wrong.headers.get("set-cookie", "")


def test_sign_up_rejects_bad_input_and_duplicates(served_app):
    email = new_email()
    client = served_app.client(follow_redirects=False)
    page = client.get("/signup")
    csrf = csrf_of(page)
    short = client.post("/signup", data={"email": email, "password": "short", "csrf": csrf})
    assert short.status_code == 400 and "at least 8 characters" in short.text
    csrf = csrf_of(short)  # each form page has a fresh token
    bad = client.post("/signup", data={"email": "not-an-email", "password": PASSWORD, "csrf": csrf})
    assert bad.status_code == 400 and "valid email" in bad.text
    with pytest.raises(NotFound):
        served_app.services.accounts.get_user_by_email(email)
    sign_up(served_app, email, PASSWORD)
    csrf = csrf_of(bad)
    dup = client.post("/signup", data={"email": email.upper(), "password": PASSWORD, "csrf": csrf})
    assert dup.status_code == 409 and "already exists" in dup.text
    no_csrf = served_app.client().post("/signup", data={"email": new_email(), "password": PASSWORD, "csrf": "x"})
    assert no_csrf.status_code == 400


def test_lockout_after_ten_failures_and_reset_still_works(served_app, caplog):
    email = new_email()
    sign_up(served_app, email, PASSWORD)
    for _ in range(10):
        _, r = sign_in(served_app, email, "wrong password!")
        assert r.status_code == 401
    _, locked = sign_in(served_app, email, PASSWORD)
    assert locked.status_code == 429 and "locked" in locked.text

    client = served_app.client()
    page = client.get("/forgot")
    csrf = csrf_of(page)
    r = client.post("/forgot", data={"email": email, "csrf": csrf})
    assert r.status_code == 200 and "reset link is on its way" in r.text
    [body] = logged_mail(caplog, served_app, email)
    token = re.search(r"/reset\?token=([\w-]+)", body).group(1)

    page = client.get(f"/reset?token={token}")
    csrf = csrf_of(page)
    done = client.post("/reset", data={"token": token, "password": "a brand new password", "csrf": csrf},
                       follow_redirects=False)
    assert done.status_code == 303 and "msg=reset" in done.headers["location"]
    page = client.get(f"/reset?token={token}")
    csrf = csrf_of(page)
    again = client.post("/reset", data={"token": token, "password": "yet another password", "csrf": csrf})
    assert again.status_code == 400 and "invalid or has expired" in again.text

    _, ok = sign_in(served_app, email, "a brand new password")
    assert ok.status_code == 303
    _, old = sign_in(served_app, email, PASSWORD)
    assert old.status_code == 401


def test_reset_revokes_every_session(served_app, caplog):
    email = new_email()
    client = sign_up(served_app, email, PASSWORD)
    assert client.get("/config").status_code == 200
    accounts = served_app.services.accounts
    accounts.request_password_reset(email=email, reset_url="http://x/reset")
    token = re.search(r"token=([\w-]+)", logged_mail(caplog, served_app, email)[-1]).group(1)
    accounts.reset_password(token=token, new_password="another long password")
    assert client.get("/config").status_code == 401


def test_forgot_password_for_unknown_email_says_the_same(served_app, caplog):
    client = served_app.client()
    page = client.get("/forgot")
    csrf = csrf_of(page)
    email = new_email()
    r = client.post("/forgot", data={"email": email, "csrf": csrf})
    assert r.status_code == 200 and "reset link is on its way" in r.text
    assert logged_mail(caplog, served_app, email) == []


def test_api_key_create_use_revoke(served_app):
    email = new_email()
    sign_up(served_app, email, PASSWORD)
    accounts = served_app.services.accounts
    user = accounts.get_user_by_email(email)
    key_row, key = accounts.create_api_key(user_id=user.id, name="test")
    assert key.startswith("sk_studio_")
    with served_app.services.db.session() as s:
        stored = s.exec(select(ApiKey).where(ApiKey.id == key_row.id)).one()
    # Only the hash and a short prefix are stored: no column holds the key or its secret part.
    assert stored.key_hash == token_hash(key) and stored.prefix == key[:16] and len(key) > 16 + 32
    secret = key[16:]
    assert not [name for name, value in stored.model_dump().items() if secret in str(value)]

    client = Client(served_app.url, headers={"Authorization": f"Bearer {key}"}, verbose=False)
    assert client.predict(api_name="/balance") == served_app.settings.trial_credits

    bogus = httpx.get(f"{served_app.url}/config", headers={"Authorization": "Bearer sk_studio_bogus"})
    assert bogus.status_code == 401
    accounts.revoke_api_key(user_id=user.id, key_id=key_row.id)
    revoked = httpx.get(f"{served_app.url}/config", headers={"Authorization": f"Bearer {key}"})
    assert revoked.status_code == 401
    with pytest.raises(AuthenticationError):
        Client(served_app.url, headers={"Authorization": f"Bearer {key}"}, verbose=False)


def test_per_ip_sign_in_throttle(serve_app):
    app = serve_app(SIGNIN_RATE_PER_IP_PER_MINUTE=3)
    statuses = [sign_in(app, new_email(), "whatever password")[1].status_code for _ in range(4)]
    assert statuses[:3] == [401, 401, 401] and statuses[3] == 429


def test_per_ip_sign_up_throttle(serve_app):
    app = serve_app(SIGNUP_RATE_PER_IP_PER_HOUR=2)
    sign_up(app, new_email())
    sign_up(app, new_email())
    client = app.client()
    page = client.get("/signup")
    csrf = csrf_of(page)
    r = client.post("/signup", data={"email": new_email(), "password": PASSWORD, "csrf": csrf})
    assert r.status_code == 429 and "Too many sign-ups" in r.text


def test_admin_role_from_admin_emails(served_app):
    client = sign_up(served_app, "admin@example.com", PASSWORD)
    assert client.cookies["studio_session"]
    assert served_app.services.accounts.get_user_by_email("admin@example.com").is_admin


def test_public_pages_need_no_sign_in(served_app):
    pricing = httpx.get(f"{served_app.url}/pricing", headers={"accept": "text/html"})
    assert pricing.status_code == 200 and "$9.99" in pricing.text and "save 65%" in pricing.text
    terms = httpx.get(f"{served_app.url}/terms", headers={"accept": "text/html"})
    assert terms.status_code == 200 and "refund" in terms.text.lower()
    assert served_app.settings.support_contact in terms.text


def test_healthz_is_503_when_the_database_does_not_answer(serve_app):
    from services.db import Database

    app = serve_app()
    assert httpx.get(f"{app.url}/healthz").status_code == 200
    working = app.services.db
    app.services.db = Database("postgresql+psycopg://postgres@127.0.0.1:9/nowhere?connect_timeout=2")
    try:
        r = httpx.get(f"{app.url}/healthz", timeout=30)
        assert r.status_code == 503 and r.json()["status"] != "ok"
    finally:
        app.services.db.dispose()
        app.services.db = working
