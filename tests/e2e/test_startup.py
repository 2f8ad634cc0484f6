"""What the served app does at start-up: migrate, and settle holds left by a dead process."""

from __future__ import annotations

import time
from datetime import timedelta

from models.base import utcnow
from services.db import Database
from services.ledger import Ledger
from tests.clock import Clock
from tests.databases import sqlite_url
from tests.e2e.conftest import start_app
from tests.factories import make_user


def test_start_up_sweep_gives_back_a_dead_process_hold(tmp_path, _sqlite_template):
    url = sqlite_url(_sqlite_template, tmp_path)
    db = Database(url)
    user = make_user(db)
    ledger = Ledger(db, hold_ttl_seconds=60, clock=Clock(utcnow() - timedelta(hours=2)))
    ledger.grant(user_id=user.id, amount=40, kind="pack", idempotency_key="t:pack")
    ledger.reserve(user_id=user.id, amount=20, job_id="job-of-a-dead-process")
    assert Ledger(db).balance(user.id).total == 20
    db.dispose()

    app = start_app(tmp_path, url)
    try:
        live = app.services.ledger
        deadline = time.monotonic() + 20
        while live.get_hold("job-of-a-dead-process").status == "pending" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert live.get_hold("job-of-a-dead-process").status == "expired"
        assert live.balance(user.id).total == 40 and live.balance(user.id).held == 0
        assert live.reconcile() == []
    finally:
        app.stop()
