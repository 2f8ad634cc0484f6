"""The peer the served benchmarks compare against: a bare Gradio app, the way a minimal Space
serves GPT Image. No accounts, no credits, no database, no guards, no post-processing: `/generate`
sends the prompt to the engine with the async OpenAI SDK and returns the decoded image (Gradio
writes it to its cache as WebP); `/balance` returns a number. Same Gradio version, same queue
settings (`QUEUE_CONCURRENCY`), served by uvicorn like the app, with a `/healthz` route for the
probes. Whatever the studio costs on top of Gradio is the difference between the two.

    OPENAI_BASE_URL=... OPENAI_API_KEY=... GRADIO_SERVER_PORT=... python bench/peer_gradio.py
"""

from __future__ import annotations

import base64
import io
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from openai import AsyncOpenAI  # noqa: E402
from PIL import Image  # noqa: E402

client = AsyncOpenAI()


async def generate(prompt: str, style: str, aspect_ratio: str, resolution: str) -> Image.Image:
    result = await client.images.generate(model=os.environ.get("IMAGE_MODEL", "gpt-image-2"),
                                          prompt=f"{prompt} ({style})", size="1024x1024")
    image = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json)))
    image.load()
    return image


def balance() -> int:
    return 1000


def build() -> gr.Blocks:
    with gr.Blocks() as demo:
        prompt, style = gr.Textbox(label="Prompt"), gr.Textbox(label="Style")
        ratio, resolution = gr.Textbox(label="Aspect ratio"), gr.Textbox(label="Resolution")
        image, credits = gr.Image(label="Image"), gr.Number(label="Balance")
        gr.Button("Generate").click(generate, [prompt, style, ratio, resolution], image, api_name="generate")
        gr.Button("Balance").click(balance, None, credits, api_name="balance")
    demo.queue(default_concurrency_limit=int(os.environ.get("QUEUE_CONCURRENCY", "64")))
    return demo


def main() -> None:
    app = FastAPI()
    app.get("/healthz")(lambda: {"ok": True})
    app = gr.mount_gradio_app(app, build(), path="/", ssr_mode=False, enable_monitoring=False)
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["GRADIO_SERVER_PORT"]), log_level="warning")


if __name__ == "__main__":
    main()
