"""services/openai_client.py: the one OpenAI client helper both the image engine and the moderator use."""

import asyncio
import subprocess
import sys
from pathlib import Path

from openai import OpenAI

from services.engines import make_engine
from services.moderation import make_moderator
from services.openai_client import OpenAIPerLoop
from services.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_moderation_does_not_import_the_engines():
    probe = "import sys, services.moderation; print(sorted(m for m in sys.modules if m.startswith('services.engines')))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_engine_and_moderator_build_their_clients_from_the_same_settings(tmp_path):
    settings = load_settings(env_file=None, DATA_DIR=str(tmp_path), OPENAI_API_KEY="sk-shared",
                             OPENAI_BASE_URL="http://127.0.0.1:9/v1", OPENAI_TIMEOUT="45")
    engine, moderator = make_engine(settings), make_moderator(settings)
    # The engine reads its streams in worker threads with the synchronous client (one for all
    # threads); the moderator awaits on the loop with one AsyncOpenAI per loop.
    assert isinstance(engine.client, OpenAI) and isinstance(moderator.client, OpenAIPerLoop)

    async def client():
        return moderator.client()

    image_client, moderation_client = engine.client, asyncio.run(client())
    for client in (image_client, moderation_client):
        assert (client.api_key, str(client.base_url)) == ("sk-shared", "http://127.0.0.1:9/v1/")
    assert (image_client.timeout, moderation_client.timeout) == (45.0, 45.0)
    assert image_client.max_retries == moderation_client.max_retries == 2


def test_one_client_per_event_loop(tmp_path):
    per_loop = OpenAIPerLoop(api_key="sk-x", base_url="http://127.0.0.1:9/v1")

    async def twice():
        return per_loop(), per_loop()

    first, again = asyncio.run(twice())
    assert first is again, "one loop reuses its client (and its connection pool)"
    later, _ = asyncio.run(twice())
    assert later is not first, "a new loop gets a new client; the old one belonged to a closed loop"
