"""Programmatic doors into the studio, beside the Gradio UI: the OpenAI-compatible images API
(`openai_images.py`, under /v1) and the MCP server (`mcp_server.py`, at /mcp).

Both authenticate with the studio's API keys only (`Authorization: Bearer sk_studio_…`), take
identity from that key on the server, and call the same services the UI calls (`Studio.generate`
holds, charges and refunds exactly as the Generate tab does): no money path of their own.
`common.py` holds what they share (the key lookup, the domain-error → HTTP mapping).
"""

from api.mcp_server import MCP_PATH, StudioMCP
from api.openai_images import build_openai_router

__all__ = ["MCP_PATH", "StudioMCP", "build_openai_router"]
