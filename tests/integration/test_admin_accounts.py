"""Accounts and admin services on the real store (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.accounts import Accounts
from services.admin import Admin
from services.errors import (
    AccountLocked,
    Conflict,
    InvalidCredentials,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from services.ledger import Ledger
from services.mailer import LogMailer
from services.settings import load_settings


@pytest.fixture
def env(database, tmp_path, clock):
    settings = load_settings(env_file=None, DATA_DIR=str(tmp_path), ADMIN_EMAILS="boss@example.com", TRIAL_CREDITS=40)
    ledger = Ledger(database)
    accounts = Accounts(db=database, ledger=ledger, settings=settings, mailer=LogMailer(), clock=clock)
    return accounts, ledger, Admin(db=database, accounts=accounts, ledger=ledger), clock


def test_sign_up_grants_trial_once_and_roles(env):
    accounts, ledger, _, _ = env
    user = accounts.create_user(email=" Someone@Example.COM ", password="long enough")
    assert user.email == "someone@example.com" and user.role == "user"
    assert ledger.balance(user.id).total == 40 and ledger.balance(user.id).buckets["trial"] == 40
    with pytest.raises(Conflict):
        accounts.create_user(email="someone@example.com", password="long enough")
    assert ledger.balance(user.id).total == 40
    assert accounts.create_user(email="boss@example.com", password="long enough").is_admin
    assert accounts.create_user(email="ops@example.com", password="long enough", admin=True).is_admin
    assert ledger.reconcile() == []


@pytest.mark.parametrize("email,password", [("bad", "long enough"), ("a@b.co", "short"), ("a@b.co", "x" * 1025)])
def test_bad_sign_up_input_writes_nothing(env, email, password):
    accounts, _, _, _ = env
    with pytest.raises(ValidationFailed):
        accounts.create_user(email=email, password=password)
    with pytest.raises(NotFound):
        accounts.get_user_by_email("a@b.co")


def test_password_limits_accept_edges(env):
    accounts, _, _, _ = env
    accounts.create_user(email="eight@example.com", password="8" * 8)
    accounts.create_user(email="long@example.com", password="L" * 1024)
    assert accounts.sign_in(email="long@example.com", password="L" * 1024).token


def test_lockout_window_and_expiry(env):
    accounts, _, _, clock = env
    accounts.create_user(email="lock@example.com", password="right password")
    for _ in range(10):
        with pytest.raises(InvalidCredentials):
            accounts.sign_in(email="lock@example.com", password="wrong password")
    with pytest.raises(AccountLocked):
        accounts.sign_in(email="lock@example.com", password="right password")
    clock.now += timedelta(minutes=16)
    assert accounts.sign_in(email="lock@example.com", password="right password").token


def test_failures_spread_beyond_the_window_do_not_lock(env):
    accounts, _, _, clock = env
    accounts.create_user(email="slow@example.com", password="right password")
    for _ in range(9):
        with pytest.raises(InvalidCredentials):
            accounts.sign_in(email="slow@example.com", password="wrong password")
    clock.now += timedelta(minutes=16)
    with pytest.raises(InvalidCredentials):
        accounts.sign_in(email="slow@example.com", password="wrong password")
    assert accounts.sign_in(email="slow@example.com", password="right password").token


def test_session_idle_and_absolute_expiry(env):
    accounts, _, _, clock = env
    accounts.create_user(email="s@example.com", password="right password")
    token = accounts.sign_in(email="s@example.com", password="right password").token
    assert accounts.user_for_session(token).email == "s@example.com"
    clock.now += timedelta(minutes=accounts.settings.session_idle_minutes + 1)
    assert accounts.user_for_session(token) is None
    token = accounts.sign_in(email="s@example.com", password="right password").token
    for _ in range(accounts.settings.session_max_days + 1):  # active every day, still ends
        clock.now += timedelta(days=1)
        accounts.user_for_session(token)
    assert accounts.user_for_session(token) is None
    assert accounts.user_for_session("not-a-token") is None


def test_reset_token_expires_after_an_hour(env, caplog):
    accounts, _, _, clock = env
    accounts.create_user(email="r@example.com", password="right password")
    accounts.request_password_reset(email="r@example.com", reset_url="http://x/reset")
    accounts.outbox.join()
    [body] = [r.getMessage() for r in caplog.records if r.name == "studio.mail"]
    token = body.split("token=")[1].split()[0]
    clock.now += timedelta(minutes=61)
    with pytest.raises(ValidationFailed):
        accounts.reset_password(token=token, new_password="new password!")


def test_api_keys_are_hashed_and_owned(env):
    accounts, _, _, _ = env
    a = accounts.create_user(email="a@example.com", password="right password")
    b = accounts.create_user(email="b@example.com", password="right password")
    row, key = accounts.create_api_key(user_id=a.id, name="script")
    assert key not in (row.key_hash, row.prefix) and accounts.user_for_api_key(key).id == a.id
    with pytest.raises(NotFound):  # B cannot revoke A's key
        accounts.revoke_api_key(user_id=b.id, key_id=row.id)
    assert accounts.user_for_api_key(key).id == a.id
    accounts.revoke_api_key(user_id=a.id, key_id=row.id)
    assert accounts.user_for_api_key(key) is None


def test_admin_calls_check_the_role_on_the_server(env):
    accounts, ledger, admin, _ = env
    boss = accounts.create_user(email="boss@example.com", password="right password")
    user = accounts.create_user(email="u@example.com", password="right password")
    with pytest.raises(PermissionDenied):
        admin.grant_credits(actor=user, email="u@example.com", amount=100)
    with pytest.raises(PermissionDenied):
        admin.overview(actor=user)
    assert ledger.balance(user.id).total == 40
    assert admin.grant_credits(actor=boss, email="u@example.com", amount=100, note="support") == 140
    assert admin.overview(actor=boss).users == 2
    with pytest.raises(ValidationFailed):
        admin.grant_credits(actor=boss, email="u@example.com", amount=0)
    assert ledger.balance(user.id).total == 140 and ledger.reconcile() == []


def test_reset_link_is_mailed_over_smtp_when_configured(database, tmp_path):
    from services.mailer import SmtpMailer, make_mailer
    from tests.fakes.smtp_server import FakeSMTP

    with FakeSMTP() as smtp:
        settings = load_settings(env_file=None, DATA_DIR=str(tmp_path), SMTP_HOST="127.0.0.1", SMTP_PORT=smtp.port,
                                 SMTP_USER="mailer", SMTP_PASSWORD="s3cret", SMTP_FROM="studio@example.com",
                                 SMTP_STARTTLS=False)
        mailer = make_mailer(settings)
        assert isinstance(mailer, SmtpMailer)
        accounts = Accounts(db=database, ledger=Ledger(database), settings=settings, mailer=mailer)
        accounts.create_user(email="mail@example.com", password="right password")
        accounts.request_password_reset(email="mail@example.com", reset_url="https://studio.example.com/reset")
        accounts.request_password_reset(email="nobody@example.com", reset_url="https://studio.example.com/reset")
        accounts.outbox.join()

    assert smtp.logins == [("mailer", "s3cret")]
    assert len(smtp.messages) == 1, "no mail for an unknown address"
    msg = smtp.messages[0]
    assert msg["To"] == "mail@example.com" and msg["From"] == "studio@example.com"
    token = msg.get_content().split("reset?token=")[1].split()[0]
    accounts.reset_password(token=token, new_password="a new password")
    assert accounts.sign_in(email="mail@example.com", password="a new password").token
