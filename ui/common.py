"""What every tab shares: who is signed in, the balance line in the header, turning errors into
what the user sees (`user_facing`), and the owner-checked URLs of a user's images."""

from __future__ import annotations

import functools
import inspect
import logging
import secrets

import gradio as gr
from gradio.route_utils import get_request_origin

from models.user import User
from services.container import Services
from services.errors import (
    AuthError,
    Conflict,
    ContentRejected,
    DomainError,
    InsufficientCredits,
    NotFound,
    PaymentError,
    PaymentsNotConfigured,
    PermissionDenied,
    ProviderFailed,
    RateLimited,
    ValidationFailed,
)

log = logging.getLogger("studio.ui")


def report_unexpected(err: BaseException, where: str) -> str:
    """Log an unexpected error with a fresh reference id; return the message the user sees instead.
    The exception's text (SQL, paths, library details) goes to the log only."""
    reference = secrets.token_hex(4)
    log.error("unexpected error in %s (reference %s)", where, reference, exc_info=err)
    return f"Something went wrong on our side. Reference: {reference}"


# A toast's title says what happened (Gradio's default is a bare "Error"); most specific first.
TITLES = (
    (InsufficientCredits, "Not enough credits"), (ContentRejected, "Prompt refused"),
    (RateLimited, "Too many requests"), (ValidationFailed, "Please check your request"),
    (PermissionDenied, "Not available on your plan"), (ProviderFailed, "Generation failed"),
    (PaymentsNotConfigured, "Payments are off"), (PaymentError, "Payment problem"),
    (AuthError, "Sign-in problem"), (NotFound, "Not found"), (Conflict, "Not possible right now"),
    (DomainError, "Request refused"),
)


def error_title(err: Exception) -> str:
    return next((title for kind, title in TITLES if isinstance(err, kind)), "Something went wrong")


def _as_gr_error(err: Exception, where: str) -> gr.Error:
    if isinstance(err, gr.Error):
        if err.title == "Error":  # a handler's own gr.Error("…") without a title
            err.title = "Request refused"
        return err
    if isinstance(err, DomainError):
        return gr.Error(err.message, title=error_title(err), print_exception=False)
    return gr.Error(report_unexpected(err, where), title="Something went wrong", print_exception=False)


def user_facing(fn):
    """Decorate every event handler: a domain error shows its own message, anything unexpected a
    generic one with a reference id (details in the log). gr.Error passes through as it is.
    functools.wraps keeps the signature Gradio inspects (gr.Request, gr.Progress, gr.SelectData)."""
    where = f"{fn.__module__}.{fn.__qualname__}"
    if inspect.isasyncgenfunction(fn):  # a streaming handler: each yield goes out, an error is mapped
        @functools.wraps(fn)
        async def handler(*args, **kwargs):
            try:
                async for item in fn(*args, **kwargs):
                    yield item
            except Exception as err:  # noqa: BLE001 - mapped to what the user sees
                raise _as_gr_error(err, where) from None
    elif inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def handler(*args, **kwargs):
            try:
                return await fn(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - mapped to what the user sees
                raise _as_gr_error(err, where) from None
    else:
        @functools.wraps(fn)
        def handler(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - mapped to what the user sees
                raise _as_gr_error(err, where) from None
    return handler


def image_name(generation_id: str, variant: str) -> str:
    """The file name an image variant is served and saved under (`image-<id>.webp`, `….png`; a stored
    reference image `reference-<id>-<n>.jpg`)."""
    if variant.startswith("ref") and "." in variant:
        number, extension = variant[3:].split(".", 1)
        return f"reference-{generation_id[:12]}-{number}.{extension}"
    return f"image-{generation_id[:12]}.{'png' if variant == 'png' else 'webp'}"


def image_url(request: gr.Request, generation_id: str, variant: str) -> str:
    """The absolute URL of one of the user's images on the owner-checked route
    /images/{id}/{variant}/{name}, at the origin the browser (or API client) used. Absolute, because
    Gradio hands an http(s) URL to the browser as it is, while a path would be copied into its cache
    (served to anyone with the URL). The name ends the URL so that gradio_client saves the download
    as `image-<id>.webp`."""
    path = f"/images/{generation_id}/{variant}/{image_name(generation_id, variant)}"
    http = getattr(request, "request", None)
    return f"{get_request_origin(http, http.url.path)}{path}" if http is not None else path


class Shell:
    """Handed to each tab's build(). `balance` is the header line shown on every page."""

    def __init__(self, services: Services):
        self.services = services
        self.balance: gr.Markdown | None = None
        # (fn, inputs, outputs) to run when the current tab is shown; ui/__init__ wires them.
        self.tab_loaders: list[tuple] = []

    def on_show(self, fn, inputs, outputs) -> None:
        """Run fn(inputs) -> outputs when the tab being built is shown (page load and tab select)."""
        self.tab_loaders.append((fn, inputs, outputs))

    def user(self, request: gr.Request | None) -> User:
        """The signed-in user, from the request that auth_dependency authenticated. Never from a component."""
        username = getattr(request, "username", None) if request is not None else None
        if not username:
            raise gr.Error("Please sign in.", title="Not signed in")
        try:
            return self.services.accounts.get_user(int(username))
        except (ValueError, DomainError):
            raise gr.Error("Please sign in again.", title="Not signed in") from None

    def balance_text(self, user_id: int, balance=None) -> str:
        """The header line; pass the Balance when the caller has just read it."""
        b = balance if balance is not None else self.services.ledger.balance(user_id)
        held = f" · {b.held} held" if b.held else ""
        return f"**{b.total} credits**{held}"
