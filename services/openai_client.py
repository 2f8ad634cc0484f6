"""The one OpenAI client helper, shared by the image engine and the moderator.

`client_options` reads the client's arguments from Settings; `OpenAIPerLoop` builds the
`AsyncOpenAI` client from them, one per event loop.
"""

from __future__ import annotations

import asyncio
import functools

from services.settings import Settings


def client_options(settings: Settings) -> dict:
    """The key, gateway and timeout this instance talks to OpenAI with (OPENAI_API_KEY,
    OPENAI_BASE_URL, OPENAI_TIMEOUT), as keyword arguments for OpenAIEngine / OpenAIModerator."""
    return {"api_key": settings.openai_api_key, "base_url": settings.openai_base_url,
            "timeout": settings.openai_timeout}


class OpenAIPerLoop:
    """Calling it gives one AsyncOpenAI per event loop: its connection pool belongs to the loop
    that made it, and a previous loop (tests, restarts) is gone with its client."""

    def __init__(self, **client_args):
        from openai import AsyncOpenAI  # imported here, at start-up, not by the first user's request

        self._factory = functools.partial(AsyncOpenAI, **client_args)
        self._client = None
        self._client_loop = None

    def __call__(self):
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = self._factory()
            self._client_loop = loop
        return self._client
