"""The payment aggregate: Stripe events seen, fulfilments granted, subscriptions known."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from models.base import utcnow


class StripeEvent(SQLModel, table=True):
    """Every webhook event id we processed; a replay is a no-op."""

    __tablename__ = "stripe_events"

    id: str = Field(primary_key=True, max_length=255)  # evt_...
    type: str = Field(max_length=100)
    outcome: str | None = Field(default=None, max_length=255)  # what handling did, for operators
    received_at: datetime = Field(default_factory=utcnow)


class Fulfillment(SQLModel, table=True):
    """One payment turned into credits, keyed by the Stripe object that paid for them."""

    __tablename__ = "fulfillments"

    id: int | None = Field(default=None, primary_key=True)
    ref: str = Field(max_length=255, unique=True)  # cs_... | in_... | refund:ch_...:<amount refunded>
    user_id: int = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    kind: str = Field(max_length=32)  # pack | subscription | refund
    product: str | None = Field(default=None, max_length=64)  # product key in assets/pricing.json
    credits: int = 0  # granted; for a refund, the credits asked back (the ledger never goes below zero)
    payment_intent: str | None = Field(default=None, max_length=255, index=True)
    # What Stripe says was paid (cents of `currency`; a refund's is negative), recorded at fulfilment.
    amount_cents: int = 0
    currency: str | None = Field(default=None, max_length=8)
    created_at: datetime = Field(default_factory=utcnow)


class Subscription(SQLModel, table=True):
    """The last known state of a Stripe subscription, as fetched from the Stripe API."""

    __tablename__ = "subscriptions"

    id: str = Field(primary_key=True, max_length=255)  # sub_...
    user_id: int = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    product: str = Field(max_length=64)  # product key in assets/pricing.json, e.g. "pro_monthly"
    interval: str = Field(default="month", max_length=16)
    status: str = Field(max_length=32)
    current_period_end: datetime | None = None
    cancel_at_period_end: bool = False
    updated_at: datetime = Field(default_factory=utcnow)
