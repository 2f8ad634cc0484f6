"""Every aspect ratio × resolution delivers the exact size, for gpt-image-2 (any WxH within limits)
and for a fixed-size model, through the real SDK and the fake server (which checks sizes as the
real API does), then the studio's post-processing."""

import asyncio
import io

import pytest
from PIL import Image

from services import sizing
from services.engines import EngineRequest, OpenAIEngine
from services.studio import postprocess

RATIOS = ["1:1", "4:3", "3:4", "3:2", "2:3", "16:9", "9:16", "21:9"]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["gpt-image-2", "gpt-image-1.5"])
def test_every_ratio_and_resolution_is_delivered_exactly(fake_openai, catalog, model):
    engine = OpenAIEngine(api_key="sk-test", base_url=fake_openai.url, model=model, timeout=30)
    style = catalog.style("none")

    async def one(ratio: str, resolution: str):
        aspect, res = catalog.aspect_ratio(ratio), catalog.resolution(resolution)
        plan = sizing.plan(engine.size_rules, aspect.width, aspect.height, res.long_edge)
        result = await engine.generate(EngineRequest(prompt="p", style=style, width=plan.requested[0],
                                                     height=plan.requested[1], user_id=1))
        rendered = await asyncio.to_thread(postprocess, result, *plan.delivered)
        return ratio, res, plan, rendered

    async def all_cases():
        return await asyncio.gather(*(one(r, res) for r in RATIOS for res in ("1K", "2K", "4K")))

    for ratio, res, plan, rendered in asyncio.run(all_cases()):
        w, h = (int(x) for x in ratio.split(":"))
        png = Image.open(io.BytesIO(rendered.png))
        webp = Image.open(io.BytesIO(rendered.webp))
        assert png.size == webp.size == plan.delivered == (rendered.width, rendered.height), (ratio, res.key)
        assert max(png.size) == res.long_edge
        assert abs((png.width / png.height) / (w / h) - 1) < 0.005
    asked = {r.body["size"] for r in fake_openai.calls("/images/generations")}
    assert len(fake_openai.calls("/images/generations")) == 24
    if model == "gpt-image-1.5":
        assert asked == {"1024x1024", "1536x1024", "1024x1536"}
    else:
        assert "3840x2160" in asked and "2160x3840" in asked and "1024x1024" in asked
