"""SQLModel tables, one module per aggregate. Importing this registers them all."""

from models.generation import Generation, ModerationEvent
from models.ledger import CreditGrant, Hold, LedgerEntry
from models.payment import Fulfillment, StripeEvent, Subscription
from models.style import SavedStyle
from models.user import (
    ApiKey,
    AuthEvent,
    EmailVerification,
    Invite,
    OidcLogin,
    PasswordReset,
    TrialClaim,
    User,
    UserIdentity,
    UserSession,
)

__all__ = [
    "ApiKey", "AuthEvent", "CreditGrant", "EmailVerification", "Fulfillment", "Generation", "Hold",
    "Invite", "LedgerEntry", "ModerationEvent", "OidcLogin", "PasswordReset", "SavedStyle", "StripeEvent", "Subscription",
    "TrialClaim", "User", "UserIdentity", "UserSession",
]
