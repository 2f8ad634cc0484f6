"""SQLModel tables, one module per aggregate. Importing this registers them all."""

from models.generation import Generation, ModerationEvent
from models.ledger import CreditGrant, Hold, LedgerEntry
from models.payment import Fulfillment, StripeEvent, Subscription
from models.user import ApiKey, AuthEvent, PasswordReset, User, UserSession

__all__ = [
    "ApiKey", "AuthEvent", "CreditGrant", "Fulfillment", "Generation", "Hold", "LedgerEntry",
    "ModerationEvent", "PasswordReset", "StripeEvent", "Subscription", "User", "UserSession",
]
