"""Retention through the sweep, with the test clock: what is older than RETENTION_DAYS goes, what is
younger (or still in use) stays, and it runs at most once an hour per sweeper."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlmodel import select

from models.payment import StripeEvent
from models.user import AuthEvent, PasswordReset, UserSession
from services.maintenance import Maintenance


def _rows(rig, model) -> list:
    with rig.db.session() as s:
        return list(s.exec(select(model)))


def _seed(rig, user_id: int, *, old: timedelta, young: timedelta) -> None:
    now = rig.clock()
    with rig.db.transaction() as s:
        def session(tag, **kw):
            s.add(UserSession(user_id=user_id, token_hash=f"{tag}-{uuid.uuid4().hex}"[:64], created_at=now - old,
                              last_seen_at=now - old, **kw))
        session("expired-long-ago", expires_at=now - old)
        session("revoked-long-ago", expires_at=now + timedelta(days=5), revoked_at=now - old)
        session("expired-recently", expires_at=now - young)
        session("live", expires_at=now + timedelta(days=5))
        s.add(AuthEvent(kind="signin_failed", email="a@example.com", ip="10.0.0.1", created_at=now - old))
        s.add(AuthEvent(kind="signin_ok", email="a@example.com", ip="10.0.0.1", created_at=now - young))
        s.add(StripeEvent(id=f"evt_old_{uuid.uuid4().hex}", type="checkout.session.completed", received_at=now - old))
        s.add(StripeEvent(id=f"evt_new_{uuid.uuid4().hex}", type="checkout.session.completed", received_at=now - young))
        s.add(PasswordReset(user_id=user_id, token_hash=uuid.uuid4().hex, created_at=now - old, expires_at=now - old))
        s.add(PasswordReset(user_id=user_id, token_hash=uuid.uuid4().hex, created_at=now, expires_at=now + young))


def test_the_sweep_prunes_what_is_older_than_retention_days(make_rig):
    rig = make_rig(RETENTION_DAYS="30")
    uid = rig.user(credits=10)
    _seed(rig, uid, old=timedelta(days=31), young=timedelta(days=29))
    maintenance = Maintenance(db=rig.db, ledger=rig.ledger, studio=rig.studio, clock=rig.clock)

    summary = maintenance.sweep(now=rig.clock())
    assert (summary["pruned_sessions"], summary["pruned_auth_events"], summary["pruned_stripe_events"],
            summary["pruned_password_resets"], summary["errors"]) == (2, 1, 1, 1, 0)
    assert sorted(s.token_hash.split("-")[0] for s in _rows(rig, UserSession)) == ["expired", "live"]
    assert [e.kind for e in _rows(rig, AuthEvent)] == ["signin_ok"]
    assert [e.id[:8] for e in _rows(rig, StripeEvent)] == ["evt_new_"]
    assert len(_rows(rig, PasswordReset)) == 1
    assert rig.balance(uid) == 10 and rig.ledger.reconcile() == []

    # Within the hour the sweeper does not look again; after it, the next rows past the line go.
    rig.clock.advance(days=2)
    assert "pruned_sessions" not in maintenance.sweep(now=rig.clock() - timedelta(days=2) + timedelta(minutes=59))
    summary = maintenance.sweep(now=rig.clock())
    assert (summary["pruned_sessions"], summary["pruned_auth_events"], summary["pruned_stripe_events"]) == (1, 1, 1)
    assert [s.token_hash.split("-")[0] for s in _rows(rig, UserSession)] == ["live"]


def test_default_is_ninety_days(make_rig):
    rig = make_rig()
    assert rig.studio.settings.retention_days == 90
    uid = rig.user(credits=0)
    _seed(rig, uid, old=timedelta(days=91), young=timedelta(days=89))
    summary = Maintenance(db=rig.db, ledger=rig.ledger, studio=rig.studio, clock=rig.clock).sweep(now=rig.clock())
    assert (summary["pruned_sessions"], summary["pruned_auth_events"], summary["pruned_stripe_events"]) == (2, 1, 1)
