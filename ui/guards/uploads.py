"""`Uploads`: Gradio's upload route, open only to signed-in users and only as large as a job's
reference images (issue #11); every other upload route stays refused."""

from __future__ import annotations

from ui.guards.asgi import GRADIO_API, _send_json

UPLOAD = f"{GRADIO_API}/upload"
# Routes that take files into Gradio's upload folder. Only /upload is used (reference images, masks).
UPLOAD_ROUTES = (UPLOAD, f"{GRADIO_API}/process_recording")
MiB = 1024 * 1024


def upload_cap(max_bytes: int, max_images: int) -> int:
    """Bytes one upload request may carry: every reference of a job and its mask at the per-image
    limit (REFERENCE_MAX_BYTES × (REFERENCE_MAX_IMAGES + 1)), plus 1 MiB for the multipart framing.
    `BodyLimit` enforces it (413) before the body is read; Gradio's `max_file_size` caps each file."""
    return max_bytes * (max_images + 1) + MiB


class Uploads:
    """In front of Gradio's upload routes, before a byte of the body is read:

    - /gradio_api/upload: only for a signed-in user (`identify(scope)`, the same lookup as
      auth_dependency: session cookie or API key); anyone else gets 401 and nothing is written.
      Its size is `BodyLimit`'s business (`BodyLimits.gradio_upload`, see `upload_cap`).
    - every other upload route (process_recording: no component records audio): 403.

    What is uploaded is read by the Generate tab's handlers, checked by services/references.py, and
    deleted from Gradio's folder once read (ui/generate.py)."""

    def __init__(self, app, *, identify):
        self.app = app
        self.identify = identify

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            path = scope["path"].rstrip("/")
            if path in UPLOAD_ROUTES:
                if path != UPLOAD:
                    await _send_json(send, 403, "This kind of upload is turned off on this server.", close=True)
                    return
                if not await self.identify(scope):
                    await _send_json(send, 401, "Sign in to upload images.", close=True)
                    return
        await self.app(scope, receive, send)
