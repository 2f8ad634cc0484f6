"""What the API doors share: who is calling (the API key, looked up in a worker thread, never on
the event loop), and the studio's domain errors as an HTTP status, an OpenAI error type and code."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field

import anyio

from services.container import Services
from services.errors import (
    AuthError,
    ContentRejected,
    DomainError,
    InsufficientCredits,
    NotFound,
    PermissionDenied,
    ProviderFailed,
    RateLimited,
    ValidationFailed,
)
from services.studio.limits import RATE_WINDOW

log = logging.getLogger("studio.api")

MISSING_KEY = ("Missing, invalid or revoked API key (an administrator who disables an account revokes its keys). "
               "Create a key on the Account tab (or `python app.py apikey create`) "
               "and send it as `Authorization: Bearer sk_studio_…`.")
# The per-minute window is the longest a refused caller can have to wait.
RETRY_AFTER_SECONDS = int(RATE_WINDOW.total_seconds())


@dataclass(frozen=True)
class Caller:
    """The user behind an API key, as the services need them."""

    user_id: int
    is_admin: bool


def bearer_token(authorization: str | None) -> str | None:
    scheme, _, value = (authorization or "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


async def caller_for(services: Services, authorization: str | None) -> Caller | None:
    """The owner of the API key in an `Authorization: Bearer` header, or None. Session cookies are
    not accepted here: these doors are for programs, which hold keys."""
    token = bearer_token(authorization)
    if token is None:
        return None
    user = await anyio.to_thread.run_sync(services.accounts.user_for_api_key, token)
    return Caller(user_id=user.id, is_admin=bool(user.is_admin)) if user is not None else None


@dataclass(frozen=True)
class Refusal:
    """A refusal in OpenAI's error vocabulary: `{"error": {"message", "type", "param", "code"}}`."""

    status: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class ApiError(Exception):
    """Raised inside an API handler; answered as its `Refusal`."""

    def __init__(self, refusal: Refusal):
        super().__init__(refusal.message)
        self.refusal = refusal


def invalid(message: str, *, param: str | None, code: str = "invalid_value", status: int = 400) -> ApiError:
    return ApiError(Refusal(status, message, param=param, code=code))


def unauthenticated() -> Refusal:
    return Refusal(401, MISSING_KEY, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


def refusal_for(err: DomainError, *, param: str | None = None) -> Refusal:
    """The studio's own message, with the status, type and code an OpenAI client understands.
    Nothing is charged for any of these: the studio releases the hold before it raises."""
    message = err.message
    if isinstance(err, InsufficientCredits):
        return Refusal(402, message, type="insufficient_credits", code="insufficient_credits")
    if isinstance(err, RateLimited):
        return Refusal(429, message, type="rate_limit_error", code="rate_limit_exceeded",
                       headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    if isinstance(err, ContentRejected):
        return Refusal(400, message, type="image_generation_user_error", param="prompt", code="moderation_blocked")
    if isinstance(err, ProviderFailed):
        return Refusal(502, message, type="server_error", code="provider_error")
    if isinstance(err, PermissionDenied):
        return Refusal(403, message, type="permission_error", param=param, code="permission_denied")
    if isinstance(err, ValidationFailed):
        return Refusal(400, message, param=param, code="invalid_value")
    if isinstance(err, AuthError):
        return Refusal(err.status_code, message, type="authentication_error", code="invalid_api_key")
    if isinstance(err, NotFound):
        return Refusal(404, message, type="not_found_error", code="not_found")
    return Refusal(err.status_code, message, param=param)


def unexpected(err: BaseException, where: str) -> Refusal:
    """Anything else: a generic 500 with a reference id; the details go to the log only."""
    reference = secrets.token_hex(4)
    log.error("unexpected error in %s (reference %s)", where, reference, exc_info=err)
    return Refusal(500, f"Something went wrong on our side. Reference: {reference}", type="server_error",
                   code="internal_error")
