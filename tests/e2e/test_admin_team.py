"""The admin console and team mode through the served app (SQLite and PostgreSQL): the console's
events called through Gradio's queue by a member are refused; the CSV route; disabling a member
ends their session and API key at the next request; sign-up pages under SIGNUP_MODE, invitations
and ALLOWED_EMAIL_DOMAINS; `python app.py invites create`."""

from __future__ import annotations

import csv
import io
import json
import uuid

from tests.e2e.conftest import csrf_of, queue_event, sign_in, sign_up
from tests.e2e.test_cli import cli, last_json  # noqa: F401  (the cli fixture)

ADMIN_EVENTS = {
    "admin_load": [""], "admin_search": ["a"], "admin_grant": ["{email}", 5, "note"],
    "admin_take_back": ["{email}", 5, "note"], "admin_disable": ["{email}"], "admin_enable": ["{email}"],
    "admin_invite": ["", 7],
}


def call(app, event: str, data: list, *, api_key: str) -> dict:
    """One UI event through Gradio's queue, as the page does, with an API key."""
    with app.client(headers={"Authorization": f"Bearer {api_key}"}) as http:
        config = http.get("/config").json()
        fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == event)
        return queue_event(http, fn_index, data, session_hash=uuid.uuid4().hex)


def people(app):
    accounts = app.services.accounts
    boss = accounts.create_user(email=f"boss-{uuid.uuid4().hex[:6]}@example.com", password="right password",
                                admin=True)
    member = accounts.create_user(email=f"m-{uuid.uuid4().hex[:6]}@example.com", password="right password")
    return boss, accounts.create_api_key(user_id=boss.id)[1], member, accounts.create_api_key(user_id=member.id)[1]


def test_every_admin_event_is_refused_to_a_member(serve_app, database_url):
    app = serve_app(database_url=database_url)
    boss, boss_key, member, member_key = people(app)
    with app.client(headers={"Authorization": f"Bearer {member_key}"}) as http:
        config = http.get("/config").json()
    names = {d.get("api_name") for d in config["dependencies"]}
    assert set(ADMIN_EVENTS) <= names
    assert {n for n in names if n and n.startswith("admin_")} == set(ADMIN_EVENTS)  # none left untested
    start = app.services.ledger.balance(member.id).total
    for event, data in ADMIN_EVENTS.items():
        data = [member.email if v == "{email}" else v for v in data]
        done = call(app, event, data, api_key=member_key)
        assert done["success"] is False, (event, done)
        assert "administrator" in json.dumps(done["output"]), (event, done)
    assert app.services.ledger.balance(member.id).total == start
    assert app.services.accounts.user_for_api_key(member_key) is not None  # not disabled by the attempt
    assert app.services.team.list_invites() == []

    # the same events work for an admin
    done = call(app, "admin_grant", [member.email, 5, "note"], api_key=boss_key)
    assert done["success"] is True and f"now has **{start + 5}** credits" in done["output"]["data"][0]
    done = call(app, "admin_take_back", [member.email, 2, "oops"], api_key=boss_key)
    assert done["success"] is True and "Took back **2** credits" in done["output"]["data"][0]
    done = call(app, "admin_invite", ["", 7], api_key=boss_key)
    assert done["success"] is True and "/signup?invite=inv_" in json.dumps(done["output"]["data"][0])
    done = call(app, "admin_load", [""], api_key=boss_key)
    assert done["success"] is True and member.email in json.dumps(done["output"]["data"][1])
    assert app.services.ledger.reconcile() == []


def test_csv_export_is_for_admins_and_matches_the_table(serve_app, database_url):
    app = serve_app(database_url=database_url)
    boss, boss_key, member, member_key = people(app)
    with app.client() as anonymous:
        assert anonymous.get("/admin/export/members.csv", headers={"Authorization": "Bearer sk_studio_nope"}
                             ).status_code == 401
    with app.client(headers={"Authorization": f"Bearer {member_key}"}) as http:
        assert http.get("/admin/export/members.csv").status_code == 403
    with app.client(headers={"Authorization": f"Bearer {boss_key}"}) as http:
        assert http.get("/admin/export/nothing.csv").status_code == 404
        r = http.get("/admin/export/members.csv", params={"q": member.email})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert r.headers["content-disposition"] == 'attachment; filename="members.csv"'
        table = app.services.admin.members(actor=boss, query=member.email)
        parsed = list(csv.reader(io.StringIO(r.text)))
        assert parsed == [table.headers, *[[str(v) for v in row] for row in table.rows]]
        assert len(parsed) == 2 and parsed[1][0] == member.email
        for name in ("usage", "usage_daily", "money_daily", "money_plans"):
            assert http.get(f"/admin/export/{name}.csv").status_code == 200


def test_a_disabled_member_is_refused_at_the_next_request(serve_app, database_url):
    app = serve_app(database_url=database_url)
    boss, boss_key, _, _ = people(app)
    email = f"d-{uuid.uuid4().hex[:6]}@example.com"
    browser = sign_up(app, email)
    member = app.services.accounts.get_user_by_email(email)
    key = app.services.accounts.create_api_key(user_id=member.id)[1]
    assert browser.get("/config").status_code == 200
    with app.client(headers={"Authorization": f"Bearer {key}"}) as api:
        assert api.get("/v1/models").status_code == 200

        assert call(app, "admin_disable", [email], api_key=boss_key)["success"] is True

        refused = api.get("/v1/models")
        assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]
    assert browser.get("/config").status_code == 401  # the session cookie is refused
    _, answer = sign_in(app, email, "correct horse battery")
    assert answer.status_code == 403 and "This account is disabled" in answer.text
    _, wrong = sign_in(app, email, "not the password")
    assert "disabled" not in wrong.text

    assert call(app, "admin_enable", [email], api_key=boss_key)["success"] is True
    _, answer = sign_in(app, email, "correct horse battery")
    assert answer.status_code == 303


def signup_post(app, path: str, email: str):
    client = app.client(follow_redirects=False)
    page = client.get(path)
    data = {"email": email, "password": "correct horse battery", "csrf": csrf_of(page)}
    if "invite=" in path:
        data["invite"] = path.split("invite=", 1)[1]
        assert f'name="invite" value="{data["invite"]}"' in page.text
    return page, client.post("/signup", data=data)


def test_sign_up_pages_follow_the_team_rules(serve_app, database_url):
    app = serve_app(database_url=database_url, SIGNUP_MODE="invite", ALLOWED_EMAIL_DOMAINS="example.com",
                    MONTHLY_ALLOWANCE_CREDITS="30")
    page, answer = signup_post(app, "/signup", "x@example.com")
    assert "by invitation only" in page.text
    assert answer.status_code == 403 and "by invitation only" in answer.text

    invite = app.services.admin.create_invite(actor=_operator())
    _, answer = signup_post(app, f"/signup?invite={invite.token}", "y@gmail.com")
    assert answer.status_code == 403 and "addresses at example.com only" in answer.text
    _, answer = signup_post(app, f"/signup?invite={invite.token}", "y@example.com")
    assert answer.status_code == 303
    user = app.services.accounts.get_user_by_email("y@example.com")
    assert app.services.ledger.balance(user.id).buckets["team"] == 30
    _, answer = signup_post(app, f"/signup?invite={invite.token}", "z@example.com")
    assert answer.status_code == 403 and "already been used" in answer.text


def test_closed_sign_up_page(serve_app):
    app = serve_app(SIGNUP_MODE="closed")
    page, answer = signup_post(app, "/signup", "x@example.com")
    assert "Sign-ups are closed" in page.text
    assert answer.status_code == 403 and "Sign-ups are closed" in answer.text


def test_cli_creates_invitations(cli):  # noqa: F811
    made = last_json(cli("invites", "create", "--email", "New@Example.com", "--days", "3"))
    assert made["email"] == "new@example.com" and made["token"].startswith("inv_")
    assert made["url"].endswith(f"/signup?invite={made['token']}") and made["expires_at"]
    anyone = last_json(cli("invites", "create"))
    assert anyone["email"] is None
    bad = cli("invites", "create", "--days", "0", expect=1)
    assert "1 to 365 days" in bad.stderr


def _operator():
    from services.admin import OPERATOR

    return OPERATOR


def test_provider_sign_in_of_new_accounts_follows_the_team_rules(serve_app, database_url):
    from tests.e2e.test_oidc import browser, oidc_settings, person, provider_sign_in, user_by_email
    from tests.fakes.oidc_server import FakeOIDC

    with FakeOIDC() as provider:
        app = serve_app(database_url=database_url, SIGNUP_MODE="invite", ALLOWED_EMAIL_DOMAINS="example.com",
                        MONTHLY_ALLOWANCE_CREDITS="12", **oidc_settings(provider))

        def attempt(email: str, *, verified: bool = True):
            person(provider, email=email, verified=verified)
            client, page = provider_sign_in(app, browser(app))
            return client, page

        client, page = attempt("stranger@example.com")
        assert "by invitation only" in page.text and "studio_session" not in client.cookies
        assert user_by_email(app, "stranger@example.com") is None

        app.services.admin.create_invite(actor=_operator(), email="outside@elsewhere.org")
        app.services.admin.create_invite(actor=_operator(), email="unverified@example.com")
        client, page = attempt("unverified@example.com", verified=False)
        assert "studio_session" not in client.cookies and user_by_email(app, "unverified@example.com") is None

        client, page = attempt("outside@elsewhere.org")
        assert "studio_session" in client.cookies
        user = user_by_email(app, "outside@elsewhere.org")
        assert app.services.ledger.balance(user.id).buckets["team"] == 12
        assert [inv.used_by for inv in app.services.team.list_invites() if inv.email == user.email] == [user.id]
