"""Image Studio: wiring only. `python app.py` serves; `python app.py SUBCOMMAND` runs the CLI (cli.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from services.settings import ConfigError, Settings, load_settings  # noqa: E402

log = logging.getLogger("studio")


def build_services(settings: Settings, *, migrate: bool = True):
    """Settings → store → services. Imports are local so `python app.py --help` stays quick."""
    from services.accounts import Accounts
    from services.admin import Admin
    from services.billing import Billing, make_gateway
    from services.catalog import Catalog
    from services.container import Services
    from services.db import Database
    from services.engines import make_engine
    from services.entitlements import Entitlements
    from services.ledger import Ledger
    from services.mailer import make_mailer
    from services.moderation import make_moderator
    from services.pricing import Pricing
    from services.storage import make_store
    from services.studio import Studio
    from services.studio.compare import Compare
    from services.studio.styles import MyStyles
    from services.team import Team

    settings.ensure_secret_key()
    db = Database(settings.resolved_database_url)
    if migrate:
        db.upgrade()
    ledger = Ledger(db, hold_ttl_seconds=settings.hold_ttl_seconds)
    catalog = Catalog.load(ROOT / "assets")
    pricing = Pricing.load(ROOT / "assets", price_ids=settings.stripe_price_id_map)
    billing = Billing(db=db, ledger=ledger, pricing=pricing, gateway=make_gateway(settings), settings=settings)
    entitlements = Entitlements(db=db, pricing=pricing, catalog=catalog)
    studio = Studio(db=db, ledger=ledger, catalog=catalog, engine=make_engine(settings),
                    moderator=make_moderator(settings), store=make_store(settings),
                    settings=settings, entitlements=entitlements)
    styles = MyStyles(db=db, catalog=catalog)
    studio.style_resolver = styles.resolve  # saved styles usable by name, for their owner only
    accounts = Accounts(db=db, ledger=ledger, settings=settings, mailer=make_mailer(settings))
    team = Team(db=db, ledger=ledger, settings=settings)
    return Services(settings=settings, db=db, accounts=accounts, ledger=ledger, catalog=catalog,
                    studio=studio, pricing=pricing, billing=billing, entitlements=entitlements,
                    admin=Admin(db=db, accounts=accounts, ledger=ledger, settings=settings, team=team), team=team,
                    styles=styles, compare=Compare(studio=studio, ledger=ledger, max_styles=settings.compare_max_styles))


def create_app(settings: Settings, services=None):
    """The FastAPI app: our routes first, then the Gradio UI mounted at / behind auth_dependency."""
    import anyio
    import gradio as gr
    from fastapi import FastAPI, Request

    from api import MCP_PATH, StudioMCP, build_openai_router
    from services.metrics import Metrics
    from ui import build_ui, downloads
    from ui.admin import routes as admin_routes
    from ui.compare import style_routes
    from ui.generate import preview_routes
    from ui.gradio_tuning import (
        enough_queue_slots,
        lazy_session_configs,
        no_event_analytics,
        no_matplotlib_lookups,
    )
    from ui.guards import BodyLimit, BodyLimits, Busy, GradioSessions, Uploads, upload_cap
    from ui.guards.no_store import NoStoreAppPage
    from ui.observability import RequestContext, queue_depth, route_segments
    from ui.observability import build_router as build_ops_router
    from ui.oidc import build_router as build_oidc_router
    from ui.theme import studio_theme
    from ui.web import (
        BrowserRedirectMiddleware,
        LanguageMiddleware,
        authenticate,
        build_router,
        unexpected_error,
    )

    services = services or build_services(settings)
    mcp = StudioMCP(services)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        from services.maintenance import Maintenance

        maintenance = Maintenance(db=services.db, ledger=services.ledger, studio=services.studio,
                                  interval_seconds=settings.sweep_interval_seconds,
                                  allowances=services.team.refresh_allowances if services.team else None)
        task = asyncio.create_task(_sweep_forever(maintenance, settings.sweep_interval_seconds))
        try:
            async with mcp.running():
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
    app.include_router(build_oidc_router(services))  # provider sign-in and /verify-email
    app.include_router(downloads.build_router(services))  # /images/download-all.zip, trash previews
    app.include_router(build_openai_router(services))  # /v1: the OpenAI-compatible images API
    app.add_route(MCP_PATH, mcp, include_in_schema=False)  # /mcp: the MCP server (streamable HTTP)
    app.include_router(preview_routes(services))  # /previews: a job's live frames, owner only
    app.include_router(admin_routes(services))  # /admin/export/{table}.csv: the console's tables, admins only
    app.include_router(style_routes())  # /style-thumbs: the style picker's thumbnails (assets/styles/)
    app.add_middleware(BrowserRedirectMiddleware, services=services)
    app.add_middleware(LanguageMiddleware, services=services)  # outside it: the language of every page

    async def auth_dependency(request) -> str | None:
        # Gradio awaits it on the event loop: the lookup runs in a worker thread, once per request
        # (the session guard in front of Gradio asks first; the answer is kept in the request scope).
        scope = request.scope
        if "studio.user_id" not in scope:
            user = await anyio.to_thread.run_sync(authenticate, services, request)
            scope["studio.user_id"] = str(user.id) if user else None
        return scope["studio.user_id"]

    async def identify(scope) -> str | None:
        return await auth_dependency(Request(scope))

    lazy_session_configs()
    no_matplotlib_lookups()
    blocks = build_ui(services)
    blocks.queue(default_concurrency_limit=settings.queue_concurrency, max_size=settings.queue_max_size)
    metrics = Metrics(services.db, queue_depth=queue_depth(blocks))
    app.include_router(build_ops_router(settings, metrics))
    data_dir = settings.data_dir.resolve()
    app = gr.mount_gradio_app(
        app, blocks, path="/", auth_dependency=auth_dependency,
        server_name=settings.server_name, server_port=settings.server_port,
        enable_monitoring=False, show_error=False, max_file_size=upload_file_size(settings), ssr_mode=False,
        blocked_paths=[str(data_dir), str(ROOT / ".env"), str(ROOT / "alembic.ini")],
        # Gradio's own footer (its API page with placeholder values, its MCP tab) is off: ours links /api.
        css=(ROOT / "assets" / "studio.css").read_text() + (ROOT / "assets" / "generate.css").read_text(),
        footer_links=[], theme=studio_theme(),
    )
    no_event_analytics(blocks._queue)  # monitoring is off: nothing reads the per-event summary
    enough_queue_slots(blocks._queue)  # quick calls are not queued behind running generations
    app.state.blocks = blocks
    # Each add_middleware wraps the ones before it: a request meets Uploads (signed-in uploads only),
    # then BodyLimit (both answer before a byte of the body is read), then GradioSessions
    # (session_hash owners, release), then Busy (a full queue's 503 in our words).
    app.add_middleware(Busy)
    app.add_middleware(GradioSessions, blocks=blocks, identify=identify)
    app.add_middleware(BodyLimit, limits=BodyLimits(
        gradio_upload=upload_cap(settings.reference_max_bytes, settings.reference_max_images)))
    app.add_middleware(Uploads, identify=identify)
    app.add_middleware(NoStoreAppPage)
    app.add_middleware(RequestContext, metrics=metrics, known=route_segments(app))  # outermost: ids, timing
    return app


def upload_file_size(settings: Settings) -> int:
    """Gradio's per-file ceiling: MAX_UPLOAD_SIZE, raised to REFERENCE_MAX_BYTES (a reference image)."""
    from gradio.utils import _parse_file_size

    return max(settings.reference_max_bytes, _parse_file_size(settings.max_upload_size) or 0)


async def _sweep_forever(maintenance, interval: float) -> None:
    """The housekeeping sweep (services/maintenance.py): now, then every interval."""
    while True:
        try:
            summary = await asyncio.to_thread(maintenance.sweep)
            if any(summary.values()):
                log.info("sweep: %s", summary)
        except Exception:
            log.exception("sweep failed")
        await asyncio.sleep(interval)


def serve(settings: Settings) -> None:
    import uvicorn

    from services.logs import logging_config

    app = create_app(settings)
    print(start_line(settings, app.state.services), flush=True)
    # Uvicorn's own start-up lines say less than ours: only its warnings; the access log stays.
    uvicorn.run(app, host=settings.server_name, port=settings.server_port,
                log_config=logging_config(settings.log_format),
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
    images = (f"local disk ({_shown(images.root)})" if hasattr(images, "root")
              else images.describe() if hasattr(images, "describe") else type(images).__name__)
    return (f"Image Studio on http://{settings.server_name}:{settings.server_port} · store: {store} · "
            f"engine: {engine} · images: {images}")


def _shown(path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from logging.config import dictConfig

    from services.logs import logging_config

    try:
        settings = load_settings()
    except ConfigError as err:
        print(str(err), file=sys.stderr)
        return 1
    # Our own modules note what they do; libraries (alembic, httpx, …) speak only to warn.
    dictConfig(logging_config(settings.log_format))
    if not argv:
        serve(settings)
        return 0
    from cli import run_cli

    return run_cli(argv, settings, build_services=build_services)


if __name__ == "__main__":
    sys.exit(main())
