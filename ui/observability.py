"""Operations over HTTP: `/metrics` (Prometheus, Bearer METRICS_TOKEN; no token set → 404), and one
ASGI middleware that gives each request an id (`X-Request-ID`, kept for the logs) and times it."""

from __future__ import annotations

import re
import secrets
import time
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from services.logs import REQUEST_ID
from services.metrics import CONTENT_TYPE, Metrics

INCOMING_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Route labels stay few: the first path segment when it is one of ours or Gradio's, else "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
GRADIO_SEGMENTS = frozenset({"", "gradio_api", "assets", "static", "theme.css", "config", "favicon.ico", "manifest.json"})


def build_router(settings, metrics: Metrics) -> APIRouter:
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    def prometheus(request: Request):
        token = settings.metrics_token
        if not token:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.encode(), token.encode()):
            return JSONResponse({"detail": "Not authenticated"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        return Response(metrics.exposition(), media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})

    return router


def queue_depth(blocks):
    """Events waiting in the Gradio queue (None when this Gradio has no queue to ask)."""
    def depth():
        queue = getattr(blocks, "_queue", None)
        try:
            return len(queue) if queue is not None else None
        except TypeError:
            return None
    return depth


def route_segments(app) -> frozenset[str]:
    return GRADIO_SEGMENTS | {_first_segment(path) for path in _paths(app.routes)}


def _paths(routes):
    """Every route path, also those of included routers (FastAPI keeps them nested)."""
    for route in routes:
        if getattr(route, "path", None) is not None:
            yield route.path
        nested = getattr(getattr(route, "original_router", None), "routes", None)
        if nested:
            prefix = getattr(getattr(route, "include_context", None), "prefix", "") or ""
            yield from (prefix + path for path in _paths(nested))


def _first_segment(path: str) -> str:
    return path.lstrip("/").split("/", 1)[0]


class RequestContext:
    """Sets the request id (a well-formed incoming `X-Request-ID`, else a new one) for the logs,
    echoes it in the response, and observes the request's latency."""

    def __init__(self, app, *, metrics: Metrics | None = None, known: frozenset[str] = frozenset()):
        self.app, self.metrics, self.known = app, metrics, known

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if INCOMING_ID.match(incoming) else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)
            if self.metrics is not None:
                segment = _first_segment(scope.get("path", ""))
                route = f"/{segment}" if segment in self.known else "other"
                method = scope.get("method", "GET")
                self.metrics.observe_http(method=method if method in METHODS else "other", route=route, status=status,
                                          seconds=time.perf_counter() - started)
