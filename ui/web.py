"""Plain HTTP routes served beside the Gradio UI: sign-in pages, terms, health, images,
the Stripe webhook and the checkout return. Registered on the FastAPI app before the mount."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markdown_it import MarkdownIt
from markupsafe import Markup

from models.user import User
from services.container import Services
from services.errors import DomainError, NotFound
from ui.common import image_name, report_unexpected

log = logging.getLogger("studio.web")

ASSETS = Path(__file__).resolve().parent.parent / "assets"
TEMPLATES = Path(__file__).resolve().parent / "templates"
SESSION_COOKIE = "studio_session"
CSRF_COOKIE = "studio_csrf"
# Paths a visitor may open without signing in.
PUBLIC_PREFIXES = ("/login", "/signup", "/forgot", "/reset", "/terms", "/pricing", "/healthz", "/webhooks/")


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def authenticate(services: Services, request: Request) -> User | None:
    """The user behind a request: an API key in `Authorization: Bearer`, else the session cookie."""
    token = bearer_token(request)
    if token is not None:
        return services.accounts.user_for_api_key(token)
    return services.accounts.user_for_session(request.cookies.get(SESSION_COOKIE))


def unexpected_error(request: Request, exc: Exception) -> Response:
    """The app's handler for any exception a route left unhandled: a generic 500 with a reference id;
    the details go to the log under that id, never to the client."""
    message = report_unexpected(exc, f"{request.method} {request.url.path}")
    return JSONResponse({"detail": message}, status_code=500, headers={"Cache-Control": "no-store"})


def safe_next(target: str | None) -> str:
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


# Every value a template prints is escaped unless it is Markup (the terms HTML, the CSS).
templates = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                        undefined=StrictUndefined, keep_trailing_newline=True)
templates.globals["css"] = Markup((ASSETS / "pages.css").read_text())


def render_page(services: Services, template: str, **context) -> str:
    """A page of ui/templates/ in the product's look (base.html), with the footer's support contact."""
    return templates.get_template(template).render(
        support_contact=services.settings.support_contact, wide=False, **context)


class Pages:
    """Server-rendered pages: HTML from ui/templates/, never cached, never framed."""

    def __init__(self, services: Services):
        self.services = services

    def render(self, template: str, *, status: int = 200, csrf: str | None = None, **context) -> HTMLResponse:
        response = HTMLResponse(render_page(self.services, template, csrf=csrf, **context), status_code=status)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"
        if csrf:
            response.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="strict",
                                secure=self.services.settings.secure_cookies, path="/")
        return response

    def form(self, template: str, *, error: str | None = None, info: str | None = None, status: int = 200,
             **context) -> HTMLResponse:
        """A page with a form (form_page.html), carrying a fresh CSRF token paired with its cookie."""
        return self.render(template, status=status, csrf=secrets.token_urlsafe(24), error=error, info=info,
                           **context)


def build_router(services: Services) -> APIRouter:
    router = APIRouter()
    pages = Pages(services)
    settings = services.settings

    def csrf_ok(request: Request, token: str) -> bool:
        cookie = request.cookies.get(CSRF_COOKIE, "")
        return bool(cookie) and secrets.compare_digest(cookie, token or "")

    def with_session(response: Response, token: str) -> Response:
        response.set_cookie(
            SESSION_COOKIE, token, httponly=True, samesite="lax", secure=settings.secure_cookies,
            max_age=settings.session_max_days * 86400, path="/",
        )
        return response

    def session_form(request: Request, csrf: str, email: str, next_url: str, page, start) -> Response:
        """The POST of the sign-in and sign-up forms: check the CSRF token, `start()` a session
        and redirect with its cookie; a refusal shows `page` again with the message."""
        if not csrf_ok(request, csrf):
            return page(next_url=next_url, email=email, error="Your form expired. Please try again.", status=400)
        try:
            token = start().token
        except DomainError as err:
            return page(next_url=next_url, email=email, error=err.message, status=err.status_code)
        return with_session(RedirectResponse(next_url, status_code=303), token)

    # Sign in / sign up / sign out ------------------------------------------------------------

    def login_page(*, next_url: str = "/", email: str = "", error: str | None = None,
                   info: str | None = None, status: int = 200) -> HTMLResponse:
        return pages.form("login.html", next_url=next_url, email=email, error=error, info=info, status=status)

    @router.get("/login", include_in_schema=False)
    def get_login(request: Request, next: str = "/", msg: str | None = None):
        if authenticate(services, request):
            return RedirectResponse(safe_next(next), status_code=303)
        info = {"reset": "Your password was changed. Sign in with the new one.",
                "signed_out": "You are signed out."}.get(msg or "")
        return login_page(next_url=safe_next(next), info=info)

    @router.post("/login", include_in_schema=False)
    def post_login(request: Request, email: str = Form(""), password: str = Form(""), csrf: str = Form(""),
                   next: str = "/"):
        return session_form(request, csrf, email, safe_next(next), login_page, lambda: services.accounts.sign_in(
            email=email, password=password, ip=client_ip(request), user_agent=request.headers.get("user-agent")))

    def signup_page(*, next_url: str = "/", email: str = "", error: str | None = None, status: int = 200):
        return pages.form("signup.html", next_url=next_url, email=email, trial_credits=settings.trial_credits,
                          error=error, status=status)

    @router.get("/signup", include_in_schema=False)
    def get_signup(next: str = "/"):
        return signup_page(next_url=safe_next(next))

    @router.post("/signup", include_in_schema=False)
    def post_signup(request: Request, email: str = Form(""), password: str = Form(""), csrf: str = Form(""),
                    next: str = "/"):
        return session_form(request, csrf, email, safe_next(next), signup_page, lambda: services.accounts.sign_up(
            email=email, password=password, ip=client_ip(request)))

    @router.post("/logout", include_in_schema=False)
    def post_logout(request: Request, csrf: str = Form("")):
        try:
            services.accounts.sign_out(token=request.cookies.get(SESSION_COOKIE), proof=csrf)
        except DomainError as err:
            return pages.render("sign_out_failed.html", message=err.message, status=err.status_code)
        response = RedirectResponse("/login?msg=signed_out", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # Password reset --------------------------------------------------------------------------

    def forgot_page(*, error=None, info=None, status=200):
        return pages.form("forgot.html", error=error, info=info, status=status)

    @router.get("/forgot", include_in_schema=False)
    def get_forgot():
        return forgot_page()

    @router.post("/forgot", include_in_schema=False)
    def post_forgot(request: Request, email: str = Form(""), csrf: str = Form("")):
        if not csrf_ok(request, csrf):
            return forgot_page(error="Your form expired. Please try again.", status=400)
        try:
            services.accounts.request_password_reset(email=email, reset_url=f"{settings.base_url}/reset",
                                                     ip=client_ip(request))
        except DomainError as err:
            return forgot_page(error=err.message, status=err.status_code)
        return forgot_page(info="If an account exists for that email, a reset link is on its way. "
                                "It is valid for one hour.")

    def reset_page(token: str, *, error=None, status=200):
        return pages.form("reset.html", token=token, error=error, status=status)

    @router.get("/reset", include_in_schema=False)
    def get_reset(token: str = ""):
        return reset_page(token)

    @router.post("/reset", include_in_schema=False)
    def post_reset(request: Request, token: str = Form(""), password: str = Form(""), csrf: str = Form("")):
        if not csrf_ok(request, csrf):
            return reset_page(token, error="Your form expired. Please try again.", status=400)
        try:
            services.accounts.reset_password(token=token, new_password=password)
        except DomainError as err:
            return reset_page(token, error=err.message, status=err.status_code)
        response = RedirectResponse("/login?msg=reset", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # Public pages ----------------------------------------------------------------------------

    # markdown-it escapes the text and, with "html" off, any raw HTML in terms.md: its output is safe.
    terms_html = Markup(MarkdownIt("commonmark", {"html": False}).render((ASSETS / "terms.md").read_text())
                        if (ASSETS / "terms.md").exists() else "<p>No terms published.</p>")

    @router.get("/terms", include_in_schema=False)
    def get_terms():
        return pages.render("terms.html", terms_html=terms_html)

    @router.get("/pricing", include_in_schema=False)
    def get_pricing():
        return pages.render("pricing.html", **pricing_context(services))

    @router.get("/healthz")
    def healthz():
        if services.db.ping():
            return {"status": "ok"}
        return JSONResponse({"status": "unavailable"}, status_code=503)

    # A user's own images ----------------------------------------------------------------------

    @router.get("/images/{generation_id}/{variant}", include_in_schema=False)
    def get_image(generation_id: str, variant: str, request: Request):
        user = authenticate(services, request)
        if user is None:
            return JSONResponse({"detail": "Not authenticated"}, status_code=401)
        try:
            if services.settings.storage_presign:  # the owner check runs in image_link first
                link = services.studio.image_link(
                    user_id=user.id, generation_id=generation_id, variant=variant,
                    filename=image_name(generation_id, variant) if variant == "png" else None,
                    expires_seconds=services.settings.storage_presign_seconds)
                if link:
                    return RedirectResponse(link, status_code=307, headers={"Cache-Control": "no-store"})
            content, media_type = services.studio.open_image(user_id=user.id, generation_id=generation_id,
                                                             variant=variant)
        except NotFound:
            return JSONResponse({"detail": "Not found"}, status_code=404)
        except DomainError as err:  # the image store is unavailable (services/s3storage.py)
            return JSONResponse({"detail": err.message}, status_code=503, headers={"Cache-Control": "no-store"})
        headers = {"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"}
        if variant == "png":
            headers["Content-Disposition"] = f'attachment; filename="{image_name(generation_id, variant)}"'
        if isinstance(content, Path):
            return FileResponse(content, media_type=media_type, headers=headers)
        return Response(content, media_type=media_type, headers=headers)

    @router.get("/images/{generation_id}/{variant}/{name}", include_in_schema=False)
    def get_named_image(generation_id: str, variant: str, name: str, request: Request):
        """The same image under its file name (the URL the UI hands out); any other name is a 404."""
        if name != image_name(generation_id, variant):
            return JSONResponse({"detail": "Not found"}, status_code=404)
        return get_image(generation_id, variant, request)

    # Payments ---------------------------------------------------------------------------------

    @router.post("/webhooks/stripe", include_in_schema=False)
    async def stripe_webhook(request: Request):
        payload = await request.body()
        try:
            result = await _in_thread(services.billing.handle_webhook, payload,
                                      request.headers.get("stripe-signature"))
        except DomainError as err:
            return JSONResponse({"error": err.message}, status_code=err.status_code)
        except Exception:
            log.exception("stripe webhook failed; Stripe will retry")
            return JSONResponse({"error": "internal error"}, status_code=500)
        return JSONResponse(result or {"received": True})

    @router.get("/billing/success", include_in_schema=False)
    def billing_success(request: Request, session_id: str = ""):
        user = authenticate(services, request)
        if user is None:
            return RedirectResponse(f"/login?next={quote('/billing/success?session_id=' + session_id)}", 303)
        try:
            result = services.billing.fulfil_checkout_session(session_id, user_id=user.id)
        except DomainError as err:
            log.warning("checkout return not fulfilled: %s", err.message)
            return pages.render("payment_pending.html", message=err.message, status=200)
        if result.status == "pending":
            return pages.render("payment_pending.html", message=result.message or "Your payment is being processed.")
        return RedirectResponse("/?paid=1", status_code=303)

    @router.get("/billing/cancel", include_in_schema=False)
    def billing_cancel():
        return RedirectResponse("/?tab=pricing", status_code=303)

    return router


def pricing_context(services: Services) -> dict:
    """What the public price list (pricing.html) shows, in the words of the Pricing tab."""
    from ui.pricing import PACK_CREDITS_RULE, PLAN_CREDITS_RULE, image_costs

    return {"image_costs": image_costs(services.catalog), "trial_credits": services.settings.trial_credits,
            "plans": services.pricing.plans, "packs": services.pricing.packs,
            "plan_rule": PLAN_CREDITS_RULE, "pack_rule": PACK_CREDITS_RULE}


def pricing_html(services: Services) -> str:
    """The public price list page: what a visitor sees before signing up (buying happens in the app)."""
    return render_page(services, "pricing.html", **pricing_context(services))


async def _in_thread(fn, *args):
    import anyio

    return await anyio.to_thread.run_sync(fn, *args)


class BrowserRedirectMiddleware:
    """Send a browser without a session to the sign-in page instead of Gradio's JSON 401.

    A plain ASGI middleware (Starlette's `@app.middleware("http")` wraps every request, API
    calls included, in extra tasks and streams)."""

    def __init__(self, app, services: Services):
        self.app = app
        self.services = services

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "GET" and not scope["path"].startswith(PUBLIC_PREFIXES):
            request = Request(scope)
            if "authorization" not in request.headers and "text/html" in request.headers.get("accept", ""):
                user = await _in_thread(self.services.accounts.user_for_session, request.cookies.get(SESSION_COOKIE))
                if user is None:
                    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    response = RedirectResponse(f"/login?next={quote(safe_next(target))}", status_code=303)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)
