"""One label per credit kind: the Account tab's balance and the ledger's history say the same words."""

from __future__ import annotations

from datetime import timedelta

from models.base import utcnow
from models.ledger import CREDIT_KIND_LABELS, GRANT_KINDS
from services.ledger import Ledger
from ui.account import balance_markdown


class Clock:
    def __init__(self):
        self.now = utcnow()

    def __call__(self):
        return self.now


def test_every_kind_has_one_label_used_by_the_balance_and_the_history(sqlite_database, make_user):
    assert set(CREDIT_KIND_LABELS) == set(GRANT_KINDS)
    assert len(set(CREDIT_KIND_LABELS.values())) == len(GRANT_KINDS)
    clock = Clock()
    ledger = Ledger(sqlite_database, clock=clock)
    user = make_user(sqlite_database)
    for i, kind in enumerate(GRANT_KINDS, start=1):
        ledger.grant(user_id=user.id, amount=i, kind=kind, idempotency_key=f"labels:{kind}",
                     expires_at=clock.now + timedelta(days=1))

    panel = balance_markdown(ledger.balance(user.id)).splitlines()
    history = ledger.history(user.id, per_page=50).rows
    for i, kind in enumerate(GRANT_KINDS, start=1):
        label = CREDIT_KIND_LABELS[kind]
        assert any(line.startswith(f"- {label}") and line.endswith(f": **{i}**") for line in panel), (kind, panel)
    assert sorted(row.what for row in history) == sorted(CREDIT_KIND_LABELS.values())

    clock.now += timedelta(days=2)
    assert ledger.expire_due(user_id=user.id) == len(GRANT_KINDS)
    expired = [row.what for row in ledger.history(user.id, per_page=50).rows if row.kind == "expiry"]
    assert sorted(expired) == sorted(f"{label}: credits expired" for label in CREDIT_KIND_LABELS.values())


def test_the_labels_are_the_same_words_in_the_english_table_and_are_translated(sqlite_database, make_user):
    from services import i18n

    for kind, label in CREDIT_KIND_LABELS.items():
        assert i18n.t("en", f"credit.kind.{kind}") == label
        assert i18n.t("zh-CN", f"credit.kind.{kind}") != label
    ledger = Ledger(sqlite_database, clock=Clock())
    user = make_user(sqlite_database)
    ledger.grant(user_id=user.id, amount=7, kind="team", idempotency_key="labels:zh")
    panel = balance_markdown(ledger.balance(user.id), "zh-CN")
    assert "- 团队额度（每月）: **7**" in panel.splitlines() and "可用点数：7" in panel
    assert [row.what for row in ledger.history(user.id, language="zh-CN").rows] == ["团队额度（每月）"]
