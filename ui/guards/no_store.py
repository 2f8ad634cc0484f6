"""`NoStoreAppPage`: the app page (`/`) is never kept by the browser's cache, so Back after
signing out asks the server again (and lands on the sign-in page) instead of showing a stale app."""

from __future__ import annotations

APP_PAGES = ("/", "")


class NoStoreAppPage:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] not in APP_PAGES:
            await self.app(scope, receive, send)
            return

        async def no_store(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
                message = {**message, "headers": [*headers, (b"cache-control", b"no-store")]}
            await send(message)

        await self.app(scope, receive, no_store)
