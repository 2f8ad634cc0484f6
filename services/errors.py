"""Domain errors. Each carries a message fit to show the user as it is (English), and may carry a
key of assets/i18n/*.json with the values of its placeholders, so the place where errors become
what a person sees (ui/common.py `user_facing`, the pages) shows it in that person's language."""

from __future__ import annotations


class DomainError(Exception):
    """Base class: `str(err)` is the user-facing message."""

    status_code = 400

    def __init__(self, message: str, *, key: str | None = None, **params):
        super().__init__(message)
        self.message = message
        self.key = key
        self.params = params

    def text(self, language: str | None) -> str:
        """The message in `language` when it has a key, else the English message."""
        if self.key is None:
            return self.message
        from services.i18n import t

        return t(language, self.key, **self.params)


class ValidationFailed(DomainError):
    """Bad input: refused before anything changes."""


class AuthError(DomainError):
    status_code = 401


class InvalidCredentials(AuthError):
    def __init__(self, message: str = "Incorrect email or password."):
        super().__init__(message, key="error.invalid_credentials" if message == "Incorrect email or password." else None)


class AccountLocked(AuthError):
    status_code = 429


class AccountDisabled(AuthError):
    status_code = 403

    def __init__(self, message: str = "This account is disabled. Ask an administrator of this studio."):
        super().__init__(message, key="error.account_disabled"
                         if message == "This account is disabled. Ask an administrator of this studio." else None)


class RateLimited(DomainError):
    status_code = 429


class PermissionDenied(DomainError):
    status_code = 403


class NotFound(DomainError):
    status_code = 404


class Conflict(DomainError):
    status_code = 409


class InsufficientCredits(DomainError):
    status_code = 402

    def __init__(self, *, needed: int, available: int, message: str | None = None):
        self.needed = needed
        self.available = available
        self.shortfall = max(0, needed - available)
        super().__init__(
            message
            or f"This needs {needed} credits and you have {available}. Buy more credits on the Pricing tab.",
            key=None if message else "error.insufficient_credits", needed=needed, available=available,
        )


class ContentRejected(DomainError):
    """The prompt or image was refused by content-safety moderation. Never charged."""


class ProviderFailed(DomainError):
    """The image provider failed (timeout, 5xx, 429, bad data). Never charged."""

    status_code = 502


class PaymentsNotConfigured(DomainError):
    status_code = 503

    def __init__(self, message: str = "Payments are not configured on this instance."):
        super().__init__(message, key="error.payments_not_configured"
                         if message == "Payments are not configured on this instance." else None)


class PaymentError(DomainError):
    status_code = 502


class WebhookRejected(DomainError):
    """A webhook whose signature is missing, wrong or stale, or whose body is not an event."""

    def __init__(self, message: str = "Invalid webhook signature."):
        super().__init__(message, key="error.webhook_rejected" if message == "Invalid webhook signature." else None)
