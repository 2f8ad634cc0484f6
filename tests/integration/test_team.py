"""Team mode on the real store (SQLite and PostgreSQL): sign-up rules, invitations, the monthly
team allowance at the month boundary (an injected clock) and exactly once across two Services."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from app import build_services
from services.accounts import Accounts
from services.admin import OPERATOR, Admin
from services.errors import PermissionDenied
from services.ledger import Ledger
from services.mailer import LogMailer
from services.settings import load_settings
from services.team import Team
from tests.clock import Clock


def team_env(database, tmp_path, clock, **settings):
    values = {"DATA_DIR": str(tmp_path), "ADMIN_EMAILS": "boss@example.com", "TRIAL_CREDITS": 0, **settings}
    s = load_settings(env_file=None, **values)
    ledger = Ledger(database, clock=clock)
    accounts = Accounts(db=database, ledger=ledger, settings=s, mailer=LogMailer(), clock=clock)
    team = Team(db=database, ledger=ledger, settings=s, clock=clock)
    admin = Admin(db=database, accounts=accounts, ledger=ledger, settings=s, team=team, clock=clock)
    return accounts, ledger, team, admin


def refused(fn, words: str) -> str:
    with pytest.raises(PermissionDenied) as err:
        fn()
    assert words in err.value.message, err.value.message
    return err.value.message


# Sign-up rules -------------------------------------------------------------------------------------


def test_closed_sign_up_is_refused_with_a_clear_message(database, tmp_path, clock):
    accounts, *_ = team_env(database, tmp_path, clock, SIGNUP_MODE="closed")
    refused(lambda: accounts.sign_up(email="a@example.com", password="long enough"), "Sign-ups are closed")
    # the operator still creates accounts
    assert accounts.create_user(email="a@example.com", password="long enough").id


def test_invite_mode_needs_a_link_used_once_before_it_expires(database, tmp_path, clock):
    accounts, _, team, admin = team_env(database, tmp_path, clock, SIGNUP_MODE="invite")
    refused(lambda: accounts.sign_up(email="a@example.com", password="long enough"), "by invitation only")
    refused(lambda: accounts.sign_up(email="a@example.com", password="long enough", invite="inv_made_up"),
            "not valid")

    invite = admin.create_invite(actor=OPERATOR, days=2)
    assert invite.url.endswith(f"/signup?invite={invite.token}")
    first = accounts.sign_up(email="a@example.com", password="long enough", invite=invite.token)
    assert first.user.email == "a@example.com"
    refused(lambda: accounts.sign_up(email="b@example.com", password="long enough", invite=invite.token),
            "already been used")

    late = admin.create_invite(actor=OPERATOR, days=1)
    clock.advance(days=1, seconds=1)
    refused(lambda: accounts.sign_up(email="c@example.com", password="long enough", invite=late.token), "expired")
    assert [row[3] for row in admin.invites(actor=OPERATOR).rows] == ["expired", "used"]


def test_an_invitation_bound_to_an_email_takes_only_that_address(database, tmp_path, clock):
    accounts, _, _, admin = team_env(database, tmp_path, clock, SIGNUP_MODE="invite",
                                     ALLOWED_EMAIL_DOMAINS="example.com")
    invite = admin.create_invite(actor=OPERATOR, email="Guest@Elsewhere.org")
    refused(lambda: accounts.sign_up(email="other@example.com", password="long enough", invite=invite.token),
            "another email address")
    # bound by an admin: the address may be outside the allowed domains
    user = accounts.sign_up(email="guest@elsewhere.org", password="long enough", invite=invite.token).user
    assert user.email == "guest@elsewhere.org"


def test_allowed_domains_refuse_other_addresses(database, tmp_path, clock):
    accounts, *_ = team_env(database, tmp_path, clock, ALLOWED_EMAIL_DOMAINS="example.com, example.org")
    message = refused(lambda: accounts.sign_up(email="x@gmail.com", password="long enough"), "example.com")
    assert "example.org" in message and "only" in message
    refused(lambda: accounts.sign_up(email="x@sub.example.com", password="long enough"), "only")
    assert accounts.sign_up(email="x@Example.ORG", password="long enough").user.email == "x@example.org"


def test_a_racing_second_use_of_an_invitation_loses(database, tmp_path, clock):
    accounts, _, _, admin = team_env(database, tmp_path, clock, SIGNUP_MODE="invite")
    invite = admin.create_invite(actor=OPERATOR)
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def one(i: int):
        barrier.wait()
        try:
            accounts.sign_up(email=f"racer{i}@example.com", password="long enough", invite=invite.token)
            outcomes.append("ok")
        except PermissionDenied as err:
            outcomes.append(err.message)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == 1, outcomes
    assert all("already been used" in o for o in outcomes if o != "ok"), outcomes


def test_invites_refused_to_members(database, tmp_path, clock, make_user):
    _, _, _, admin = team_env(database, tmp_path, clock)
    member = make_user(database)
    refused(lambda: admin.create_invite(actor=member), "administrator")


# The monthly team allowance --------------------------------------------------------------------------


def test_allowance_is_refreshed_once_a_month_at_the_boundary(database, tmp_path, make_user):
    clock = Clock(datetime(2026, 11, 30, 23, 59, tzinfo=UTC))
    accounts, ledger, team, _ = team_env(database, tmp_path, clock, MONTHLY_ALLOWANCE_CREDITS=50)
    member = accounts.create_user(email="m@example.com", password="long enough")
    assert ledger.balance(member.id).buckets["team"] == 50  # at once, with the account
    other = make_user(database)  # an account the sweep has not seen yet
    assert team.refresh_allowances() == {"allowances": 1}
    assert team.refresh_allowances() == {"allowances": 0}
    hold = ledger.reserve(user_id=member.id, amount=20, job_id="g1")
    ledger.capture(hold)
    assert ledger.balance(member.id).buckets["team"] == 30

    clock.advance(minutes=1)  # 2026-12-01 00:00 UTC: November's bucket has expired
    assert ledger.balance(member.id).total == 0
    assert team.refresh_allowances() == {"allowances": 2}
    assert team.refresh_allowances() == {"allowances": 0}
    for user in (member, other):
        b = ledger.balance(user.id)
        assert (b.total, b.buckets["team"]) == (50, 50)
    history = ledger.history(member.id, per_page=50).rows
    assert sum(1 for r in history if r.kind == "grant") == 2
    assert ledger.reconcile() == []


def test_disabled_members_get_no_allowance(database, tmp_path, clock):
    accounts, ledger, team, admin = team_env(database, tmp_path, clock, MONTHLY_ALLOWANCE_CREDITS=10)
    member = accounts.create_user(email="m@example.com", password="long enough")
    admin.set_disabled(actor=OPERATOR, email=member.email, disabled=True)
    clock.advance(days=40)
    assert team.refresh_allowances() == {"allowances": 0}
    admin.set_disabled(actor=OPERATOR, email=member.email, disabled=False)
    assert team.refresh_allowances() == {"allowances": 1}


def test_two_services_refresh_concurrently_exactly_once(database_url, tmp_path, make_user):
    """Two Services (as two replicas build them) on one database run the refresh at the same moment."""
    values = {"DATA_DIR": str(tmp_path), "DATABASE_URL": database_url, "MONTHLY_ALLOWANCE_CREDITS": 25,
              "TRIAL_CREDITS": 0, "IMAGE_PROVIDER": "offline", "OPENAI_API_KEY": "", "STRIPE_SECRET_KEY": "",
              "SECRET_KEY": "test"}
    replicas = [build_services(load_settings(env_file=None, **values), migrate=False) for _ in range(2)]
    try:
        db = replicas[0].db
        members = [make_user(db) for _ in range(12)]
        barrier = threading.Barrier(2)
        results: list[dict] = []

        def run(services):
            barrier.wait()
            results.append(services.team.refresh_allowances())

        threads = [threading.Thread(target=run, args=(r,)) for r in replicas]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(r["allowances"] for r in results) == len(members), results
        for m in members:
            b = replicas[1].ledger.balance(m.id)
            assert b.buckets["team"] == 25 and b.total == 25
        assert replicas[0].ledger.reconcile() == []
    finally:
        for r in replicas:
            r.db.dispose()


def test_team_credits_are_spent_first(database, tmp_path, clock):
    accounts, ledger, _, admin = team_env(database, tmp_path, clock, MONTHLY_ALLOWANCE_CREDITS=10)
    member = accounts.create_user(email="m@example.com", password="long enough")
    admin.grant_credits(actor=OPERATOR, email=member.email, amount=10)
    ledger.capture(ledger.reserve(user_id=member.id, amount=12, job_id="g1"))
    b = ledger.balance(member.id)
    assert (b.buckets["team"], b.buckets["admin"]) == (0, 8)
    assert ledger.reconcile() == []


def test_allowance_month_of_a_date():
    from services.team import month_of

    assert month_of(datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == ("2026-12", datetime(2027, 1, 1, tzinfo=UTC))
    assert month_of(datetime(2027, 2, 1, tzinfo=UTC) - timedelta(microseconds=1))[0] == "2027-01"
