"""The admin console's service on the real store (SQLite and PostgreSQL): every operation refused
to members, grants and take-backs in the ledger (reconciled), disable/enable, the tables and their
CSV, revenue recorded at fulfilment (the fake Stripe) against the provider cost of token usage."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import timedelta

import pytest

from models.generation import Generation, ModerationEvent
from models.ledger import CREDIT_KIND_LABELS
from services.accounts import Accounts
from services.admin import OPERATOR, TABLES, Admin, provider_cost
from services.errors import AccountDisabled, InvalidCredentials, PermissionDenied, ValidationFailed
from services.ledger import Ledger
from services.mailer import LogMailer
from services.settings import DEFAULT_PROVIDER_PRICES, load_settings
from services.team import Team
from tests.fakes.stripe_server import signed
from tests.integration.test_billing import SECRET, make_billing

USAGE = {"input_tokens": 60, "input_tokens_details": {"text_tokens": 50, "image_tokens": 10},
         "output_tokens": 4000, "output_tokens_details": {"image_tokens": 4000, "text_tokens": 0},
         "total_tokens": 4060}


@pytest.fixture
def console(database, tmp_path, clock):
    settings = load_settings(env_file=None, DATA_DIR=str(tmp_path), ADMIN_EMAILS="boss@example.com",
                             TRIAL_CREDITS=0)
    ledger = Ledger(database, clock=clock)
    accounts = Accounts(db=database, ledger=ledger, settings=settings, mailer=LogMailer(), clock=clock)
    team = Team(db=database, ledger=ledger, settings=settings, clock=clock)
    admin = Admin(db=database, accounts=accounts, ledger=ledger, settings=settings, team=team, clock=clock)
    boss = accounts.create_user(email="boss@example.com", password="long enough")
    return admin, accounts, ledger, boss


def add_generation(db, user_id: int, *, status="succeeded", resolution="1K", engine="openai",
                   model="gpt-image-2", usage=None, at=None) -> None:
    with db.transaction() as s:
        s.add(Generation(id=uuid.uuid4().hex, user_id=user_id, prompt="p", styled_prompt="p", style="none",
                         aspect_ratio="1:1", resolution=resolution, engine=engine, model=model, cost=1,
                         status=status, usage=usage, **({"created_at": at} if at else {})))


def test_every_operation_is_refused_to_a_member(console, make_user, database):
    admin, _, _, _ = console
    member = make_user(database)
    calls = [
        lambda: admin.members(actor=member), lambda: admin.usage(actor=member), lambda: admin.money(actor=member),
        lambda: admin.invites(actor=member), lambda: admin.create_invite(actor=member),
        lambda: admin.grant_credits(actor=member, email=member.email, amount=5),
        lambda: admin.take_back_credits(actor=member, email=member.email, amount=5),
        lambda: admin.set_disabled(actor=member, email=member.email, disabled=False),
        lambda: admin.overview(actor=member), lambda: admin.recent_rejections(actor=member),
        *[lambda name=name: admin.table_csv(actor=member, name=name) for name in TABLES],
        lambda: admin.table_csv(actor=member, name="../../etc/passwd"),
    ]
    for call in calls:
        with pytest.raises(PermissionDenied):
            call()


def test_a_demoted_admin_is_refused_at_once(console, database):
    admin, _, _, boss = console
    from sqlalchemy import update

    from models.user import User

    with database.transaction() as s:
        s.exec(update(User).where(User.id == boss.id).values(role="user"))
    with pytest.raises(PermissionDenied):
        admin.members(actor=boss)  # the object still says admin; the database does not


def test_grants_and_take_backs_are_in_the_ledger_never_below_zero(console, make_user, database):
    admin, _, ledger, boss = console
    member = make_user(database)
    assert admin.grant_credits(actor=boss, email=member.email, amount=30, note="welcome") == 30
    ledger.capture(ledger.reserve(user_id=member.id, amount=5, job_id="g1"))
    assert admin.take_back_credits(actor=boss, email=member.email, amount=10, note="too much") == (10, 15)
    assert admin.take_back_credits(actor=boss, email=member.email, amount=100) == (15, 0)
    assert ledger.balance(member.id).total == 0
    for bad in (0, -3, 1.5, True, None):
        with pytest.raises(ValidationFailed):
            admin.take_back_credits(actor=boss, email=member.email, amount=bad)
    notes = [r.detail for r in ledger.history(member.id, per_page=50).rows if r.kind in ("grant", "adjust")]
    assert "welcome" in notes and "too much" in notes and f"Taken back by {boss.email}" in notes
    assert ledger.reconcile() == []


def test_disabling_revokes_sessions_and_keys_and_sign_in_says_why(console, database):
    admin, accounts, _, boss = console
    member = accounts.create_user(email="m@example.com", password="long enough")
    signed_in = accounts.sign_in(email="m@example.com", password="long enough")
    _, key = accounts.create_api_key(user_id=member.id)
    assert accounts.user_for_session(signed_in.token) and accounts.user_for_api_key(key)

    with pytest.raises(ValidationFailed):
        admin.set_disabled(actor=boss, email=boss.email, disabled=True)
    admin.set_disabled(actor=boss, email=member.email, disabled=True)
    assert accounts.user_for_session(signed_in.token) is None
    assert accounts.user_for_api_key(key) is None
    with pytest.raises(AccountDisabled) as err:
        accounts.sign_in(email="m@example.com", password="long enough")
    assert "disabled" in err.value.message
    with pytest.raises(InvalidCredentials):  # a wrong password learns nothing
        accounts.sign_in(email="m@example.com", password="wrong password")
    assert admin.members(actor=boss, query="m@ex").rows[0][2] == "disabled"

    admin.set_disabled(actor=boss, email=member.email, disabled=False)
    again = accounts.sign_in(email="m@example.com", password="long enough")
    assert accounts.user_for_session(again.token).id == member.id
    assert accounts.user_for_session(signed_in.token) is None and accounts.user_for_api_key(key) is None


def test_members_table_and_its_csv(console, make_user, database):
    admin, _, ledger, boss = console
    member = make_user(database, email="Alice_1@example.com")
    make_user(database, email="alicex1@example.com")  # "_" is literal in the search
    admin.grant_credits(actor=boss, email=member.email, amount=7)
    add_generation(database, member.id)
    add_generation(database, member.id, status="failed")
    table = admin.members(actor=boss, query="alice_")
    assert [r[0] for r in table.rows] == ["alice_1@example.com"]
    row = dict(zip(table.headers, table.rows[0], strict=True))
    assert row["Balance"] == 7 and row[CREDIT_KIND_LABELS["admin"]] == 7 and row["Generations"] == 2
    assert row["Plan"] == "no plan" and row["Status"] == "active" and row["Last activity (UTC)"]

    for name in TABLES:
        shown = admin.table(actor=boss, name=name)
        parsed = list(csv.reader(io.StringIO(admin.table_csv(actor=boss, name=name))))
        assert parsed[0] == shown.headers
        assert parsed[1:] == [[str(v) for v in r] for r in shown.rows], name


def test_usage_per_day_resolution_and_engine(console, make_user, database, clock):
    admin, _, ledger, boss = console
    member = make_user(database)
    today = clock.now
    for status in ("succeeded", "succeeded", "failed"):
        add_generation(database, member.id, status=status, at=today)
    add_generation(database, member.id, resolution="2K", engine="offline", model="offline", at=today)
    add_generation(database, member.id, at=today - timedelta(days=1))
    ledger.grant(user_id=member.id, amount=10, kind="admin", idempotency_key="u1")
    ledger.release(ledger.reserve(user_id=member.id, amount=4, job_id="failed-job"), "provider failed")
    with database.transaction() as s:
        s.add(ModerationEvent(user_id=member.id, prompt="bad", source="blocklist", created_at=today))
    per_kind, per_day = admin.usage(actor=boss)
    day, yesterday = f"{today:%Y-%m-%d}", f"{today - timedelta(days=1):%Y-%m-%d}"
    assert [day, "1K", "openai", 3, 2, 1] in per_kind.rows
    assert [day, "2K", "offline", 1, 1, 0] in per_kind.rows
    assert [yesterday, "1K", "openai", 1, 1, 0] in per_kind.rows
    assert per_day.rows[0] == [day, 4, 1, 1, 4, 1]


def test_revenue_at_fulfilment_against_provider_cost(database, tmp_path, fake_stripe, console, make_user):
    admin, _, _, boss = console
    billing = make_billing(database, tmp_path, api_base=fake_stripe.url)
    billing.sync_catalog()
    member = make_user(database)
    url = billing.create_checkout(user=member, product="pack_500")
    session = fake_stripe.complete_checkout(url.rsplit("/", 1)[1])
    payload, header = signed(fake_stripe.event("checkout.session.completed", session), SECRET)
    assert billing.handle_webhook(payload, header)["status"] == "granted"
    paid = session["amount_total"]
    refund = fake_stripe.refund(session["payment_intent"], amount=paid // 4)
    payload, header = signed(fake_stripe.event("charge.refunded", refund), SECRET)
    billing.handle_webhook(payload, header)
    for _ in range(3):
        add_generation(database, member.id, usage=USAGE)
    add_generation(database, member.id, engine="offline", model="offline")  # no usage: no cost

    prices = DEFAULT_PROVIDER_PRICES["gpt-image-2"]
    one = (50 * prices["text_input"] + 10 * prices["image_input"] + 4000 * prices["image_output"]) / 1e6
    assert provider_cost(USAGE, "gpt-image-2", DEFAULT_PROVIDER_PRICES) == pytest.approx(one)
    assert provider_cost(USAGE, "gpt-image-2-2026-10-01", DEFAULT_PROVIDER_PRICES) == pytest.approx(one)
    daily, plans = admin.money(actor=boss)
    revenue = (paid - paid // 4) / 100
    assert daily.headers[1] == "Revenue (USD)"
    assert daily.rows[0][1:] == [f"{revenue:.2f}", 4, f"{3 * one:.4f}", f"{revenue - 3 * one:.2f}"]
    assert plans.rows == [["no plan", f"{revenue:.2f}", 4, f"{3 * one:.4f}", f"{revenue - 3 * one:.2f}"]]


def test_operator_creates_invites_and_grants(console, make_user, database):
    admin, _, ledger, _ = console
    member = make_user(database)
    assert admin.grant_credits(actor=OPERATOR, email=member.email, amount=3) == 3
    invite = admin.create_invite(actor=OPERATOR, email="new@example.com", days=3)
    assert invite.token.startswith("inv_") and invite.email == "new@example.com"


def test_the_console_s_column_names_read_in_chinese_and_stay_english_in_csv(console, make_user, database):
    """Every column of the console's tables (as services/admin.py names them) is shown in Chinese on
    a zh-CN page (ui/admin.py); the English names stay for English pages and the CSV."""
    from ui.admin import header_text

    admin, *_ = console
    tables = [admin.members(actor=OPERATOR), *admin.usage(actor=OPERATOR), *admin.money(actor=OPERATOR),
              admin.invites(actor=OPERATOR)]
    for table in tables:
        for header in table.headers:
            shown = header_text(header, "zh-CN")
            assert not re.sub(r"UTC|USD|CNY|[()\s]", "", shown).isascii(), (table.name, header, shown)
            assert header_text(header, "en") == header
