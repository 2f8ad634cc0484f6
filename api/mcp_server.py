"""The studio as an MCP server (the official `mcp` SDK, streamable HTTP) at /mcp, for agents and
MCP clients (Claude Desktop, Claude Code, Cursor, …).

Tools: `generate_image` (charged like the Generate tab), `edit_image` (the same with reference
images: base64 data or the caller's own generation ids), `get_balance`, `list_styles`.

Every request must carry a studio API key (`Authorization: Bearer sk_studio_…`); without a valid
one it is refused with 401 before the SDK sees it. The caller is read from that key on the server
for each HTTP request and handed to the tools through the request's ASGI scope; no tool takes an
identity from its arguments. The transport is stateless (no MCP session to hijack: each POST
stands alone), so any replica can answer any request.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re

import anyio
from fastapi import Request
from fastapi.responses import JSONResponse
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import CallToolResult, ImageContent, TextContent, ToolAnnotations

from api.common import MISSING_KEY, Caller, caller_for, refusal_for, unexpected
from api.openai_images import closest_aspect, default_style, image_shape
from services.container import Services
from services.errors import DomainError, ValidationFailed
from services.studio import GalleryImage

log = logging.getLogger("studio.mcp")

MCP_PATH = "/mcp"
# edit_image carries its images as base64 (see ui/guards/body_limit.py: the same ceiling as /v1/images/edits)
MCP_BODY_LIMIT = 32 * 1024 * 1024
CALLER = "studio.caller"  # the scope key the endpoint puts the authenticated caller under
GENERATION_ID = re.compile(r"^[0-9a-f]{32}$")
DATA_URL = re.compile(r"^data:image/[a-z0-9.+-]+;base64,", re.IGNORECASE)

INSTRUCTIONS = """Image Studio makes images from text prompts and bills them in the studio's credits.
Call list_styles first to see the styles, aspect ratios and what each resolution costs; call
get_balance to see what the key's owner can spend. generate_image charges the resolution's price
once the image is made; edit_image changes or combines images (yours by generation_id, or base64)
for that price plus a surcharge per image. A refused or failed request is never charged."""


class StudioMCP:
    """The MCP server and its ASGI endpoint. `running()` goes in the app's lifespan."""

    def __init__(self, services: Services):
        self.services = services
        self.server = MCPServer(name="image-studio", title="Image Studio", instructions=INSTRUCTIONS,
                                log_level="WARNING")
        self._register_tools()
        # The SDK's DNS-rebinding guard checks Host/Origin, which matters for servers trusting the
        # network they run on; here every request needs an API key a rebinding page cannot have.
        self.server.streamable_http_app(
            streamable_http_path=MCP_PATH, stateless_http=True, max_request_body_size=MCP_BODY_LIMIT,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
        self.manager = self.server.session_manager

    def running(self):
        """The SDK's task group for the transport: enter it once, in the app's lifespan."""
        return self.manager.run()

    async def __call__(self, scope, receive, send) -> None:
        """The ASGI endpoint at /mcp: the API key first, then the SDK's transport."""
        request = Request(scope)
        caller = await caller_for(self.services, request.headers.get("authorization"))
        if caller is None:
            response = JSONResponse(
                {"error": "invalid_token", "error_description": MISSING_KEY}, status_code=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"', "Cache-Control": "no-store"})
            await response(scope, receive, send)
            return
        scope[CALLER] = caller
        await self.manager.handle_request(scope, receive, send)

    # The tools ------------------------------------------------------------------------------------

    def _register_tools(self) -> None:
        catalog = self.services.catalog
        prices = ", ".join(f"{r.key} ({r.long_edge} px long edge) costs {r.price} credits" for r in catalog.resolutions)
        ratios = ", ".join(r.ratio for r in catalog.aspect_ratios)
        style = default_style(catalog)

        async def generate_image(prompt: str, ctx: Context, style: str = style,
                                 aspect_ratio: str = catalog.default_aspect_ratio,
                                 resolution: str = catalog.default_resolution) -> CallToolResult:
            return await self._tool(ctx, "generate_image", lambda caller: self._generate(
                caller, ctx, prompt=prompt, style=style, aspect_ratio=aspect_ratio, resolution=resolution))

        generate_image.__doc__ = (
            "Make one image from a text prompt and charge its price in credits to the API key's owner.\n\n"
            "Arguments: prompt (what to draw, at most 4,000 characters); style (a style name from "
            f"list_styles; default {style!r}{': the prompt as written' if style == 'none' else ''}); "
            f"aspect_ratio (one of {ratios}; default "
            f"{catalog.default_aspect_ratio}); resolution (default {catalog.default_resolution}).\n"
            f"Cost: {prices}. Charged once the image is stored; a refused prompt, missing credits, the rate "
            "limit or an engine failure charge nothing.\n"
            "Returns the image (WebP) and a JSON summary: generation_id, charged, balance (after the charge), "
            "width, height, aspect_ratio, resolution, style, model, and png_url (the full-resolution PNG, "
            "downloadable with the same API key).")

        surcharge = catalog.reference_surcharge
        most = self.services.settings.reference_max_images

        async def edit_image(prompt: str, images: list[str], ctx: Context, mask: str | None = None,
                             style: str = style, aspect_ratio: str | None = None,
                             resolution: str = catalog.default_resolution) -> CallToolResult:
            return await self._tool(ctx, "edit_image", lambda caller: self._edit(
                caller, ctx, prompt=prompt, images=images, mask=mask, style=style, aspect_ratio=aspect_ratio,
                resolution=resolution))

        edit_image.__doc__ = (
            "Make one image from reference images and a prompt (edit a picture, or combine several) and "
            "charge its price in credits to the API key's owner.\n\n"
            f"Arguments: prompt (what to make of the images, at most 4,000 characters); images (1 to {most} "
            "items, in order, each either the generation_id of one of your own images, as generate_image and "
            "edit_image return it, or a PNG, JPEG or WebP file as base64, a data: URL also accepted; the first "
            "is the one edited); mask (optional, base64 PNG with the first image's shape: its transparent "
            "pixels mark the area to change, the rest is kept); style, resolution as for generate_image; "
            "aspect_ratio (one of "
            f"{ratios}; default: the one closest to the first image).\n"
            f"Cost: the resolution's price ({prices})"
            + (f" plus {surcharge} credits per image given" if surcharge else "; the images add nothing") + ". "
            "Charged once the image is stored; a refused image or prompt, missing credits, the rate limit or an "
            "engine failure charge nothing.\n"
            "Returns the image (WebP) and a JSON summary as generate_image does (generation_id, charged, "
            "balance, width, height, aspect_ratio, resolution, style, model, png_url), plus references (how "
            "many images it was made from). The new generation_id can be passed to edit_image again.")

        async def get_balance(ctx: Context) -> CallToolResult:
            """The API key owner's credits. Free.

            Returns JSON: balance (credits that can be spent now), held (credits reserved by images being
            made right now), buckets (balance by kind: trial, subscription, pack, …)."""
            return await self._tool(ctx, "get_balance", self._balance)

        async def list_styles(ctx: Context) -> CallToolResult:
            """What generate_image accepts, and what it costs. Free.

            Returns JSON: styles (name, description), aspect_ratios, resolutions (key, long_edge in
            pixels, price in credits, and `requires` when a resolution is open only to paying customers),
            and the defaults."""
            return await self._tool(ctx, "list_styles", self._styles)

        free = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                               open_world_hint=False)
        self.server.add_tool(generate_image, title="Generate an image (charged in credits)",
                             annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False,
                                                         idempotent_hint=False, open_world_hint=True),
                             structured_output=False)
        self.server.add_tool(edit_image, title="Edit or combine images (charged in credits)",
                             annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False,
                                                         idempotent_hint=False, open_world_hint=True),
                             structured_output=False)
        self.server.add_tool(get_balance, title="Credit balance", annotations=free, structured_output=False)
        self.server.add_tool(list_styles, title="Styles, sizes and prices", annotations=free,
                             structured_output=False)

    async def _tool(self, ctx: Context, name: str, work) -> CallToolResult:
        """Run a tool for the authenticated caller; a domain error is the tool's error result (with
        OpenAI's error type and code), anything else a reference id."""
        request = ctx.request_context.request
        caller = request.scope.get(CALLER) if request is not None else None
        if not isinstance(caller, Caller):
            return _error({"message": MISSING_KEY, "type": "invalid_request_error", "param": None,
                           "code": "invalid_api_key"})
        try:
            return await work(caller)
        except DomainError as err:
            return _error(refusal_for(err).body()["error"])
        except Exception as err:  # noqa: BLE001 - a reference id, details in the log
            return _error(unexpected(err, f"mcp tool {name}").body()["error"])

    async def _edit(self, caller: Caller, ctx: Context, *, images: list[str], mask: str | None,
                    aspect_ratio: str | None, **choice) -> CallToolResult:
        references = [_reference(index, item) for index, item in enumerate(images or [])]
        if not references:
            raise ValidationFailed("Give at least one image to edit: a generation_id of yours or base64 data.")
        mask_upload = ("mask.png", _decoded(mask, "mask")) if mask else None
        if aspect_ratio is None:
            shape = await anyio.to_thread.run_sync(self._shape, caller, references[0])
            catalog = self.services.catalog
            aspect_ratio = (closest_aspect(*shape, catalog.aspect_ratios).ratio if shape
                            else catalog.default_aspect_ratio)
        return await self._generate(caller, ctx, aspect_ratio=aspect_ratio, references=references,
                                    mask=mask_upload, **choice)

    def _shape(self, caller: Caller, reference) -> tuple[int, int] | None:
        if isinstance(reference, GalleryImage):  # NotFound unless it is the caller's
            g = self.services.studio.get(user_id=caller.user_id, generation_id=reference.generation_id)
            return (g.width, g.height) if g.width and g.height else None
        return image_shape(reference[1])

    async def _generate(self, caller: Caller, ctx: Context, **choice) -> CallToolResult:
        result = await self.services.studio.generate(user_id=caller.user_id, is_admin=caller.is_admin, **choice)
        g = result.generation
        request = ctx.request_context.request
        origin = self.services.settings.public_url or str(request.base_url).rstrip("/")
        summary = {
            "generation_id": g.id, "charged": g.cost, "balance": result.balance, "width": g.width,
            "height": g.height, "aspect_ratio": g.aspect_ratio, "resolution": g.resolution, "style": g.style,
            "model": g.model, "png_url": f"{origin}/images/{g.id}/png", "message": result.message,
        }
        if choice.get("references"):
            summary["references"] = len(choice["references"])
        image = ImageContent(type="image", data=base64.b64encode(result.display_webp).decode(),
                             mime_type="image/webp")
        return CallToolResult(content=[image, TextContent(type="text", text=json.dumps(summary))],
                              structured_content=summary)

    async def _balance(self, caller: Caller) -> CallToolResult:
        balance = await anyio.to_thread.run_sync(self.services.ledger.balance, caller.user_id)
        return _ok({"balance": balance.total, "held": balance.held, "buckets": dict(balance.buckets)})

    async def _styles(self, caller: Caller) -> CallToolResult:
        catalog = self.services.catalog
        return _ok({
            "styles": [{"name": s.name, "description": s.description} for s in catalog.styles],
            "aspect_ratios": [r.ratio for r in catalog.aspect_ratios],
            "resolutions": [{"key": r.key, "long_edge": r.long_edge, "price": r.price, "requires": r.requires}
                            for r in catalog.resolutions],
            "defaults": {"style": default_style(catalog), "aspect_ratio": catalog.default_aspect_ratio,
                         "resolution": catalog.default_resolution},
        })


def _reference(index: int, item: object):
    """One of edit_image's images: the caller's own generation (by id) or base64 data."""
    if not isinstance(item, str) or not item.strip():
        raise ValidationFailed(f"images[{index}] is empty: give a generation_id of yours or base64 image data.")
    item = item.strip()
    if GENERATION_ID.match(item):
        return GalleryImage(generation_id=item)
    return (f"image-{index + 1}", _decoded(item, f"images[{index}]"))


def _decoded(data: str, what: str) -> bytes:
    try:
        return base64.b64decode(DATA_URL.sub("", data.strip(), count=1), validate=True)
    except (binascii.Error, ValueError):
        raise ValidationFailed(f"{what} is not valid base64 image data"
                               + (" (nor a generation_id of yours)." if what != "mask" else ".")) from None


def _ok(payload: dict) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=json.dumps(payload))], structured_content=payload)


def _error(error: dict) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=error["message"])],
                          structured_content={"error": error}, is_error=True)
