"""Billing with Stripe: Checkout for packs and plans, the Customer Portal, webhooks, fulfilment.

How a payment becomes credits, exactly once:
- Both the webhook and the success redirect call the same fulfilment code. It first fetches
  what it needs from the Stripe API (the Checkout Session with its line items, the invoice, the
  subscription, the refunded charge), outside any database transaction, then books everything in ONE transaction:
  the event id (webhooks), a `Fulfillment` row whose UNIQUE `ref` is the checkout session id
  (packs) or the invoice id (plans), and the ledger grant under the key `stripe:<ref>`. Two
  racing deliveries cannot both book: the loser hits the unique ref (or waits for SQLite's
  write lock), rolls back whole, retries and finds the payment already fulfilled.
- An event only names objects: the session, invoice, subscription or refunded charge it is about
  is read from the Stripe API, never taken from the event's copy. An object Stripe does not
  know grants nothing and answers 502, so Stripe retries a real event (see handle_webhook).
- Who is paid for comes from the metadata we set at checkout (`user_id`, `product`; plans copy
  it onto the subscription); how many credits comes from assets/pricing.json, never from Stripe.
- Subscription credits expire at the end of the service period on the invoice line (not at
  `invoice.period_end`, which is the usage period the invoice closes).

The package: gateway.py (PaymentGateway, StripeGateway, reading Stripe objects), checkout.py
(buying, the portal, the success redirect), webhooks.py (signature check, one handler per event),
fulfilment.py (booking in one transaction), catalog_sync.py (`python app.py stripe sync`),
plans.py (the live plan read-out), service.py (the `Billing` facade that ties them together).
"""

from services.billing.fulfilment import FulfilmentResult
from services.billing.gateway import PaymentGateway, StripeGateway, make_gateway
from services.billing.plans import CurrentPlan
from services.billing.service import Billing

__all__ = [
    "Billing",
    "CurrentPlan",
    "FulfilmentResult",
    "PaymentGateway",
    "StripeGateway",
    "make_gateway",
]
