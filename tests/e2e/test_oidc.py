"""Sign-in with an OpenID Connect provider, end to end: the served app, a fake provider on
127.0.0.1 (tests/fakes/oidc_server.py: discovery, authorize, token with PKCE, JWKS with a real RSA
key, userinfo) and an HTTP client that follows the real redirects and keeps cookies, as a browser.

Every refusal shows a page that says why, sets no session and creates or links nothing."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from sqlmodel import func, select

from models.user import User, UserIdentity, UserSession
from tests.e2e.conftest import sign_in, sign_up
from tests.fakes.oidc_server import FakeOIDC

PASSWORD = "correct horse battery"


@pytest.fixture
def provider():
    with FakeOIDC() as fake:
        yield fake


def oidc_settings(fake: FakeOIDC, name: str = "acme", label: str = "ACME ID") -> dict:
    prefix = f"OIDC_{name.upper()}_"
    return {"OIDC_PROVIDERS": name, prefix + "ISSUER": fake.issuer, prefix + "CLIENT_ID": fake.client_id,
            prefix + "CLIENT_SECRET": fake.client_secret, prefix + "LABEL": label}


@pytest.fixture
def app(serve_app, provider, database_url):
    return serve_app(database_url=database_url, **oidc_settings(provider))


def person(fake: FakeOIDC, *, verified: bool = True, email: str | None = None) -> dict:
    fake.person = {"sub": f"sub-{uuid.uuid4().hex}", "email": email or f"p-{uuid.uuid4().hex[:8]}@example.com",
                   "email_verified": verified}
    return fake.person


def browser(app) -> httpx.Client:
    return app.client(follow_redirects=True, headers={"accept": "text/html",
                                                       "user-agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0"})


def provider_sign_in(app, client: httpx.Client | None = None) -> tuple[httpx.Client, httpx.Response]:
    """Click "Sign in with ACME ID": the app → the provider → the app's callback → the studio."""
    client = client or browser(app)
    return client, client.get("/auth/oidc/acme/login")


def user_by_email(app, email: str) -> User | None:
    with app.services.db.session() as s:
        return s.exec(select(User).where(User.email == email)).first()


def count(app, model) -> int:
    with app.services.db.session() as s:
        return s.exec(select(func.count()).select_from(model)).one()


def test_the_sign_in_pages_and_the_landing_page_offer_the_provider(app):
    landing = app.client().get("/", headers={"accept": "text/html"})
    assert "Create images from a sentence" in landing.text and 'href="/auth/oidc/acme/login"' in landing.text
    page = app.client().get("/login?next=/%3Ftab%3Dgallery")
    assert "Sign in with ACME ID" in page.text
    assert 'href="/auth/oidc/acme/login?next=/%3Ftab%3Dgallery"' in page.text
    assert "Sign in with ACME ID" in app.client().get("/signup").text


def test_first_sign_in_creates_the_account_with_its_trial_and_a_second_finds_it(app, provider):
    me = person(provider)
    client, page = provider_sign_in(app)
    assert page.status_code == 200 and urlsplit(str(page.url)).path == "/"
    assert "studio_session" in client.cookies
    user = user_by_email(app, me["email"])
    assert user is not None and user.email_verified_at is not None and user.password_hash == ""
    assert app.services.ledger.balance(user.id).total == 40
    # the provider saw PKCE: a challenge at /authorize, the verifier at /token
    authorize = [q for m, p, q in provider.requests if p == "/authorize"][-1]
    token = [f for m, p, f in provider.requests if p == "/token"][-1]
    assert authorize["code_challenge_method"] == "S256" and len(token["code_verifier"]) >= 43
    assert provider.auth_methods == ["client_secret_basic"]

    again, page = provider_sign_in(app)
    assert page.status_code == 200 and "studio_session" in again.cookies
    assert again.cookies["studio_session"] != client.cookies["studio_session"]
    with app.services.db.session() as s:
        assert s.exec(select(func.count()).select_from(User).where(User.email == me["email"])).one() == 1
        assert s.exec(select(func.count()).select_from(UserSession).where(UserSession.user_id == user.id)).one() == 2
    assert app.services.ledger.balance(user.id).total == 40
    # the session is a real one: the app answers the signed-in user
    assert again.get("/", follow_redirects=False).status_code == 200


def test_a_verified_email_links_the_existing_password_account(app, provider):
    email = f"linked-{uuid.uuid4().hex[:8]}@example.com"
    sign_up(app, email)
    owner = user_by_email(app, email)
    person(provider, email=email.upper(), verified=True)
    client, page = provider_sign_in(app)
    assert page.status_code == 200 and "studio_session" in client.cookies
    with app.services.db.session() as s:
        identity = s.exec(select(UserIdentity).where(UserIdentity.user_id == owner.id)).one()
        assert identity.provider == "acme"
    assert app.services.ledger.balance(owner.id).total == 40  # no second trial
    _, r = sign_in(app, email, PASSWORD)  # the password still works: both ways in
    assert r.status_code == 303


def refused(page: httpx.Response, client: httpx.Client, words: str) -> None:
    assert page.status_code in (400, 401), page.text
    assert "Sign-in failed" in page.text and words in page.text, page.text
    assert "studio_session" not in client.cookies


def test_an_unverified_email_never_takes_over_an_existing_account(app, provider):
    email = f"victim-{uuid.uuid4().hex[:8]}@example.com"
    sign_up(app, email)
    owner = user_by_email(app, email)
    person(provider, email=email, verified=False)
    client, page = provider_sign_in(app)
    refused(page, client, "does not confirm that this address is yours")
    with app.services.db.session() as s:
        assert s.exec(select(UserIdentity).where(UserIdentity.user_id == owner.id)).first() is None


@pytest.mark.parametrize(("tamper", "words"), [
    ("aud", "could not be verified (wrong audience)"),
    ("iss", "could not be verified (wrong issuer)"),
    ("exp", "has expired"),
    ("signature", "could not be verified (bad signature)"),
    ("nonce", "could not be verified (wrong nonce)"),
])
def test_a_bad_id_token_is_refused(app, provider, tamper, words):
    me = person(provider)
    provider.tamper = tamper
    users, identities = count(app, User), count(app, UserIdentity)
    client, page = provider_sign_in(app)
    refused(page, client, words)
    assert user_by_email(app, me["email"]) is None
    assert (count(app, User), count(app, UserIdentity)) == (users, identities)


def to_callback(app, client: httpx.Client) -> str:
    """Start a sign-in and let the provider answer, stopping before the app's callback."""
    start = client.get("/auth/oidc/acme/login", follow_redirects=False)
    assert start.status_code == 303
    answer = httpx.get(start.headers["location"], follow_redirects=False)
    assert answer.status_code == 302
    return answer.headers["location"]


def with_query(url: str, **changes) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return parts._replace(query=urlencode(query)).geturl()


def test_a_wrong_state_or_another_browser_is_refused(app, provider):
    me = person(provider)
    client = browser(app)
    callback = to_callback(app, client)
    refused(client.get(with_query(callback, state="forged-" + uuid.uuid4().hex)), client, "was not started in this browser")
    stranger = browser(app)  # the right state, but not the browser that started the sign-in
    refused(stranger.get(callback), stranger, "was not started in this browser")
    assert user_by_email(app, me["email"]) is None
    page = client.get(callback)  # the browser that started it still can, once
    assert page.status_code == 200 and "studio_session" in client.cookies


def test_a_replayed_code_is_refused(app, provider):
    person(provider)
    client = browser(app)
    callback = to_callback(app, client)
    assert client.get(callback).status_code == 200
    other = browser(app)
    refused(other.get(callback), other, "was not started in this browser")
    # the same browser replays the callback: its state is spent
    client.cookies.delete("studio_session")
    refused(client.get(callback), client, "has expired or was not started")
    # a fresh sign-in carrying the old code: the provider refuses it (single use)
    fresh = to_callback(app, client)
    old_code = parse_qs(urlsplit(callback).query)["code"][0]
    refused(client.get(with_query(fresh, code=old_code)), client, "did not accept this sign-in")


def test_an_unknown_provider_is_a_clear_404(app):
    page = app.client().get("/auth/oidc/nobody/login")
    assert page.status_code == 404 and "no such sign-in provider" in page.text


def test_the_email_comes_from_userinfo_when_the_id_token_has_none(app, provider):
    me = person(provider)
    provider.include_email_in_id_token = False
    client, page = provider_sign_in(app)
    assert page.status_code == 200 and "studio_session" in client.cookies
    assert user_by_email(app, me["email"]) is not None
    assert any(p == "/userinfo" for _, p, _ in provider.requests)


def test_a_provider_only_account_has_no_password_to_guess(app, provider):
    me = person(provider)
    provider_sign_in(app)
    for password in ("", "correct horse battery", "x" * 8):
        _, r = sign_in(app, me["email"], password)
        assert r.status_code == 401 and "Incorrect email or password" in r.text


def test_unlinking_never_removes_the_last_way_in(app, provider):
    from services.errors import ValidationFailed

    accounts = app.services.accounts
    me = person(provider)
    provider_sign_in(app)
    only = user_by_email(app, me["email"])
    [identity] = accounts.list_identities(user_id=only.id)
    with pytest.raises(ValidationFailed, match="only way to sign in"):
        accounts.unlink_identity(user_id=only.id, identity_id=identity.id)
    # a password account with a linked provider can unlink it, and nobody else can
    email = f"both-{uuid.uuid4().hex[:8]}@example.com"
    sign_up(app, email)
    person(provider, email=email, verified=True)
    provider_sign_in(app)
    both = user_by_email(app, email)
    [linked] = accounts.list_identities(user_id=both.id)
    from services.errors import NotFound

    with pytest.raises(NotFound):
        accounts.unlink_identity(user_id=only.id, identity_id=linked.id)
    accounts.unlink_identity(user_id=both.id, identity_id=linked.id)
    assert accounts.list_identities(user_id=both.id) == []


def test_a_hugging_face_space_signs_in_with_its_four_variables(serve_app, provider, database_url):
    """The Space's OAuth variables alone (the fake stands in for huggingface.co); the redirect URI
    is on SPACE_HOST, so the test carries the provider's answer to the app itself."""
    app = serve_app(database_url=database_url, OAUTH_CLIENT_ID=provider.client_id,
                    OAUTH_CLIENT_SECRET=provider.client_secret, OPENID_PROVIDER_URL=provider.issuer,
                    SPACE_HOST="someone-studio.hf.space")
    assert "Sign in with Hugging Face" in app.client().get("/login").text
    me = person(provider)
    client = browser(app)
    start = client.get("/auth/oidc/huggingface/login", follow_redirects=False)
    authorize = parse_qs(urlsplit(start.headers["location"]).query)
    assert authorize["redirect_uri"] == ["https://someone-studio.hf.space/auth/oidc/huggingface/callback"]
    assert "email" in authorize["scope"][0].split()
    answer = httpx.get(start.headers["location"], follow_redirects=False).headers["location"]
    assert answer.startswith("https://someone-studio.hf.space/auth/oidc/huggingface/callback?")
    page = client.get("/auth/oidc/huggingface/callback?" + urlsplit(answer).query)
    assert page.status_code == 200 and "studio_session" in client.cookies
    assert user_by_email(app, me["email"]) is not None


def test_a_provider_that_takes_the_secret_only_in_the_form_gets_it_there(serve_app, provider):
    provider.token_auth_methods = ["client_secret_post"]
    app = serve_app(**oidc_settings(provider))
    person(provider)
    client, page = provider_sign_in(app)
    assert page.status_code == 200 and "studio_session" in client.cookies
    assert provider.auth_methods == ["client_secret_post"]


def test_starting_sign_ins_is_throttled_per_ip(serve_app, provider):
    app = serve_app(SIGNIN_RATE_PER_IP_PER_MINUTE=3, **oidc_settings(provider))
    client = browser(app)
    for _ in range(3):
        assert client.get("/auth/oidc/acme/login", follow_redirects=False).status_code == 303
    page = client.get("/auth/oidc/acme/login", follow_redirects=False)
    assert page.status_code == 429 and "Too many sign-in attempts" in page.text
