"""What every tab shares: who is signed in, the balance line in the header, turning errors into
what the user sees (`user_facing`), and the owner-checked URLs of a user's images."""

from __future__ import annotations

import functools
import inspect
import logging
import secrets

import gradio as gr
from gradio.i18n import I18nData
from gradio.route_utils import get_request_origin

from models.user import User
from services import i18n
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


def report_unexpected(err: BaseException, where: str, language: str | None = None) -> str:
    """Log an unexpected error with a fresh reference id; return the message the user sees instead.
    The exception's text (SQL, paths, library details) goes to the log only."""
    reference = secrets.token_hex(4)
    log.error("unexpected error in %s (reference %s)", where, reference, exc_info=err)
    return i18n.t(language, "error.unexpected", reference=reference)


# The instance's DEFAULT_LANGUAGE (Shell sets it from the settings).
default_language = i18n.FALLBACK


def language_of(request) -> str:
    """The language of a Gradio request (or a Starlette one): the switch's cookie, the caller's
    Accept-Language, DEFAULT_LANGUAGE. An API client says `Accept-Language: zh-CN`."""
    headers = getattr(request, "headers", None) or {}
    cookies = getattr(request, "cookies", None) or {}
    return i18n.choose(cookie=cookies.get(i18n.LANGUAGE_COOKIE), accept_language=headers.get("accept-language"),
                       default=default_language)


def tr(request, key: str, /, **params) -> str:
    """The string `key` in the request's language (handlers' messages: balance line, notices)."""
    return i18n.t(language_of(request), key, **params)


# A toast's title says what happened (Gradio's default is a bare "Error"); most specific first.
TITLES = (
    (InsufficientCredits, "title.insufficient_credits"), (ContentRejected, "title.content_rejected"),
    (RateLimited, "title.rate_limited"), (ValidationFailed, "title.validation"),
    (PermissionDenied, "title.permission"), (ProviderFailed, "title.provider_failed"),
    (PaymentsNotConfigured, "title.payments_off"), (PaymentError, "title.payment"),
    (AuthError, "title.auth"), (NotFound, "title.not_found"), (Conflict, "title.conflict"),
    (DomainError, "title.refused"),
)


def error_title(err: Exception, language: str | None = None) -> str:
    key = next((key for kind, key in TITLES if isinstance(err, kind)), "title.unexpected")
    return i18n.t(language, key)


def _request_in(args, kwargs):
    for value in [*args, *kwargs.values()]:
        if isinstance(value, gr.Request):
            return value
    return None


def _as_gr_error(err: Exception, where: str, request=None) -> gr.Error:
    """The one place a domain error becomes what a person sees: in the caller's language."""
    language = language_of(request) if request is not None else default_language
    if isinstance(err, gr.Error):
        if err.title == "Error":  # a handler's own gr.Error("…") without a title
            err.title = i18n.t(language, "title.refused")
        return err
    if isinstance(err, DomainError):
        return gr.Error(err.text(language), title=error_title(err, language), print_exception=False)
    return gr.Error(report_unexpected(err, where, language), title=i18n.t(language, "title.unexpected"),
                    print_exception=False)


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
                raise _as_gr_error(err, where, _request_in(args, kwargs)) from None
    elif inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def handler(*args, **kwargs):
            try:
                return await fn(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - mapped to what the user sees
                raise _as_gr_error(err, where, _request_in(args, kwargs)) from None
    else:
        @functools.wraps(fn)
        def handler(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - mapped to what the user sees
                raise _as_gr_error(err, where, _request_in(args, kwargs)) from None
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
        global default_language
        self.services = services
        default_language = services.settings.default_language
        # Words computed per language at build time (a card with prices, a style's label): gr.I18n
        # gets them beside the tables of assets/i18n/ (see words() and ui/__init__.py).
        self.built_words: dict[str, dict[str, str]] = {language: {} for language in i18n.LANGUAGES}
        self.balance: gr.Markdown | None = None
        # (fn, inputs, outputs) to run when the current tab is shown; ui/__init__ wires them.
        self.tab_loaders: list[tuple] = []

    @staticmethod
    def text(key: str):
        """A static string of assets/i18n/ for a component (label, button, Markdown): the browser
        shows it in the page's language (gr.I18n)."""
        return I18nData(key)

    def words(self, key: str, make):
        """A component string computed per language: `make(language) -> str`, e.g. a price card."""
        for language in i18n.LANGUAGES:
            self.built_words[language][key] = make(language)
        return I18nData(key)

    def translations(self) -> gr.I18n:
        """gr.I18n for the Blocks: the "ui." keys of assets/i18n/<language>.json and the built words."""
        def ui_keys(language: str) -> dict[str, str]:
            # "ui.gradio.<key>": Gradio's own words that its translations lack (common.complete, …)
            return {k.removeprefix("ui.gradio."): v for k, v in i18n.messages(language).items() if k.startswith("ui.")}

        return gr.I18n(**{language: {**ui_keys(language), **self.built_words[language]}
                          for language in i18n.LANGUAGES})

    def on_show(self, fn, inputs, outputs) -> None:
        """Run fn(inputs) -> outputs when the tab being built is shown (page load and tab select)."""
        self.tab_loaders.append((fn, inputs, outputs))

    def user(self, request: gr.Request | None) -> User:
        """The signed-in user, from the request that auth_dependency authenticated. Never from a component."""
        username = getattr(request, "username", None) if request is not None else None
        if not username:
            raise gr.Error(tr(request, "error.sign_in"), title=tr(request, "title.not_signed_in"))
        try:
            return self.services.accounts.get_user(int(username))
        except (ValueError, DomainError):
            raise gr.Error(tr(request, "error.sign_in_again"), title=tr(request, "title.not_signed_in")) from None

    def balance_text(self, user_id: int, balance=None, request=None) -> str:
        """The header line; pass the Balance when the caller has just read it."""
        b = balance if balance is not None else self.services.ledger.balance(user_id)
        held = tr(request, "ui.balance_held", held=b.held) if b.held else ""
        return tr(request, "ui.balance", total=b.total) + held
