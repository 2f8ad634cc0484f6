"""`UploadsOff`: Gradio's upload routes are refused until a later issue enables them with caps."""

from __future__ import annotations

from ui.guards.asgi import GRADIO_API, _send_json

# Routes that take files into Gradio's upload folder. No component accepts uploads today.
UPLOAD_ROUTES = (f"{GRADIO_API}/upload", f"{GRADIO_API}/process_recording")


class UploadsOff:
    """Refuse Gradio's upload routes with 403 before the body is read: no component takes files.

    Gradio's own limit is 1,000 files per request of `max_file_size` each, per call, with no
    per-user budget. When a later issue adds image inputs (edits, masks), this is the place to
    replace the refusal with per-user caps checked before the body is read: files per request,
    bytes per request (Content-Length, then counted as in `BodyLimit`), and uploads per user per
    hour; `max_file_size` in `mount_gradio_app` stays the per-file ceiling.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].rstrip("/") in UPLOAD_ROUTES:
            await _send_json(send, 403, "File uploads are turned off on this server.", close=True)
            return
        await self.app(scope, receive, send)
