"""Plain HTTP routes served beside the Gradio UI: sign-in pages, terms, health, images,
the Stripe webhook and the checkout return. Registered on the FastAPI app before the mount."""

from __future__ import annotations

import html
import logging
import secrets
from pathlib import Path
from string import Template
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from markdown_it import MarkdownIt

from models.user import User
from services.container import Services
from services.errors import DomainError, NotFound
from ui.common import report_unexpected

log = logging.getLogger("studio.web")

ASSETS = Path(__file__).resolve().parent.parent / "assets"
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


class Pages:
    """Server-rendered pages in the product's look (assets/page.html + assets/pages.css)."""

    def __init__(self, services: Services):
        self.services = services
        self.template = Template((ASSETS / "page.html").read_text())
        self.css = (ASSETS / "pages.css").read_text()

    def render(self, title: str, body: str, *, status: int = 200, wide: bool = False,
               csrf: str | None = None) -> HTMLResponse:
        contact = html.escape(self.services.settings.support_contact)
        footer = (f'<a href="/pricing">Pricing</a> · <a href="/terms">Terms</a> · '
                  f'Support: <a href="mailto:{contact}">{contact}</a>')
        page = self.template.substitute(title=html.escape(title), css=self.css, body=body, footer=footer)
        if wide:
            page = page.replace('<main class="card">', '<main class="card wide">', 1)
        response = HTMLResponse(page, status_code=status)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"
        if csrf:
            response.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="strict",
                                secure=self.services.settings.secure_cookies, path="/")
        return response

    def form(self, *, title: str, lead: str, action: str, fields: str, submit: str, links: str,
             error: str | None = None, info: str | None = None, status: int = 200,
             hidden: dict[str, str] | None = None) -> HTMLResponse:
        csrf = secrets.token_urlsafe(24)
        msgs = ""
        if error:
            msgs += f'<div class="msg error" role="alert">{html.escape(error)}</div>'
        if info:
            msgs += f'<div class="msg info" role="status">{html.escape(info)}</div>'
        hidden_inputs = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in (hidden or {}).items()
        )
        body = (
            f"<h1>{html.escape(title)}</h1><p class=\"lead\">{lead}</p>{msgs}"
            f'<form method="post" action="{action}">'
            f'<input type="hidden" name="csrf" value="{csrf}">{hidden_inputs}{fields}'
            f"<button type=\"submit\">{html.escape(submit)}</button></form>"
            f'<div class="alt">{links}</div>'
        )
        return self.render(title, body, status=status, csrf=csrf)


EMAIL_FIELD = '<label for="email">Email</label><input id="email" name="email" type="email" autocomplete="email" required value="{value}">'
PASSWORD_FIELD = ('<label for="password">Password</label><input id="password" name="password" type="password" '
                  'autocomplete="{ac}" required minlength="8" maxlength="1024">')


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
        q = f"?next={quote(next_url)}" if next_url != "/" else ""
        return pages.form(
            title="Sign in", lead="Welcome back. Sign in to create images.", action=f"/login{q}",
            fields=EMAIL_FIELD.format(value=html.escape(email)) + PASSWORD_FIELD.format(ac="current-password"),
            submit="Sign in", error=error, info=info, status=status,
            links=f'<a href="/signup{q}">Create an account</a><a href="/forgot">Forgot password?</a>',
        )

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
        q = f"?next={quote(next_url)}" if next_url != "/" else ""
        trial = settings.trial_credits
        lead = f"New accounts get <strong>{trial} free credits</strong> to try every style." if trial else "Create your account."
        return pages.form(
            title="Create your account", lead=lead, action=f"/signup{q}",
            fields=EMAIL_FIELD.format(value=html.escape(email)) + PASSWORD_FIELD.format(ac="new-password")
            + '<p class="lead" style="font-size:13px;margin-top:8px">At least 8 characters. '
              'By signing up you accept the <a href="/terms">terms</a>.</p>',
            submit="Create account", error=error, status=status,
            links=f'<span>Already have an account? <a href="/login{q}">Sign in</a></span>',
        )

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
            return pages.render("Sign out", f"<h1>Sign out</h1><p class=\"lead\">{html.escape(err.message)}</p>"
                                '<div class="alt"><a href="/">Back to the studio</a></div>', status=err.status_code)
        response = RedirectResponse("/login?msg=signed_out", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # Password reset --------------------------------------------------------------------------

    def forgot_page(*, error=None, info=None, status=200):
        return pages.form(
            title="Reset your password", lead="We will send you a link to choose a new password.",
            action="/forgot", fields=EMAIL_FIELD.format(value=""), submit="Send reset link",
            error=error, info=info, status=status, links='<a href="/login">Back to sign in</a>',
        )

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
        return pages.form(
            title="Choose a new password", lead="This signs you out everywhere else.", action="/reset",
            fields=PASSWORD_FIELD.format(ac="new-password"), submit="Set new password", error=error,
            status=status, hidden={"token": token}, links='<a href="/forgot">Ask for a new link</a>',
        )

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

    terms_html = MarkdownIt("commonmark", {"html": False}).render((ASSETS / "terms.md").read_text()) \
        if (ASSETS / "terms.md").exists() else "<p>No terms published.</p>"

    @router.get("/terms", include_in_schema=False)
    def get_terms():
        return pages.render("Terms", f'<div class="terms">{terms_html}</div>', wide=True)

    @router.get("/pricing", include_in_schema=False)
    def get_pricing():
        return pages.render("Pricing", pricing_html(services), wide=True)

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
            content, media_type = services.studio.open_image(user_id=user.id, generation_id=generation_id,
                                                             variant=variant)
        except NotFound:
            return JSONResponse({"detail": "Not found"}, status_code=404)
        headers = {"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"}
        if variant == "png":
            headers["Content-Disposition"] = f'attachment; filename="image-{generation_id[:12]}.png"'
        if isinstance(content, Path):
            return FileResponse(content, media_type=media_type, headers=headers)
        return Response(content, media_type=media_type, headers=headers)

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
            return pages.render("Payment pending", _pending_body(err.message), status=200)
        if result.status == "pending":
            return pages.render("Payment pending", _pending_body(result.message or "Your payment is being processed."))
        return RedirectResponse("/?paid=1", status_code=303)

    @router.get("/billing/cancel", include_in_schema=False)
    def billing_cancel():
        return RedirectResponse("/?tab=pricing", status_code=303)

    return router


def _pending_body(message: str) -> str:
    return (f"<h1>Payment pending</h1><p class=\"lead\">{html.escape(message)}</p>"
            "<p>If you paid, your credits arrive as soon as Stripe confirms the payment.</p>"
            '<p><a href="/">Back to the studio</a></p>')


def pricing_html(services: Services) -> str:
    """The public price list: what a visitor sees before signing up (buying happens in the app)."""
    from ui.pricing import PACK_CREDITS_RULE, PLAN_CREDITS_RULE, image_costs

    pricing, esc = services.pricing, html.escape
    parts = [f"<h1>Pricing</h1><p class=\"lead\">One image costs {esc(image_costs(services.catalog))}. New accounts "
             f"get {services.settings.trial_credits} free credits. A generation that fails is never charged.</p>"]
    if pricing.plans:
        parts.append(f"<h2>Plans</h2><p>{esc(PLAN_CREDITS_RULE)} Cancel any time in the customer portal.</p><ul>")
        for plan in pricing.plans:
            parts.append(
                f"<li><strong>{esc(plan.name)}</strong>: {plan.credits_per_month} credits a month for "
                f"{esc(plan.monthly.display_price)}/month, or {esc(plan.annual.display_price)}/year "
                f"(save {plan.annual_saving_percent}%). {esc(plan.description)}</li>")
        parts.append("</ul>")
    if pricing.packs:
        parts.append(f"<h2>Credit packs</h2><p>One-time purchases. {esc(PACK_CREDITS_RULE)}</p><ul>")
        for pack in pricing.packs:
            parts.append(f"<li><strong>{esc(pack.name)}</strong> for {esc(pack.display_price)}. "
                         f"{esc(pack.description)}</li>")
        parts.append("</ul>")
    parts.append('<p><a href="/signup">Create an account</a> · <a href="/login">Sign in</a> · '
                 '<a href="/terms">Terms</a></p>')
    return "".join(parts)


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
