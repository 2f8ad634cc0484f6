"""Plan read-outs: the user's live subscription as the Pricing tab and the plan gates see it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import select

from models.payment import Subscription
from services.db import Database
from services.pricing import Pricing

ACTIVE_STATUSES = ("active", "trialing", "past_due")


@dataclass(frozen=True)
class CurrentPlan:
    subscription_id: str
    product: str  # product key, e.g. "pro_monthly"
    plan: str | None  # plan key, e.g. "pro"
    name: str
    interval: str
    credits: int  # allowance per billing cycle
    status: str
    current_period_end: datetime | None
    cancel_at_period_end: bool

    @property
    def summary(self) -> str:
        per = "year" if self.interval == "year" else "month"
        text = f"{self.name} ({self.credits:,} credits a {per})"
        if self.current_period_end:
            verb = "ends" if self.cancel_at_period_end else "renews"
            text += f", {verb} {self.current_period_end:%Y-%m-%d}"
        if self.status == "past_due":
            text += " — payment overdue, update your card in Manage subscription"
        return text


def current_plan(*, db: Database, pricing: Pricing, user_id: int) -> CurrentPlan | None:
    """The user's live subscription (active, trialing or past due), if any."""
    with db.session() as s:
        row = s.exec(
            select(Subscription)
            .where(Subscription.user_id == user_id, Subscription.status.in_(ACTIVE_STATUSES))
            .order_by(Subscription.updated_at.desc())
        ).first()
    if row is None:
        return None
    product = pricing.find(row.product)
    plan = pricing.plan(product.plan) if product else None
    return CurrentPlan(
        subscription_id=row.id, product=row.product, plan=product.plan if product else None,
        name=plan.name if plan else row.product, interval=row.interval,
        credits=product.credits if product else 0, status=row.status,
        current_period_end=row.current_period_end, cancel_at_period_end=row.cancel_at_period_end,
    )
