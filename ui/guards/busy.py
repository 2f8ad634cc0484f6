"""A full queue says so in the studio's words: "busy, try again in a moment", never a hang.

Gradio refuses a new event with 503 once `QUEUE_MAX_SIZE` events wait (`blocks.queue(max_size=)`);
its browser client already shows "This application is currently busy", but an API caller got
"Queue is full. Max size is 500 and size is 500." `Busy` rewrites that answer: the same 503, our
message, and `Retry-After` so that clients back off instead of hammering.
"""

from __future__ import annotations

import json

from ui.guards.asgi import GRADIO_API

BUSY = "The studio is busy right now. Please try again in a moment."
RETRY_AFTER_SECONDS = 5
_JOINS = (GRADIO_API + "/queue/join", GRADIO_API + "/call/")


class Busy:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith(_JOINS):
            await self.app(scope, receive, send)
            return
        refused = False

        async def rewriting_send(message):
            nonlocal refused
            if message["type"] == "http.response.start" and message["status"] == 503:
                refused = True
                body = json.dumps({"detail": BUSY}).encode()
                await send({"type": "http.response.start", "status": 503, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(RETRY_AFTER_SECONDS).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
            if refused:
                return  # Gradio's own body for the 503: already answered
            await send(message)

        await self.app(scope, receive, rewriting_send)
