"""Hardening of money paths through the served app and the CLI (issue 17, items 13-15; issue 9):
webhooks over HTTP against the fake Stripe, the admin grant through Gradio's queue as the browser
calls it, and `python app.py credits grant` in a subprocess."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from models.ledger import LedgerEntry
from models.payment import StripeEvent
from services.db import Database
from services.ledger import MAX_AMOUNT, MAX_BALANCE, Ledger
from tests.e2e.conftest import queue_event, shop, sign_up
from tests.factories import make_user
from tests.fakes.stripe_server import FakeStripe, new_id, signed

ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec_hardening_secret"


@pytest.fixture
def fake():
    with FakeStripe() as server:
        yield server


@pytest.fixture
def shop_app(serve_app, database_url, fake):
    return shop(serve_app, database_url=database_url, stripe_url=fake.url, webhook_secret=SECRET)


def post_event(app, fake: FakeStripe, type_: str, obj: dict) -> httpx.Response:
    payload, header = signed(fake.event(type_, obj), SECRET)
    return httpx.post(f"{app.url}/webhooks/stripe", content=payload,
                      headers={"Stripe-Signature": header, "Content-Type": "application/json"}, timeout=60)


def subscriber(app, fake, product: str = "basic_monthly"):
    email = f"sub-{uuid.uuid4().hex[:10]}@example.com"
    sign_up(app, email)
    user = app.services.accounts.get_user_by_email(email)
    url = app.services.billing.create_checkout(user=user, product=product)
    session = fake.complete_checkout(url.rsplit("/", 1)[1])
    assert post_event(app, fake, "checkout.session.completed", session).json()["status"] == "granted"
    return user, session["subscription"]


def pro_price(fake) -> str:
    return next(p["id"] for p in fake.prices.values() if p["lookup_key"] == "studio_pro_monthly")


def test_invoice_paid_over_http_reads_the_invoice_from_stripe(shop_app, fake):
    app = shop_app
    balance = lambda u: app.services.ledger.balance(u.id).total  # noqa: E731
    user, sub_id = subscriber(app, fake)
    start = balance(user)
    with app.services.db.session() as s:
        events = len(s.exec(select(StripeEvent)).all())

    # An invoice Stripe never issued, for the user's real subscription, claiming the Pro price.
    made_up = fake.renew(sub_id)
    del fake.invoices[made_up["id"]]
    made_up["id"] = new_id("in")
    made_up["lines"]["data"][0]["pricing"]["price_details"]["price"] = pro_price(fake)
    r = post_event(app, fake, "invoice.paid", made_up)
    assert r.status_code == 502 and "no such invoice" in r.json()["error"]
    assert balance(user) == start
    with app.services.db.session() as s:
        assert len(s.exec(select(StripeEvent)).all()) == events, "not recorded: a real event would be retried"

    # A real renewal whose embedded copy says Pro: Stripe's Basic renewal is what is granted.
    real = fake.renew(sub_id)
    claimed = copy.deepcopy(real)
    claimed["lines"]["data"][0]["pricing"]["price_details"]["price"] = pro_price(fake)
    r = post_event(app, fake, "invoice.paid", claimed)
    assert r.status_code == 200 and r.json()["status"] == "granted"
    assert "300 credits" in r.json()["message"]
    assert app.services.ledger.balance(user.id).buckets["subscription"] == 300


# The admin grant as the browser sends it ------------------------------------------------------------


def run_event(app, api_key: str, api_name: str, data: list) -> dict:
    """Call a UI event through Gradio's queue exactly as the page does (these events are
    api_visibility="private": gradio_client will not call them). Returns the final message."""
    with app.client(headers={"Authorization": f"Bearer {api_key}"}) as http:
        config = http.get("/config").json()
        fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == api_name)
        return queue_event(http, fn_index, data, session_hash=uuid.uuid4().hex)


def test_admin_grant_in_the_served_ui_refuses_what_is_not_a_whole_number(serve_app):
    app = serve_app()
    accounts, ledger = app.services.accounts, app.services.ledger
    boss = accounts.create_user(email=f"boss-{uuid.uuid4().hex[:8]}@example.com", password="right password",
                                admin=True)
    _, key = accounts.create_api_key(user_id=boss.id, name="test")
    user = accounts.create_user(email=f"u-{uuid.uuid4().hex[:8]}@example.com", password="right password")
    start = ledger.balance(user.id).total

    for amount in (1.5, 2.5, True):
        done = run_event(app, key, "admin_grant", [user.email, amount, "bad"])
        assert done["success"] is False, (amount, done)
        assert "whole number of credits" in done["output"]["error"], done
    assert ledger.balance(user.id).total == start

    done = run_event(app, key, "admin_grant", [user.email, 3, "fine"])
    assert done["success"] is True and f"now has **{start + 3}** credits" in done["output"]["data"][0]
    assert ledger.balance(user.id).total == start + 3


# The CLI -------------------------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path, database_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "STRIPE_", "SMTP_"))}
    env.update({"DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": database_url, "IMAGE_PROVIDER": "offline",
                "TRIAL_CREDITS": "0", "GRADIO_ANALYTICS_ENABLED": "False"})

    def run(*args: str, expect: int = 0) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, str(ROOT / "app.py"), *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == expect, (proc.stdout, proc.stderr)
        return proc

    return run


def test_cli_grant_goes_through_the_admin_service_and_stops_at_the_cap(cli, database_url):
    db = Database(database_url)
    try:
        user = make_user(db, email=f"cli-{uuid.uuid4().hex[:8]}@example.com")
        done = cli("credits", "grant", user.email, "25", "--note", "support ticket 7")
        assert json.loads(done.stdout.strip().splitlines()[-1]) == {"balance": 25}
        with db.session() as s:
            entry = s.exec(select(LedgerEntry).where(LedgerEntry.user_id == user.id)).one()
        assert entry.idempotency_key.startswith("admin:cli:") and entry.note == "support ticket 7"

        ledger = Ledger(db)
        for i in range(MAX_BALANCE // MAX_AMOUNT - 1):
            ledger.grant(user_id=user.id, amount=MAX_AMOUNT, kind="pack", idempotency_key=f"fill:{i}")
        refused = cli("credits", "grant", user.email, str(MAX_AMOUNT), expect=1)
        last = refused.stderr.strip().splitlines()[-1]  # after the migration's log lines
        assert last.startswith("error: ") and "at most 1,000,000,000 credits" in last
        assert "Traceback" not in refused.stderr
        assert refused.stdout.strip() == ""
        assert ledger.balance(user.id).total == MAX_BALANCE - MAX_AMOUNT + 25

        refused = cli("credits", "grant", user.email, "0", expect=1)
        assert refused.stderr.strip().splitlines()[-1].startswith("error: Enter a whole number of credits")
    finally:
        db.dispose()
