"""Plain HTTP routes served beside the Gradio UI: the landing page, sign-in pages, terms, the API
page, health, showcase and user images, the Stripe webhook and the checkout return. Registered on
the FastAPI app before the mount."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import secrets
from functools import partial
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markdown_it import MarkdownIt
from markupsafe import Markup, escape

from models.user import User
from services import i18n
from services.container import Services
from services.errors import DomainError, NotFound
from ui.common import image_name, report_unexpected

log = logging.getLogger("studio.web")

ASSETS = Path(__file__).resolve().parent.parent / "assets"
TEMPLATES = Path(__file__).resolve().parent / "templates"
SHOWCASE = ASSETS / "showcase"
SESSION_COOKIE = "studio_session"
CSRF_COOKIE = "studio_csrf"
# Paths a visitor may open without signing in.
PUBLIC_PREFIXES = ("/login", "/signup", "/forgot", "/reset", "/terms", "/pricing", "/healthz", "/webhooks/",
                   "/showcase/", "/api", "/auth/oidc/", "/verify-email", "/language/", "/support/")
# The landing page's example strip: whatever images the operator puts in assets/showcase/.
SHOWCASE_TYPES = {".webp": "image/webp", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
SHOWCASE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,150}")
# The language of the request being answered (LanguageMiddleware sets it; render_page reads it).
current_language: contextvars.ContextVar[str] = contextvars.ContextVar("studio_language", default=i18n.FALLBACK)
current_path: contextvars.ContextVar[str] = contextvars.ContextVar("studio_path", default="/")
SUPPORT_QR_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
                    ".svg": "image/svg+xml", ".gif": "image/gif"}


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


NOT_FOUND = {"detail": "Not found"}


def owner_checked(services: Services, request: Request, fetch, *, name: str | None = None,
                  expected_name: str | None = None, headers: dict | None = None) -> Response:
    """What every owner-checked file route (/images, /previews, /trash) does around its own read:
    the caller from the request (API key or session cookie) or 401; a URL whose file name is not
    `expected_name`, 404; then `fetch(user)` gives (content, media type) -- bytes or a local Path
    -- or a Response of its own (a redirect); NotFound (not there, or not the caller's) is 404,
    any other DomainError (the image store unavailable) 503."""
    user = authenticate(services, request)
    if user is None:
        return JSONResponse({"detail": "Not authenticated"}, status_code=401)
    if name is not None and name != expected_name:
        return JSONResponse(NOT_FOUND, status_code=404)
    try:
        got = fetch(user)
    except NotFound:
        return JSONResponse(NOT_FOUND, status_code=404)
    except DomainError as err:
        return JSONResponse({"detail": err.message}, status_code=503, headers={"Cache-Control": "no-store"})
    if isinstance(got, Response):
        return got
    content, media_type = got
    if isinstance(content, Path):
        return FileResponse(content, media_type=media_type, headers=headers)
    return Response(content, media_type=media_type, headers=headers)


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


def request_language(services: Services, headers, cookies, account: str | None = None) -> str:
    """The language of a request (services/i18n.choose): the switch's cookie, the account's
    choice, the browser's Accept-Language, DEFAULT_LANGUAGE."""
    return i18n.choose(cookie=cookies.get(i18n.LANGUAGE_COOKIE), accept_language=headers.get("accept-language"),
                       account=account, default=services.settings.default_language)


def support_context(services: Services) -> dict:
    """The support block's values (_support.html): all optional."""
    settings = services.settings
    return {"contact": settings.support_contact, "hours": settings.support_hours,
            "qr": "/support/qr" if support_qr_file(services) else None}


def support_qr_file(services: Services) -> Path | None:
    path = services.settings.support_qr_image
    if path is None or path.suffix.lower() not in SUPPORT_QR_TYPES or not path.is_file():
        return None
    return path


def language_context(language: str) -> dict:
    """What every template needs to speak `language`: `_(key, **params)`, `_html` for our own markup,
    `money`, `number`, and the switch's choices."""
    def html(key: str, **params) -> Markup:
        return Markup(i18n.t(language, key, **{k: escape(v) for k, v in params.items()}))

    return {"lang": language, "_": partial(i18n.t, language), "_html": html,
            "money": partial(i18n.money, language), "number": partial(i18n.number, language),
            "languages": i18n.LANGUAGES}


def support_html(services: Services, language: str) -> str:
    """The support block (_support.html) alone, e.g. for the studio's Pricing tab; "" when unset."""
    return templates.get_template("_support.html").render(support=support_context(services),
                                                          **language_context(language)).strip()


def render_page(services: Services, template: str, **context) -> str:
    """A page of ui/templates/ in the product's look (base.html), in the request's language, with
    the footer's support contact."""
    context.setdefault("oidc_providers", services.accounts.oidc_providers())  # _oidc_buttons.html
    language = context.pop("language", None) or current_language.get()
    return templates.get_template(template).render(
        support_contact=services.settings.support_contact, support=support_context(services), wide=False,
        here=context.pop("here", "/"), **language_context(language), **context)


def footer_html(services: Services, language: str = i18n.FALLBACK) -> str:
    """The footer every page ends with, the studio's included (ui/__init__.py)."""
    return templates.get_template("_footer.html").render(
        support_contact=services.settings.support_contact, support=support_context(services),
        **language_context(language))


class Pages:
    """Server-rendered pages: HTML from ui/templates/, never cached, never framed."""

    def __init__(self, services: Services):
        self.services = services

    def render(self, template: str, *, status: int = 200, csrf: str | None = None, **context) -> HTMLResponse:
        context.setdefault("here", current_path.get())
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

    def _(key: str, **params) -> str:
        return i18n.t(current_language.get(), key, **params)

    def carry_language(request: Request, response: Response, user: User) -> Response:
        """At sign-in the language goes along: a choice made before signing in (the switch's cookie)
        is saved on the account; else the account's choice is put in this browser's cookie. (A
        sign-up stores the language it was made in, without a cookie: the browser's header still
        decides until someone uses the switch.)"""
        if request.url.path == "/signup":
            return response
        chosen = i18n.supported(request.cookies.get(i18n.LANGUAGE_COOKIE))
        if chosen and chosen != user.language:
            services.accounts.set_language(user_id=user.id, language=chosen)
        elif not chosen and user.language:
            set_language_cookie(response, user.language, secure=settings.secure_cookies)
        return response

    def session_form(request: Request, csrf: str, email: str, next_url: str, page, start) -> Response:
        """The POST of the sign-in and sign-up forms: check the CSRF token, `start()` a session
        and redirect with its cookie; a refusal shows `page` again with the message."""
        if not csrf_ok(request, csrf):
            return page(next_url=next_url, email=email, error=_("form.expired"), status=400)
        try:
            started = start()
        except DomainError as err:
            return page(next_url=next_url, email=email, error=err.text(current_language.get()),
                        status=err.status_code)
        return carry_language(request, with_session(RedirectResponse(next_url, status_code=303), started.token),
                              started.user)

    # Sign in / sign up / sign out ------------------------------------------------------------

    def login_page(*, next_url: str = "/", email: str = "", error: str | None = None,
                   info: str | None = None, status: int = 200) -> HTMLResponse:
        return pages.form("login.html", next_url=next_url, email=email, error=error, info=info, status=status)

    @router.get("/login", include_in_schema=False)
    def get_login(request: Request, next: str = "/", msg: str | None = None):
        if authenticate(services, request):
            return RedirectResponse(safe_next(next), status_code=303)
        info = {"reset": _("login.password_changed"), "signed_out": _("login.signed_out")}.get(msg or "")
        return login_page(next_url=safe_next(next), info=info)

    @router.post("/login", include_in_schema=False)
    def post_login(request: Request, email: str = Form(""), password: str = Form(""), csrf: str = Form(""),
                   next: str = "/"):
        return session_form(request, csrf, email, safe_next(next), login_page, lambda: services.accounts.sign_in(
            email=email, password=password, ip=client_ip(request), user_agent=request.headers.get("user-agent")))

    def signup_page(*, next_url: str = "/", email: str = "", error: str | None = None, status: int = 200,
                    invite: str = ""):
        # SIGNUP_MODE says who may sign up; an invitation link carries its token (?invite=) into the form.
        return pages.form("signup.html", next_url=next_url, email=email, trial_credits=settings.trial_credits,
                          trial_after_verification=settings.trial_requires_verified_email, error=error, status=status,
                          invite=invite, signup_mode=settings.signup_mode,
                          allowance=settings.monthly_allowance_credits)

    @router.get("/signup", include_in_schema=False)
    def get_signup(next: str = "/", invite: str = ""):
        return signup_page(next_url=safe_next(next), invite=invite.strip()[:200])

    @router.post("/signup", include_in_schema=False)
    def post_signup(request: Request, email: str = Form(""), password: str = Form(""), csrf: str = Form(""),
                    invite: str = Form(""), next: str = "/"):
        invite = invite.strip()[:200]
        return session_form(request, csrf, email, safe_next(next),
                            lambda **kw: signup_page(invite=invite, **kw), lambda: services.accounts.sign_up(
            email=email, password=password, ip=client_ip(request), user_agent=request.headers.get("user-agent"),
            verify_url=f"{settings.base_url}/verify-email", invite=invite or None,
            language=current_language.get()))

    @router.post("/logout", include_in_schema=False)
    def post_logout(request: Request, csrf: str = Form("")):
        try:
            services.accounts.sign_out(token=request.cookies.get(SESSION_COOKIE), proof=csrf)
        except DomainError as err:
            return pages.render("sign_out_failed.html", message=err.text(current_language.get()),
                                status=err.status_code)
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
            return forgot_page(error=_("form.expired"), status=400)
        try:
            services.accounts.request_password_reset(email=email, reset_url=f"{settings.base_url}/reset",
                                                     ip=client_ip(request))
        except DomainError as err:
            return forgot_page(error=err.text(current_language.get()), status=err.status_code)
        return forgot_page(info=_("forgot.sent"))

    def reset_page(token: str, *, error=None, status=200):
        return pages.form("reset.html", token=token, error=error, status=status)

    @router.get("/reset", include_in_schema=False)
    def get_reset(token: str = ""):
        return reset_page(token)

    @router.post("/reset", include_in_schema=False)
    def post_reset(request: Request, token: str = Form(""), password: str = Form(""), csrf: str = Form("")):
        if not csrf_ok(request, csrf):
            return reset_page(token, error=_("form.expired"), status=400)
        try:
            services.accounts.reset_password(token=token, new_password=password)
        except DomainError as err:
            return reset_page(token, error=err.text(current_language.get()), status=err.status_code)
        response = RedirectResponse("/login?msg=reset", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # Public pages ----------------------------------------------------------------------------

    terms_html = {language: render_terms(terms_file(language)) for language in i18n.LANGUAGES}

    @router.get("/terms", include_in_schema=False)
    def get_terms():
        return pages.render("terms.html", terms_html=terms_html[current_language.get()])

    @router.get("/pricing", include_in_schema=False)
    def get_pricing():
        return pages.render("pricing.html", **pricing_context(services, current_language.get()))

    @router.get("/language/{tag}", include_in_schema=False)
    def get_language(tag: str, request: Request, next: str = "/"):
        """The language switch: remembered in a cookie and, for a signed-in user, on the account."""
        chosen = i18n.supported(tag) or current_language.get()
        response = RedirectResponse(safe_next(next), status_code=303)
        set_language_cookie(response, chosen, secure=settings.secure_cookies)
        user = authenticate(services, request) if "authorization" not in request.headers else None
        if user is not None:
            services.accounts.set_language(user_id=user.id, language=chosen)
        return response

    @router.get("/support/qr", include_in_schema=False)
    def get_support_qr():
        """SUPPORT_QR_IMAGE (e.g. a WeCom QR code), public: it is shown on the sign-in help."""
        path = support_qr_file(services)
        if path is None:
            return JSONResponse({"detail": "Not found"}, status_code=404)
        return FileResponse(path, media_type=SUPPORT_QR_TYPES[path.suffix.lower()],
                            headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})

    @router.get("/api", include_in_schema=False)
    def get_api_docs():
        return pages.render("api.html", **api_context(services))

    @router.get("/showcase/{name}", include_in_schema=False)
    def get_showcase(name: str):
        """An example image of the landing page: operator files, public, never a user's image."""
        path = showcase_file(name)
        if path is None:
            return JSONResponse({"detail": "Not found"}, status_code=404)
        return FileResponse(path, media_type=SHOWCASE_TYPES[path.suffix.lower()],
                            headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})

    @router.get("/healthz")
    def healthz():
        if services.db.ping():
            return {"status": "ok"}
        return JSONResponse({"status": "unavailable"}, status_code=503)

    # A user's own images ----------------------------------------------------------------------

    def image(generation_id: str, variant: str, request: Request, name: str | None = None):
        def fetch(user: User):
            if services.settings.storage_presign:  # the owner check runs in image_link first
                link = services.studio.image_link(
                    user_id=user.id, generation_id=generation_id, variant=variant,
                    filename=image_name(generation_id, variant) if variant == "png" else None,
                    expires_seconds=services.settings.storage_presign_seconds)
                if link:
                    return RedirectResponse(link, status_code=307, headers={"Cache-Control": "no-store"})
            return services.studio.open_image(user_id=user.id, generation_id=generation_id, variant=variant)

        headers = {"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"}
        if variant == "png":
            headers["Content-Disposition"] = f'attachment; filename="{image_name(generation_id, variant)}"'
        return owner_checked(services, request, fetch, name=name, expected_name=image_name(generation_id, variant),
                             headers=headers)

    @router.get("/images/{generation_id}/{variant}", include_in_schema=False)
    def get_image(generation_id: str, variant: str, request: Request):
        return image(generation_id, variant, request)

    @router.get("/images/{generation_id}/{variant}/{name}", include_in_schema=False)
    def get_named_image(generation_id: str, variant: str, name: str, request: Request):
        """The same image under its file name (the URL the UI hands out); any other name is a 404."""
        return image(generation_id, variant, request, name=name)

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
            return pages.render("payment_pending.html", message=err.text(current_language.get()), status=200)
        if result.status == "pending":
            return pages.render("payment_pending.html", message=result.message or _("payment.processing"))
        return pages.render("payment_success.html")

    @router.get("/billing/cancel", include_in_schema=False)
    def billing_cancel():
        """Checkout's "back": nothing was charged; the page says so, with the way to a person."""
        return pages.render("payment_cancel.html")

    return router


def set_language_cookie(response: Response, language: str, *, secure: bool) -> None:
    response.set_cookie(i18n.LANGUAGE_COOKIE, language, max_age=365 * 86400, samesite="lax", secure=secure,
                        path="/")


def terms_file(language: str) -> Path:
    """assets/terms.<language>.md when there is one, else assets/terms.md."""
    localized = ASSETS / f"terms.{language}.md"
    return localized if language != i18n.FALLBACK and localized.exists() else ASSETS / "terms.md"


def render_terms(path: Path) -> Markup:
    """assets/terms.md as HTML. HTML comments (the operator's editing note) are dropped; markdown-it
    escapes the text and, with "html" off, any other raw HTML: its output is safe."""
    if not path.exists():
        return Markup("<p>No terms published.</p>")
    text = re.sub(r"<!--.*?-->\s*", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    return Markup(MarkdownIt("commonmark", {"html": False}).render(text))


def showcase_file(name: str, folder: Path = SHOWCASE) -> Path | None:
    """The showcase image called `name`, if it is one (a plain file name with an image suffix)."""
    if not SHOWCASE_NAME.fullmatch(name) or Path(name).suffix.lower() not in SHOWCASE_TYPES:
        return None
    path = folder / name
    return path if path.is_file() else None


def showcase_images(folder: Path = SHOWCASE, language: str | None = None) -> list[dict]:
    """[{"url", "caption"}] for each image in assets/showcase/, in name order; the caption is the
    file name without its leading number ("2-city-at-night.webp" → "city at night"), or its
    translation (assets/i18n/catalog.<language>.json, "showcase")."""
    if not folder.is_dir():
        return []
    names = sorted(p.name for p in folder.iterdir() if showcase_file(p.name, folder))
    return [{"url": f"/showcase/{quote(name)}",
             "caption": i18n.catalog_text(language, "showcase", name, None, re.sub(
                 r"^[0-9]+[-_ ]*", "", Path(name).stem).replace("-", " ").replace("_", " "))}
            for name in names]


def landing_context(services: Services, language: str | None = None) -> dict:
    """What the landing page shows: all of it from the catalog, pricing.json, settings and assets/showcase/."""
    from ui.pricing import (
        best_value,
        cheapest_credit,
        money,
        per_credit,
        per_credit_text,
        price_text,
        product_name,
    )

    language = language or current_language.get()
    pricing, catalog = services.pricing, services.catalog
    cheapest = cheapest_credit(pricing)
    resolutions = [{"label": r.label, "credits": r.price,
                    "from": money(per_credit(cheapest) * r.price, cheapest.currency, language=language)
                    if cheapest else None}
                   for r in catalog.resolutions]
    best_pack = best_value(pricing.packs)
    packs = [{"name": product_name(p, language), "price": price_text(p, language), "credits": p.credits,
              "per_credit": per_credit_text(p, language), "best": p is best_pack} for p in pricing.packs]
    plans = [{"name": product_name(p, language), "monthly": price_text(p.monthly, language),
              "annual": price_text(p.annual, language), "credits_per_month": p.credits_per_month,
              "saving_percent": p.annual_saving_percent}
             for p in pricing.plans]
    keys = [r.key for r in catalog.resolutions]
    sizes = i18n.t(language, "landing.sizes_or", first=", ".join(keys[:-1]), last=keys[-1]) if len(keys) > 1 \
        else keys[0]
    return {"tagline": i18n.t(language, "landing.tagline", sizes=sizes), "showcase": showcase_images(language=language),
            "resolutions": resolutions, "packs": packs, "plans": plans,
            "trial_credits": services.settings.trial_credits, "styles": len(catalog.styles)}


def api_context(services: Services) -> dict:
    """The API page's values: the instance's address and the catalog's real choices."""
    catalog = services.catalog
    return {"base_url": services.settings.base_url, "styles": catalog.style_names,
            "aspect_ratios": [r.ratio for r in catalog.aspect_ratios],
            "resolutions": [{"key": r.key, "price": r.price} for r in catalog.resolutions],
            "reference_surcharge": catalog.reference_surcharge,
            "example": {"style": catalog.default_style, "aspect_ratio": catalog.default_aspect_ratio,
                        "resolution": catalog.default_resolution}}


def payment_method_names(services: Services, language: str) -> str:
    """The methods a pack can be paid with (STRIPE_PAYMENT_METHODS), in words: "card, Alipay, WeChat Pay"."""
    methods = services.settings.payment_method_list
    if not methods or methods == ["card"]:
        return ""
    return ", ".join(i18n.t(language, f"payment.method.{m}") if f"payment.method.{m}" in i18n.messages(i18n.FALLBACK)
                     else m for m in methods)


def pricing_context(services: Services, language: str | None = None) -> dict:
    """What the public price list (pricing.html) shows, in the words of the Pricing tab."""
    from ui.pricing import (
        annual_saving,
        best_value,
        image_costs,
        per_credit_text,
        per_image_text,
        price_text,
        product_description,
        product_name,
    )

    language = language or current_language.get()
    pricing, catalog = services.pricing, services.catalog
    best = best_value([*pricing.packs, *(p.monthly for p in pricing.plans)])
    value = {p.key: f"{per_credit_text(p, language)}, {per_image_text(p, catalog, language)}"
             for p in [*pricing.packs, *(p.monthly for p in pricing.plans)]}
    plans = [{"key": p.key, "name": product_name(p, language), "description": product_description(p, language),
              "monthly_key": p.monthly.key, "monthly": price_text(p.monthly, language),
              "annual": price_text(p.annual, language), "credits_per_month": p.credits_per_month,
              "saving_percent": p.annual_saving_percent} for p in pricing.plans]
    packs = [{"key": p.key, "name": product_name(p, language), "description": product_description(p, language),
              "price": price_text(p, language)} for p in pricing.packs]
    return {"image_costs": image_costs(catalog, language), "trial_credits": services.settings.trial_credits,
            "plans": plans, "packs": packs, "value": value, "best": best.key if best else None,
            "savings": {p.key: annual_saving(p, language) for p in pricing.plans},
            "plan_rule": i18n.t(language, "price.plan_rule"), "pack_rule": i18n.t(language, "price.pack_rule"),
            "pack_methods": payment_method_names(services, language)}


def pricing_html(services: Services, language: str | None = None) -> str:
    """The public price list page: what a visitor sees before signing up (buying happens in the app)."""
    language = language or current_language.get()
    return render_page(services, "pricing.html", language=language, **pricing_context(services, language))


async def _in_thread(fn, *args):
    import anyio

    return await anyio.to_thread.run_sync(fn, *args)


class BrowserRedirectMiddleware:
    """A browser without a session gets the landing page at `/` and the sign-in page anywhere
    else, instead of Gradio's JSON 401. A signed-in browser reaches the studio; a request with
    an Authorization header is left to the auth dependency.

    A plain ASGI middleware (Starlette's `@app.middleware("http")` wraps every request, API
    calls included, in extra tasks and streams)."""

    def __init__(self, app, services: Services):
        self.app = app
        self.services = services
        self.pages = Pages(services)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "GET" and not scope["path"].startswith(PUBLIC_PREFIXES):
            request = Request(scope)
            if "authorization" not in request.headers and "text/html" in request.headers.get("accept", ""):
                user = await _in_thread(self.services.accounts.user_for_session, request.cookies.get(SESSION_COOKIE))
                if user is None and scope["path"] == "/" and not scope.get("query_string"):
                    response = self.pages.render("landing.html", **landing_context(self.services))
                    await response(scope, receive, send)
                    return
                if user is None:
                    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    response = RedirectResponse(f"/login?next={quote(safe_next(target))}", status_code=303)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


class LanguageMiddleware:
    """The language of each request (cookie, Accept-Language, DEFAULT_LANGUAGE; the account's choice is
    put in the cookie at sign-in) for the pages (`current_language`). On the studio's page (Gradio's
    HTML at `/`) it tells Gradio's front end the same language: gr.I18n translates by the browser's
    `navigator.language`, which a small script in the page's head sets first."""

    def __init__(self, app, services: Services):
        self.app = app
        self.services = services

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        language = request_language(self.services, request.headers, request.cookies)
        scope["studio.language"] = language
        language_token = current_language.set(language)
        path_token = current_path.set(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        try:
            if scope["method"] == "GET" and scope["path"] == "/":
                await self.app(scope, receive, _with_language_script(send, language))
            else:
                await self.app(scope, receive, send)
        finally:
            current_language.reset(language_token)
            current_path.reset(path_token)


LANGUAGE_SCRIPT = ('<script>(function(){var l=LANGUAGE;try{Object.defineProperty(Navigator.prototype,"language",'
                   '{get:function(){return l},configurable:true});Object.defineProperty(Navigator.prototype,'
                   '"languages",{get:function(){return [l]},configurable:true})}catch(e){}})();</script>')


def _with_language_script(send, language: str):
    """Wrap `send` so that an HTML page gets the navigator.language script right after <head>."""
    script = (LANGUAGE_SCRIPT.replace("LANGUAGE", json.dumps(language))).encode()
    state: dict = {"start": None, "body": []}

    async def wrapped(message):
        if message["type"] == "http.response.start":
            headers = dict((k.lower(), v) for k, v in message.get("headers", []))
            if headers.get(b"content-type", b"").startswith(b"text/html") and b"content-encoding" not in headers:
                state["start"] = message
                return
            await send(message)
            return
        if message["type"] == "http.response.body" and state["start"] is not None:
            state["body"].append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(state["body"]).replace(b"<head>", b"<head>" + script, 1)
            start = state["start"]
            start["headers"] = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"] + [
                (b"content-length", str(len(body)).encode())]
            await send(start)
            await send({"type": "http.response.body", "body": body})
            return
        await send(message)

    return wrapped
