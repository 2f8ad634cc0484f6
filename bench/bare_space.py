"""The peer of the served benchmarks (bench/studio.py's test 5, bench/load.py): a minimal Gradio app
that only calls the engine and returns the image, the way a bare Space does (no accounts, no
credits, no moderation, no store, no previews, no guards).

    python bench/bare_space.py --port 7861 --openai-base-url http://127.0.0.1:PORT/v1

`/generate (prompt) -> image`: the OpenAI SDK's synchronous client in Gradio's worker threads, a
non-streamed `images.generate`, the PNG decoded into a PIL image that Gradio writes to its cache as
WebP and serves from `/gradio_api/file=`; `/balance () -> number` answers a constant. Its queue
admits as many events at once as ours (`--concurrency`), so the comparison is about the work per
request, not a queue setting. Served by uvicorn as the app is, with a `/healthz` route for probes.
"""

from __future__ import annotations

import argparse
import base64
import io
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from openai import OpenAI  # noqa: E402
from PIL import Image  # noqa: E402


def build(base_url: str, concurrency: int) -> gr.Blocks:
    client = OpenAI(api_key="sk-bench", base_url=base_url)

    def generate(prompt: str) -> Image.Image:
        response = client.images.generate(model="gpt-image-2", prompt=prompt, size="1024x1024", n=1,
                                          output_format="png")
        return Image.open(io.BytesIO(base64.b64decode(response.data[0].b64_json)))

    def balance() -> int:
        return 1000

    with gr.Blocks(analytics_enabled=False) as demo:
        prompt = gr.Textbox(label="Prompt")
        image, credits = gr.Image(label="Image"), gr.Number(label="Balance")
        gr.Button("Generate").click(generate, [prompt], [image], api_name="generate")
        gr.Button("Balance").click(balance, None, [credits], api_name="balance")
    demo.queue(default_concurrency_limit=concurrency)
    return demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--openai-base-url", required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    app = FastAPI()
    app.get("/healthz")(lambda: {"ok": True})
    app = gr.mount_gradio_app(app, build(args.openai_base_url, args.concurrency), path="/", ssr_mode=False,
                              show_error=True)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
