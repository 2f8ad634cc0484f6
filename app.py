"""Image Studio: wiring only. `python app.py` serves; `python app.py SUBCOMMAND` runs the CLI."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from services.settings import ConfigError, Settings, load_settings  # noqa: E402

log = logging.getLogger("studio")
SWEEP_INTERVAL_SECONDS = 60


def build_services(settings: Settings, *, migrate: bool = True):
    """Settings → store → services. Imports are local so `python app.py --help` stays quick."""
    from services.accounts import Accounts
    from services.admin import Admin
    from services.billing import Billing, make_gateway
    from services.catalog import Catalog
    from services.container import Services
    from services.credits import Ledger
    from services.db import Database
    from services.engines import make_engine
    from services.entitlements import Entitlements
    from services.mailer import make_mailer
    from services.moderation import make_moderator
    from services.pricing import Pricing
    from services.storage import LocalImageStore
    from services.studio import Studio

    settings.ensure_secret_key()
    db = Database(settings.resolved_database_url)
    if migrate:
        db.upgrade()
    ledger = Ledger(db, hold_ttl_seconds=settings.hold_ttl_seconds)
    catalog = Catalog.load(ROOT / "assets")
    pricing = Pricing.load(ROOT / "assets", price_ids=settings.stripe_price_id_map)
    billing = Billing(db=db, ledger=ledger, pricing=pricing, gateway=make_gateway(settings), settings=settings)
    entitlements = Entitlements(billing=billing, catalog=catalog)
    studio = Studio(db=db, ledger=ledger, catalog=catalog, engine=make_engine(settings),
                    moderator=make_moderator(settings), store=LocalImageStore(settings.data_dir / "images"),
                    settings=settings, entitlements=entitlements)
    accounts = Accounts(db=db, ledger=ledger, settings=settings, mailer=make_mailer(settings))
    return Services(settings=settings, db=db, accounts=accounts, ledger=ledger, catalog=catalog,
                    studio=studio, pricing=pricing, billing=billing, entitlements=entitlements,
                    admin=Admin(db=db, accounts=accounts, ledger=ledger))


def create_app(settings: Settings, services=None):
    """The FastAPI app: our routes first, then the Gradio UI mounted at / behind auth_dependency."""
    import anyio
    import gradio as gr
    from fastapi import FastAPI, Request

    from ui import build_ui
    from ui.guards import BodyLimit, GradioSessions, UploadsOff
    from ui.web import BrowserRedirectMiddleware, authenticate, build_router, unexpected_error

    services = services or build_services(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        from services.maintenance import Maintenance

        maintenance = Maintenance(db=services.db, ledger=services.ledger, studio=services.studio,
                                  interval_seconds=SWEEP_INTERVAL_SECONDS)
        task = asyncio.create_task(_sweep_forever(maintenance))
        try:
            yield
        finally:
            task.cancel()
            try:
                await asyncio.to_thread(maintenance.stop)
            except Exception:
                log.warning("could not record this process's shutdown", exc_info=True)

    app = FastAPI(title="Image Studio", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services = services
    app.add_exception_handler(Exception, unexpected_error)
    app.include_router(build_router(services))
    app.add_middleware(BrowserRedirectMiddleware, services=services)

    def auth_dependency(request) -> str | None:
        user = authenticate(services, request)
        return str(user.id) if user else None

    async def identify(scope) -> str | None:
        return await anyio.to_thread.run_sync(auth_dependency, Request(scope))

    blocks = build_ui(services)
    blocks.queue(default_concurrency_limit=settings.queue_concurrency)
    data_dir = settings.data_dir.resolve()
    app = gr.mount_gradio_app(
        app, blocks, path="/", auth_dependency=auth_dependency,
        server_name=settings.server_name, server_port=settings.server_port,
        enable_monitoring=False, show_error=False, max_file_size=settings.max_upload_size, ssr_mode=False,
        blocked_paths=[str(data_dir), str(ROOT / ".env"), str(ROOT / "alembic.ini")],
        css=(ROOT / "assets" / "studio.css").read_text(), footer_links=["api"],
        theme=gr.themes.Soft(primary_hue="violet"),
    )
    # Each add_middleware wraps the ones before it: a request meets UploadsOff, then BodyLimit (both
    # answer before a byte of the body is read), then GradioSessions (session_hash owners, release).
    app.add_middleware(GradioSessions, blocks=blocks, identify=identify)
    app.add_middleware(BodyLimit)
    app.add_middleware(UploadsOff)
    return app


async def _sweep_forever(maintenance) -> None:
    """The housekeeping sweep (services/maintenance.py): now, then every interval."""
    while True:
        try:
            summary = await asyncio.to_thread(maintenance.sweep)
            if any(summary.values()):
                log.info("sweep: %s", summary)
        except Exception:
            log.exception("sweep failed")
        await asyncio.sleep(SWEEP_INTERVAL_SECONDS)


def serve(settings: Settings) -> None:
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    app = create_app(settings)
    print(start_line(settings, app.state.services), flush=True)
    # Uvicorn's own start-up lines say less than ours: only its warnings; the access log stays.
    log_config = copy.deepcopy(LOGGING_CONFIG)
    for name in ("uvicorn", "uvicorn.error"):
        log_config["loggers"][name]["level"] = "WARNING"
    uvicorn.run(app, host=settings.server_name, port=settings.server_port, log_config=log_config,
                proxy_headers=True)


def start_line(settings: Settings, services) -> str:
    """`Image Studio on http://… · store: … · engine: … · images: …`, printed once per start."""
    from sqlalchemy.engine import make_url

    url = make_url(services.db.url)
    if url.get_backend_name() == "sqlite":
        store = f"SQLite ({_shown(url.database)})"
    else:
        store = f"PostgreSQL ({url.host or 'local socket'}{f':{url.port}' if url.port else ''}/{url.database})"
    engine = services.studio.engine
    engine = "offline preview" if engine.name == "offline" else f"OpenAI {settings.image_model}"
    images = services.studio.store
    images = f"local disk ({_shown(images.root)})" if hasattr(images, "root") else type(images).__name__
    return (f"Image Studio on http://{settings.server_name}:{settings.server_port} · store: {store} · "
            f"engine: {engine} · images: {images}")


def _shown(path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


# CLI -------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python app.py", description="Image Studio. No arguments: serve the app.")
    sub = p.add_subparsers(dest="command", required=True)

    users = sub.add_parser("users", help="manage users").add_subparsers(dest="action", required=True)
    uc = users.add_parser("create", help="create a user")
    uc.add_argument("email")
    uc.add_argument("--password", required=True)
    uc.add_argument("--admin", action="store_true")

    keys = sub.add_parser("apikey", help="manage API keys").add_subparsers(dest="action", required=True)
    keys.add_parser("create", help="create an API key for a user").add_argument("email")

    db = sub.add_parser("db", help="database").add_subparsers(dest="action", required=True)
    db.add_parser("upgrade", help="apply migrations")

    credits = sub.add_parser("credits", help="credits").add_subparsers(dest="action", required=True)
    cg = credits.add_parser("grant", help="grant credits to a user (admin bucket)")
    cg.add_argument("email")
    cg.add_argument("amount", type=int)
    cg.add_argument("--note", default=None)
    credits.add_parser("balance", help="a user's balance").add_argument("email")
    credits.add_parser("reconcile", help="check the ledger; exit 1 on any discrepancy")

    sub.add_parser("catalog", help="print styles, aspect ratios, resolutions and products")
    stripe = sub.add_parser("stripe", help="Stripe").add_subparsers(dest="action", required=True)
    stripe.add_parser("sync", help="create missing Stripe products and prices (idempotent)")
    return p


def run_cli(argv: list[str], settings: Settings) -> int:
    import uuid

    from services.errors import DomainError

    args = _parser().parse_args(argv)
    try:
        if args.command == "db":
            from services.db import Database

            out = {"revision": Database(settings.resolved_database_url).upgrade()}
        else:
            services = build_services(settings)
            out = _run_command(args, services, uuid)
            if out.pop("_exit", 0):
                print(json.dumps(out))
                return 1
    except DomainError as err:
        print(f"error: {err.message}", file=sys.stderr)
        return 1
    print(json.dumps(out, default=str))
    return 0


def _run_command(args, services, uuid) -> dict:
    cmd = (args.command, getattr(args, "action", None))
    if cmd == ("users", "create"):
        user = services.accounts.create_user(email=args.email, password=args.password, admin=args.admin)
        return {"id": user.id, "email": user.email, "balance": services.ledger.balance(user.id).total,
                "role": user.role}
    if cmd == ("apikey", "create"):
        user = services.accounts.get_user_by_email(args.email)
        _, key = services.accounts.create_api_key(user_id=user.id, name="cli")
        return {"api_key": key}
    if cmd == ("credits", "grant"):
        from services.admin import OPERATOR

        return {"balance": services.admin.grant_credits(actor=OPERATOR, email=args.email, amount=args.amount,
                                                        note=args.note)}
    if cmd == ("credits", "balance"):
        user = services.accounts.get_user_by_email(args.email)
        return {"balance": services.ledger.balance(user.id).total}
    if cmd == ("credits", "reconcile"):
        problems = services.ledger.reconcile()
        return {"discrepancies": problems, "_exit": 1 if problems else 0}
    if cmd == ("catalog", None):
        return {**services.catalog.to_json(), "products": services.pricing.products_json()}
    if cmd == ("stripe", "sync"):
        return {"actions": services.billing.sync_catalog()}
    raise SystemExit(f"unknown command {cmd}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Our own modules note what they do; libraries (alembic, httpx, …) speak only to warn.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for ours in ("studio", "services", "ui"):
        logging.getLogger(ours).setLevel(logging.INFO)
    try:
        settings = load_settings()
    except ConfigError as err:
        print(str(err), file=sys.stderr)
        return 1
    if not argv:
        serve(settings)
        return 0
    return run_cli(argv, settings)


if __name__ == "__main__":
    sys.exit(main())
