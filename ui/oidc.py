"""Provider sign-in routes (/auth/oidc/{name}/login, /callback, /link) and the email verification
link (/verify-email). Plain HTTP routes, registered before the Gradio mount; the work is done by
the accounts service (services/accounts/oidc.py, verification.py)."""

from __future__ import annotations

import hmac
import logging

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from services import i18n
from services.container import Services
from services.errors import DomainError
from ui.web import SESSION_COOKIE, Pages, authenticate, client_ip, current_language, safe_next

log = logging.getLogger("studio.web")

# Binds a sign-in in progress to the browser that started it (its SHA-256 is kept with the state).
OIDC_BROWSER_COOKIE = "studio_oidc"


def build_router(services: Services) -> APIRouter:
    router = APIRouter()
    pages = Pages(services)
    settings = services.settings
    accounts = services.accounts

    def refused(message: str | DomainError, status: int = 400) -> Response:
        language = current_language.get()
        said = message.text(language) if isinstance(message, DomainError) else message
        return pages.render("auth_message.html", title=i18n.t(language, "oidc.failed"), message=said, ok=False,
                            status=status)

    def to_provider(request: Request, name: str, next_url: str, link_user_id: int | None = None) -> Response:
        try:
            start = accounts.start_oidc(provider=name, next_url=next_url, link_user_id=link_user_id,
                                        browser_token=request.cookies.get(OIDC_BROWSER_COOKIE),
                                        ip=client_ip(request))
        except DomainError as err:
            return refused(err, err.status_code)
        response = RedirectResponse(start.authorize_url, status_code=303)
        response.headers["Cache-Control"] = "no-store"
        # Lax: the provider's redirect back is a top-level GET, which carries it.
        response.set_cookie(OIDC_BROWSER_COOKIE, start.browser_token, httponly=True, samesite="lax",
                            secure=settings.secure_cookies, max_age=3600, path="/auth/oidc/")
        return response

    @router.get("/auth/oidc/{name}/login", include_in_schema=False)
    def oidc_login(name: str, request: Request, next: str = "/"):
        return to_provider(request, name, safe_next(next))

    @router.post("/auth/oidc/{name}/link", include_in_schema=False)
    def oidc_link(name: str, request: Request, csrf: str = Form("")):
        """Link a provider to the signed-in account (the Account tab's form, with its proof)."""
        user = authenticate(services, request)
        token = request.cookies.get(SESSION_COOKIE)
        if user is None or not hmac.compare_digest(accounts.link_proof(token), csrf or ""):
            return refused(i18n.t(current_language.get(), "oidc.not_from_account"), 403)
        return to_provider(request, name, "/?tab=account", link_user_id=user.id)

    @router.get("/auth/oidc/{name}/callback", include_in_schema=False)
    def oidc_callback(name: str, request: Request, state: str | None = None, code: str | None = None,
                      error: str | None = None):
        current = authenticate(services, request)
        try:
            outcome = accounts.finish_oidc(
                provider=name, state=state, code=code, error=error,
                browser_token=request.cookies.get(OIDC_BROWSER_COOKIE),
                current_user_id=current.id if current else None,
                ip=client_ip(request), user_agent=request.headers.get("user-agent"))
        except DomainError as err:
            return refused(err, err.status_code)
        response = RedirectResponse(safe_next(outcome.next_url), status_code=303)
        response.headers["Cache-Control"] = "no-store"
        if outcome.sign_in is not None:
            response.set_cookie(SESSION_COOKIE, outcome.sign_in.token, httponly=True, samesite="lax",
                                secure=settings.secure_cookies, max_age=settings.session_max_days * 86400, path="/")
        return response

    @router.get("/verify-email", include_in_schema=False)
    def verify_email(token: str = ""):
        language = current_language.get()
        try:
            verified = accounts.verify_email(token=token)
        except DomainError as err:
            return pages.render("auth_message.html", title=i18n.t(language, "verify.failed_title"),
                                message=err.text(language), ok=False, status=err.status_code)
        message = i18n.t(language, "verify.done", email=verified.user.email)
        if verified.trial_granted:
            message += " " + i18n.t(language, "verify.trial_added", credits=verified.trial_granted)
        return pages.render("auth_message.html", title=i18n.t(language, "verify.done_title"), ok=True, message=message)

    return router
