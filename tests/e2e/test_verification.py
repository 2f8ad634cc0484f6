"""Email verification and one trial per person, over the served app and the SMTP sink.

With mail configured, a password sign-up gets a verification link (single-use, expiring) and the
trial credits wait for it; the trial is granted once per normalised email and once per provider
subject, whatever sequence of sign-ups, deletions and links happens."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from sqlalchemy import delete, update
from sqlmodel import select

from models.user import EmailVerification, TrialClaim, User
from tests.e2e.conftest import csrf_of, sign_up
from tests.e2e.test_oidc import browser, oidc_settings, person, provider_sign_in
from tests.fakes.oidc_server import FakeOIDC
from tests.fakes.smtp_server import FakeSMTP

PASSWORD = "correct horse battery"


@pytest.fixture
def smtp():
    with FakeSMTP() as server:
        yield server


@pytest.fixture
def provider():
    with FakeOIDC() as fake:
        yield fake


@pytest.fixture
def app(serve_app, smtp, provider, database_url):
    return serve_app(database_url=database_url, SMTP_HOST="127.0.0.1", SMTP_PORT=smtp.port, SMTP_STARTTLS="false",
                     **oidc_settings(provider))


def link_for(smtp: FakeSMTP, email: str, *, nth: int = 0) -> str:
    """The verification link of the nth mail to `email` (the outbox sends in the background)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        mails = [m for m in smtp.messages if m["To"] == email]
        if len(mails) > nth:
            body = mails[nth].get_content()
            assert mails[nth]["Subject"] == "Confirm your email address"
            line = next(w for w in body.split() if "/verify-email?token=" in w)
            return line
        time.sleep(0.05)
    raise AssertionError(f"no verification mail for {email}")


def balance(app, email: str) -> int:
    with app.services.db.session() as s:
        user = s.exec(select(User).where(User.email == email)).one()
    return app.services.ledger.balance(user.id).total


def delete_account(app, email: str) -> None:
    """Stands for any way an account goes away (its rows cascade); the trial claims stay."""
    with app.services.db.transaction() as s:
        s.exec(delete(User).where(User.email == email))


def open_link(app, link: str):
    parts = urlsplit(link)
    return app.client().get(f"{parts.path}?{parts.query}")


def test_the_trial_waits_for_the_verification_link_and_comes_once(app, smtp):
    email = f"Verify.Me-{uuid.uuid4().hex[:6]}@Example.com"
    sign_up(app, email)
    email = email.lower()
    assert balance(app, email) == 0, "no trial before the email is verified"
    link = link_for(smtp, email)
    assert link.startswith(f"{app.url}/verify-email?token=")
    page = open_link(app, link)
    assert page.status_code == 200 and "is verified" in page.text and "40 free credits" in page.text
    assert balance(app, email) == 40
    # the same link again: refused, nothing more
    again = open_link(app, link)
    assert again.status_code == 400 and "already used" in again.text
    assert balance(app, email) == 40
    with app.services.db.session() as s:
        stored = s.exec(select(EmailVerification)).all()
    assert all(row.token_hash != urlsplit(link).query.split("=", 1)[1] for row in stored), "only a hash is kept"


def test_an_expired_or_made_up_link_is_refused(app, smtp):
    email = f"late-{uuid.uuid4().hex[:6]}@example.com"
    sign_up(app, email)
    link = link_for(smtp, email)
    with app.services.db.transaction() as s:
        s.exec(update(EmailVerification).values(expires_at=EmailVerification.created_at - timedelta(seconds=1)))
    assert open_link(app, link).status_code == 400
    assert open_link(app, "/verify-email?token=made-up").status_code == 400
    assert balance(app, email) == 0


def test_signing_up_again_after_deleting_gets_no_second_trial(app, smtp):
    tag = uuid.uuid4().hex[:6]
    first = f"farmer.{tag}@gmail.com"
    sign_up(app, first)
    open_link(app, link_for(smtp, first))
    assert balance(app, first) == 40
    delete_account(app, first)
    # the same mailbox under other spellings: case, dots, a +tag, googlemail.com
    for n, again in enumerate((first, f"FARMER{tag}+more@googlemail.com")):
        sent = sum(m["To"] == again.lower() for m in smtp.messages)
        sign_up(app, again)
        again = again.lower()
        page = open_link(app, link_for(smtp, again, nth=sent))
        assert page.status_code == 200 and "is verified" in page.text and "free credits" not in page.text
        assert balance(app, again) == 0, n
        delete_account(app, again)


def test_linking_a_provider_later_grants_nothing_more(app, smtp, provider):
    email = f"linker-{uuid.uuid4().hex[:6]}@example.com"
    client = sign_up(app, email)
    open_link(app, link_for(smtp, email))
    assert balance(app, email) == 40
    # the Account tab's "Link ACME ID" form, with the page's proof
    proof = app.services.accounts.link_proof(client.cookies["studio_session"])
    person(provider, email=f"other-{uuid.uuid4().hex[:6]}@example.com", verified=True)
    page = client.post("/auth/oidc/acme/link", data={"csrf": proof}, follow_redirects=True,
                       headers={"accept": "text/html"})
    assert page.status_code == 200 and urlsplit(str(page.url)).query == "tab=account"
    assert [i.provider for i in app.services.accounts.list_identities(
        user_id=app.services.accounts.get_user_by_email(email).id)] == ["acme"]
    assert balance(app, email) == 40
    # the provider's subject and its email are claimed now: a new account through them gets nothing
    delete_account(app, email)
    again, landed = provider_sign_in(app)
    assert landed.status_code == 200 and "studio_session" in again.cookies
    assert balance(app, provider.person["email"]) == 0


def test_a_link_form_without_the_page_proof_is_refused(app):
    client = sign_up(app, f"csrf-{uuid.uuid4().hex[:6]}@example.com")
    page = client.post("/auth/oidc/acme/link", data={"csrf": "guess"}, headers={"accept": "text/html"})
    assert page.status_code == 403 and "did not come from your Account tab" in page.text


def test_a_provider_that_verified_the_email_counts_and_an_unverified_one_waits(app, smtp, provider):
    verified = person(provider, verified=True)
    _, page = provider_sign_in(app)
    assert page.status_code == 200 and balance(app, verified["email"]) == 40
    unverified = person(provider, verified=False)
    client, page = provider_sign_in(app)
    assert page.status_code == 200 and "studio_session" in client.cookies
    assert balance(app, unverified["email"]) == 0
    with app.services.db.session() as s:
        claimed = set(s.exec(select(TrialClaim.claim_key)).all())
    assert f"email:{verified['email']}" in claimed and f"email:{unverified['email']}" not in claimed


def test_disposable_domains_are_refused_at_sign_up(app):
    client = browser(app)
    page = client.get("/signup")
    r = client.post("/signup", data={"email": "x@mailinator.com", "password": PASSWORD, "csrf": csrf_of(page)},
                    follow_redirects=False)
    assert r.status_code == 400 and "not accepted" in r.text and "studio_session" not in client.cookies


def test_without_mail_the_trial_comes_at_sign_up_as_before(serve_app):
    app = serve_app()
    email = f"nomail-{uuid.uuid4().hex[:6]}@example.com"
    sign_up(app, email)
    assert balance(app, email) == 40
    delete_account(app, email)
    sign_up(app, email)
    assert balance(app, email) == 0, "still one trial per person"
