"""The MCP server at /mcp through the official `mcp` client (streamable HTTP) against the served
app: the tools and their documentation, generate_image (the image returned, the credits charged),
get_balance, list_styles, refusals charged nothing, and no key → refused."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from PIL import Image

from tests.e2e.conftest import api_user, balance_of
from tests.pictures import mask, picture

TOOLS = {"generate_image", "edit_image", "get_balance", "list_styles"}


async def session(app, key: str | None, work, *, mode: str = "auto"):
    """Run `work(client)` inside an MCP client connected to the app with `key` (None: no header)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(120)) as http,
                Client(streamable_http_client(f"{app.url}/mcp", http_client=http), mode=mode) as client):
        return await work(client)


def run(app, key, work, **kwargs):
    return asyncio.run(session(app, key, work, **kwargs))


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_tools_are_listed_and_documented(served_app, mode):
    _, key = api_user(served_app)

    async def work(client):
        return (await client.list_tools()).tools

    tools = {tool.name: tool for tool in run(served_app, key, work, mode=mode)}
    assert set(tools) == TOOLS
    generate = tools["generate_image"]
    assert generate.input_schema["required"] == ["prompt"]
    assert set(generate.input_schema["properties"]) == {"prompt", "style", "aspect_ratio", "resolution"}
    for says in ("1K (1024 px long edge) costs 10 credits", "4K", "charge nothing", "balance", "png_url"):
        assert says in generate.description
    assert generate.annotations.read_only_hint is False
    edit = tools["edit_image"]
    assert edit.input_schema["required"] == ["prompt", "images"]
    assert set(edit.input_schema["properties"]) == {"prompt", "images", "mask", "style", "aspect_ratio", "resolution"}
    for says in ("generation_id", "base64", "transparent", "costs 10 credits", "charge nothing", "references"):
        assert says in edit.description
    assert "Free" in tools["get_balance"].description and tools["get_balance"].annotations.read_only_hint
    assert "price" in tools["list_styles"].description


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_generate_image_returns_the_image_and_charges(served_app, mode):
    user, key = api_user(served_app, credits=100)

    async def work(client):
        made = await client.call_tool("generate_image", {"prompt": "a lighthouse at dusk", "style": "cinematic",
                                                         "aspect_ratio": "16:9"})
        balance = await client.call_tool("get_balance", {})
        return made, balance

    made, balance = run(served_app, key, work, mode=mode)
    assert not made.is_error
    image_block = next(block for block in made.content if block.type == "image")
    assert image_block.mime_type == "image/webp"
    image = Image.open(io.BytesIO(base64.b64decode(image_block.data)))
    assert (image.format, image.size) == ("WEBP", (1024, 576))
    summary = made.structured_content
    text = json.loads(next(block for block in made.content if block.type == "text").text)
    assert text == summary
    assert (summary["charged"], summary["balance"]) == (10, 90) and balance_of(served_app, user) == 90
    assert (summary["aspect_ratio"], summary["resolution"], summary["style"]) == ("16:9", "1K", "cinematic")
    assert balance.structured_content["balance"] == 90 and balance.structured_content["held"] == 0
    assert served_app.services.studio.gallery(user_id=user.id).items[0].id == summary["generation_id"]
    with served_app.client(headers={"Authorization": f"Bearer {key}"}) as http:
        png = http.get(summary["png_url"])
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"


def test_list_styles(served_app):
    _, key = api_user(served_app)

    async def work(client):
        return await client.call_tool("list_styles", {})

    listed = run(served_app, key, work).structured_content
    catalog = served_app.services.catalog
    assert [s["name"] for s in listed["styles"]] == catalog.style_names
    assert {r["key"]: r["price"] for r in listed["resolutions"]} == {"1K": 10, "2K": 20, "4K": 40}
    assert "16:9" in listed["aspect_ratios"] and listed["defaults"]["style"] == "none"


def test_refusals_are_tool_errors_and_charge_nothing(served_app):
    user, key = api_user(served_app)  # 40 trial credits

    async def work(client):
        calls = [
            {"prompt": "a cat", "style": "no-such-style"},
            {"prompt": ""},
            {"prompt": "child porn"},
            {"prompt": "a cat", "resolution": "16K"},
        ]
        refused = [await client.call_tool("generate_image", args) for args in calls]
        await client.call_tool("generate_image", {"prompt": "a cat", "resolution": "2K"})
        await client.call_tool("generate_image", {"prompt": "a cat", "resolution": "2K"})
        broke = await client.call_tool("generate_image", {"prompt": "a cat"})
        return refused, broke

    refused, broke = run(served_app, key, work)
    assert all(result.is_error for result in refused)
    messages = [result.content[0].text for result in refused]
    for message, says in zip(messages, ("Unknown style", "Please enter a prompt", "refused by our content rules",
                                        "Unknown resolution"), strict=True):
        assert says in message
    assert refused[2].structured_content["error"]["code"] == "moderation_blocked"
    assert broke.is_error and broke.structured_content["error"]["code"] == "insufficient_credits"
    assert "This needs 10 credits and you have 0" in broke.content[0].text
    assert balance_of(served_app, user) == 0
    assert served_app.services.studio.gallery(user_id=user.id).total == 2
    assert served_app.services.ledger.reconcile(user.id) == []


def _leaves(group: BaseException) -> list[BaseException]:
    if isinstance(group, BaseExceptionGroup):
        return [leaf for inner in group.exceptions for leaf in _leaves(inner)]
    return [group]


def declared_too_big(app, path: str, length: int) -> int:
    """The status answered to a POST that declares a body of `length` bytes (none is sent)."""
    port = int(app.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {length}\r\nConnection: close\r\n\r\n".encode())
        head = sock.recv(4096)
    return int(head.split(b" ", 2)[1])


def test_no_key_is_refused(served_app):
    user, key = api_user(served_app)

    async def work(client):
        return await client.list_tools()

    for bad in (None, "sk_studio_not-a-real-key", key + "x"):
        for mode in ("auto", "legacy"):
            with pytest.raises(BaseExceptionGroup) as refused:
                run(served_app, bad, work, mode=mode)
            assert any(isinstance(leaf, MCPError) for leaf in _leaves(refused.value)), "the client saw the refusal"
    with served_app.client() as http:
        message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"name": "generate_image", "arguments": {"prompt": "a cat"}}}
        for headers in ({}, {"Authorization": "Bearer sk_studio_nope"}, {"Authorization": f"Basic {key}"}):
            answer = http.post("/mcp", json=message, headers={"Accept": "application/json, text/event-stream",
                                                             **headers})
            assert answer.status_code == 401 and answer.json()["error"] == "invalid_token"
            assert answer.headers["www-authenticate"].startswith("Bearer")
    assert declared_too_big(served_app, "/mcp", 33 * 1024 * 1024) == 413
    assert balance_of(served_app, user) == 40
    assert served_app.services.studio.gallery(user_id=user.id).total == 0


def test_through_gpt_image_failures_are_refunded_and_limits_apply(serve_app, fake_openai, clock):
    app = serve_app(IMAGE_PROVIDER="openai", OPENAI_API_KEY="sk-test-fake", OPENAI_BASE_URL=fake_openai.url,
                    GENERATION_RATE_PER_MINUTE=2)
    app.services.studio.clock = clock
    user, key = api_user(app)
    fake_openai.fail("error_500")  # every attempt, the engine's own retries included

    async def failing(client):
        return await client.call_tool("generate_image", {"prompt": "a harmless cat"})

    failed = run(app, key, failing)
    assert failed.is_error and failed.structured_content["error"]["code"] == "provider_error"
    assert "you were not charged" in failed.content[0].text and balance_of(app, user) == 40
    fake_openai.fail(None)

    async def limited(client):
        return [await client.call_tool("generate_image", {"prompt": "a harmless dog"}) for _ in range(2)]

    made, refused = run(app, key, limited)  # the failed call counted towards the per-minute limit too
    assert not made.is_error and made.structured_content["charged"] == 10
    assert refused.is_error and refused.structured_content["error"]["code"] == "rate_limit_exceeded"
    assert balance_of(app, user) == 30 and app.services.ledger.reconcile(user.id) == []


def test_edit_image_from_base64_and_from_an_own_generation(served_app):
    user, key = api_user(served_app, credits=100)
    other, other_key = api_user(served_app)
    photo = base64.b64encode(picture(320, 240, fmt="PNG")).decode()

    async def work(client):
        made = await client.call_tool("edit_image", {
            "prompt": "make it dusk", "images": [f"data:image/png;base64,{photo}"],
            "mask": base64.b64encode(mask(320, 240, (0, 0, 160, 120))).decode()})
        again = await client.call_tool("edit_image", {
            "prompt": "add a moon", "images": [made.structured_content["generation_id"], photo],
            "aspect_ratio": "1:1"})
        return made, again

    made, again = run(served_app, key, work)
    assert not made.is_error and not again.is_error, (made.content, again.content)
    first = made.structured_content
    assert (first["aspect_ratio"], first["references"], first["charged"], first["balance"]) == ("4:3", 1, 10, 90)
    image = Image.open(io.BytesIO(base64.b64decode(next(b for b in made.content if b.type == "image").data)))
    assert image.format == "WEBP" and abs(image.width / image.height - 4 / 3) < 0.01
    second = again.structured_content
    assert (second["aspect_ratio"], second["references"], second["balance"]) == ("1:1", 2, 80)
    kept = served_app.services.studio.references_of(user_id=user.id, generation_id=second["generation_id"])
    assert [r["source"] for r in kept] == [first["generation_id"], "upload"]
    assert balance_of(served_app, user) == 80

    async def steal(client):  # another key cannot use this user's image, even by its id
        return [await client.call_tool("edit_image", {"prompt": "mine now", "images": [first["generation_id"]]}),
                await client.call_tool("edit_image", {"prompt": "x", "images": ["not base64 at all!"]}),
                await client.call_tool("edit_image", {"prompt": "x", "images": []}),
                await client.call_tool("edit_image", {"prompt": "x", "images": [photo], "mask": photo})]

    stolen, garbage, empty, no_alpha = run(served_app, other_key, steal)
    assert stolen.is_error and stolen.structured_content["error"]["code"] == "not_found"
    assert garbage.is_error and "images[0] is not valid base64" in garbage.content[0].text
    assert empty.is_error and "at least one image" in empty.content[0].text
    assert no_alpha.is_error and "transparency" in no_alpha.content[0].text
    assert balance_of(served_app, other) == 40 and served_app.services.studio.gallery(user_id=other.id).total == 0
