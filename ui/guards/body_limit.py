"""`BodyLimit`: every request body has a ceiling by route class (`BodyLimits`), enforced before it
is read."""

from __future__ import annotations

from dataclasses import dataclass

from ui.guards.asgi import GRADIO_API, _header, _send_json

KiB = 1024
MiB = 1024 * KiB

FORM_ROUTES = ("/login", "/signup", "/forgot", "/reset", "/logout")


@dataclass(frozen=True)
class BodyLimits:
    """Ceilings for request bodies, by route class (bytes).

    - webhook: Stripe events are a few KiB, far below 1 MiB.
    - form: the sign-in/up, reset and sign-out forms carry an email, a password (at most 1,024
      characters), a token and a CSRF token: well under 4 KiB, so 64 KiB is generous.
    - gradio_api: the largest input of any event is the prompt, at most 4,000 characters. JSON
      escapes a character into at most 12 bytes (a surrogate pair as two \\uXXXX), so 48 KiB in
      the worst case; the other inputs (a style, a ratio, a page number, a gallery's file
      references, event data) add a few KiB. 256 KiB leaves more than 4x headroom and still keeps
      a burst of concurrent requests to a few MiB.
    - api: the OpenAI-compatible /v1 routes take the same prompt in JSON (a generations request)
      with a few short fields: the gradio_api reasoning holds.
    - api_uploads: /v1/images/edits (multipart images) and the MCP endpoint (edit_image's images
      in base64): a few photos and a mask; each image's own limit (REFERENCE_MAX_BYTES) and count
      are the studio's reference rules.
    - gradio_upload: /gradio_api/upload carries a job's reference images and mask (issue #11):
      app.py sets it to `upload_cap(REFERENCE_MAX_BYTES, REFERENCE_MAX_IMAGES)` (uploads.py).
    - default: anything else (no other route takes a body today).
    """

    webhook: int = 1 * MiB
    form: int = 64 * KiB
    gradio_api: int = 256 * KiB
    api: int = 256 * KiB
    api_uploads: int = 32 * MiB
    gradio_upload: int = 9 * 20 * MiB + MiB
    default: int = 64 * KiB

    def for_path(self, path: str) -> int:
        if path.startswith("/webhooks/"):
            return self.webhook
        if path.rstrip("/") in ("/v1/images/edits", "/mcp"):
            return self.api_uploads
        if path.startswith("/v1/"):
            return self.api
        if path.rstrip("/") in FORM_ROUTES:
            return self.form
        if path.rstrip("/") == GRADIO_API + "/upload":
            return self.gradio_upload
        if path.startswith(GRADIO_API + "/"):
            return self.gradio_api
        return self.default


class BodyLimit:
    """Refuse a request whose body is larger than its route's limit with 413, before reading it.

    A declared Content-Length above the limit is answered at once, without reading a byte. A body
    without one (chunked) is counted as it streams: past the limit the application sees a
    disconnect (so it stops reading and drops what it buffered), whatever it answers to that is
    discarded, and the client gets the 413. Either way at most `limit` bytes are ever held.
    """

    def __init__(self, app, *, limits: BodyLimits | None = None):
        self.app = app
        self.limits = limits or BodyLimits()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.for_path(scope["path"])
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _send_json(send, 400, "Invalid Content-Length.", close=True)
                return
            if size > limit:
                await _send_json(send, 413, f"Request body too large: the limit here is {limit} bytes.",
                                 close=True)
                return

        received = 0
        over = False
        started = False

        async def capped_receive():
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            nonlocal started
            if over:
                return  # the application's answer to a cut-off body is replaced by the 413
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, capped_receive, guarded_send)
        except Exception:
            if not over:
                raise
        if over and not started:
            await _send_json(send, 413, f"Request body too large: the limit here is {limit} bytes.", close=True)
