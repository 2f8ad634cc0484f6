"""Booking: the work prepared from Stripe (purchases, subscription states, customers, a refund)
is booked in ONE transaction, with the event id, a `Fulfillment` row per UNIQUE ref and the
ledger grant under `stripe:<ref>`. A racing twin delivery rolls back whole and retries."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, func, select

from models.base import utcnow
from models.payment import Fulfillment, StripeEvent, Subscription
from models.user import User
from services.db import Database
from services.pricing import Product

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FulfilmentResult:
    # granted | already_fulfilled | pending | refunded | updated | ignored | duplicate (event seen)
    status: str
    product: str | None = None
    credits: int = 0
    message: str = ""


# Work prepared from Stripe, booked in one transaction ---------------------------------------------


@dataclass
class Purchase:
    ref: str  # cs_... (pack) or in_... (plan): the UNIQUE Fulfillment.ref
    user_id: int
    product: Product
    payment_intent: str | None = None
    period_end: datetime | None = None  # plans: end of the service period paid for
    amount_cents: int = 0  # what Stripe says was paid (the session's amount_total, the invoice's amount_paid)
    currency: str | None = None

    @property
    def key(self) -> str:
        return f"stripe:{self.ref}"


@dataclass
class SubscriptionState:
    id: str
    user_id: int
    product: str
    interval: str
    status: str
    current_period_end: datetime | None
    cancel_at_period_end: bool


@dataclass
class Refund:
    charge_id: str
    payment_intent: str
    amount: int
    amount_refunded: int


@dataclass
class Work:
    purchases: list[Purchase] = field(default_factory=list)
    subscriptions: list[SubscriptionState] = field(default_factory=list)
    customers: list[tuple[int, str]] = field(default_factory=list)  # (user id, Stripe customer id)
    refund: Refund | None = None
    pending: str | None = None  # why nothing can be granted yet
    ignored: str | None = None  # why this changes nothing


def cents(value) -> int:
    """A Stripe amount (integer, smallest currency unit); anything else counts as 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def ignored(reason: str) -> Work:
    return Work(ignored=reason)


class Booking:
    """Books prepared work exactly once: one transaction per delivery, retried after a lost race."""

    def __init__(self, *, db: Database, ledger):
        self.db = db
        self.ledger = ledger

    def run(self, prepare: Callable[[], Work], *, event: tuple[str, str] | None = None) -> FulfilmentResult:
        """Prepare (read Stripe, outside any transaction), then book; with `event`, record it too."""
        attempts = 4
        for attempt in range(1, attempts + 1):
            if event is not None and self._event_seen(event[0]):
                return FulfilmentResult("duplicate", message=f"event {event[0]} already handled")
            work = prepare()
            try:
                with self.db.transaction() as s:
                    row = None
                    if event is not None:
                        row = StripeEvent(id=event[0], type=event[1])
                        s.add(row)
                        s.flush()  # a concurrent delivery of the same event fails here
                    result = self._apply(s, work)
                    if row is not None:
                        row.outcome = f"{result.status}: {result.message}"[:255]
                        s.add(row)
                return result
            except (IntegrityError, OperationalError) as exc:
                # Lost a race (the same payment or event booked concurrently) or a deadlock /
                # lock timeout: everything rolled back; look again.
                if attempt == attempts:
                    raise
                log.info("billing transaction retried after %s", type(exc).__name__)
                time.sleep(random.uniform(0.01, 0.05) * attempt)
        raise AssertionError("unreachable")

    def _apply(self, s: Session, work: Work) -> FulfilmentResult:
        if work.ignored:
            log.info("stripe: %s", work.ignored)
            return FulfilmentResult("ignored", message=work.ignored)
        for user_id, customer in work.customers:
            self._link_customer(s, user_id, customer)
        granted, already = [], []
        for purchase in work.purchases:
            (granted if self._book_purchase(s, purchase) else already).append(purchase)
        for state in work.subscriptions:
            self._store_subscription(s, state)
        clawed = self._book_refund(s, work.refund) if work.refund else None
        if clawed is not None:
            return FulfilmentResult("refunded", message=clawed)
        if granted:
            p = granted[0]
            credits = sum(x.product.credits for x in granted)
            return FulfilmentResult("granted", product=p.product.key, credits=credits,
                                    message=f"{credits:,} credits added ({p.product.name}) for {p.ref}")
        if already:
            p = already[0]
            return FulfilmentResult("already_fulfilled", product=p.product.key, credits=p.product.credits,
                                    message=f"{p.ref} was already fulfilled")
        if work.pending:
            return FulfilmentResult("pending", message=work.pending)
        return FulfilmentResult("updated", message="subscription state updated")

    def _book_purchase(self, s: Session, p: Purchase) -> bool:
        """Grant a purchase unless its ref was booked before. True when granted now."""
        if s.exec(select(Fulfillment.id).where(Fulfillment.ref == p.ref)).first() is not None:
            return False
        row = Fulfillment(ref=p.ref, user_id=p.user_id, kind="pack" if p.product.kind == "pack" else "subscription",
                          product=p.product.key, credits=p.product.credits, payment_intent=p.payment_intent,
                          amount_cents=p.amount_cents, currency=(p.currency or "").lower()[:8] or None)
        s.add(row)
        s.flush()  # claims the ref before any credit moves; a racing twin fails (or waits) here
        note = f"{p.product.name} ({p.ref})"
        if p.product.kind == "pack":
            self.ledger.grant(user_id=p.user_id, amount=p.product.credits, kind="pack",
                              idempotency_key=p.key, note=note, session=s)
        elif p.period_end is not None and p.period_end > utcnow():
            result = self.ledger.refresh_subscription(
                user_id=p.user_id, allowance=p.product.credits, period_end=p.period_end,
                idempotency_key=p.key, note=note, session=s,
            )
            row.credits = result.amount
        else:
            log.warning("invoice %s paid for a period that has already ended: no credits", p.ref)
            row.credits = 0
        s.add(row)
        return True

    def _book_refund(self, s: Session, refund: Refund) -> str:
        pack = s.exec(select(Fulfillment).where(
            Fulfillment.payment_intent == refund.payment_intent, Fulfillment.kind == "pack")).first()
        if pack is None:
            return f"charge {refund.charge_id}: no pack to take back"
        ref = f"refund:{refund.charge_id}:{refund.amount_refunded}"
        if s.exec(select(Fulfillment.id).where(Fulfillment.ref == ref)).first() is not None:
            return f"{ref} was already booked"
        if refund.amount_refunded >= refund.amount:
            target = pack.credits
        else:  # a partial refund takes back the same share of the credits, rounded up
            target = -(-pack.credits * refund.amount_refunded // refund.amount)
        asked_before = s.exec(select(func.coalesce(func.sum(Fulfillment.credits), 0)).where(
            Fulfillment.payment_intent == refund.payment_intent, Fulfillment.kind == "refund")).one()
        ask = target - int(asked_before)
        # Revenue given back: what this refund adds to the refunds booked before, negative.
        refunded_before = -int(s.exec(select(func.coalesce(func.sum(Fulfillment.amount_cents), 0)).where(
            Fulfillment.payment_intent == refund.payment_intent, Fulfillment.kind == "refund")).one())
        s.add(Fulfillment(ref=ref, user_id=pack.user_id, kind="refund", product=pack.product,
                          credits=max(ask, 0), payment_intent=refund.payment_intent,
                          amount_cents=-max(refund.amount_refunded - refunded_before, 0), currency=pack.currency))
        s.flush()
        if ask <= 0:
            return f"{ref}: nothing more to take back"
        taken = self.ledger.clawback(user_id=pack.user_id, source_ref=f"stripe:{pack.ref}",
                                     idempotency_key=f"stripe:{ref}", amount=ask, session=s)
        return f"{taken} of {ask} credits taken back from {pack.ref}"

    def _store_subscription(self, s: Session, state: SubscriptionState) -> None:
        row = s.get(Subscription, state.id)
        if row is None:
            row = Subscription(id=state.id, user_id=state.user_id, product=state.product, status=state.status)
        row.user_id = state.user_id
        row.product = state.product
        row.interval = state.interval
        row.status = state.status
        row.current_period_end = state.current_period_end
        row.cancel_at_period_end = state.cancel_at_period_end
        row.updated_at = utcnow()
        s.add(row)
        s.flush()

    def _link_customer(self, s: Session, user_id: int, customer: str | None) -> None:
        """Remember the user's Stripe customer (first one wins) so later checkouts reuse it."""
        if not customer:
            return
        current = s.exec(select(User.stripe_customer_id).where(User.id == user_id)).first()
        if current is not None:
            return
        owner = s.exec(select(User.id).where(User.stripe_customer_id == customer)).first()
        if owner is not None:
            if owner != user_id:
                log.warning("Stripe customer %s already belongs to user %s, not linked to user %s",
                            customer, owner, user_id)
            return
        s.execute(update(User).where(User.id == user_id, User.stripe_customer_id.is_(None))
                  .values(stripe_customer_id=customer))

    def _event_seen(self, event_id: str) -> bool:
        with self.db.session() as s:
            return s.get(StripeEvent, event_id) is not None
