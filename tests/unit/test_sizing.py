import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from services import sizing
from services.sizing import FLEXIBLE, STANDARD, crop_box, fit, output_size, plan, request_size, rules_for

RATIOS = [(1, 1), (4, 3), (3, 4), (3, 2), (2, 3), (16, 9), (9, 16), (21, 9)]
EDGES = [1024, 2048, 3840]
CASES = [(r, e) for r in RATIOS for e in EDGES]


@pytest.mark.parametrize("ratio, edge", CASES)
def test_delivered_size_is_exact(ratio, edge):
    w, h = output_size(*ratio, edge)
    assert max(w, h) == edge
    short_ratio = min(ratio) / max(ratio)
    assert min(w, h) == math.floor(edge * short_ratio + 0.5)
    assert abs((w / h) / (ratio[0] / ratio[1]) - 1) < 0.005
    assert (w >= h) == (ratio[0] >= ratio[1])


@pytest.mark.parametrize("ratio, edge", CASES)
def test_gpt_image_2_is_asked_for_a_size_it_accepts_and_as_close_as_possible(ratio, edge):
    target = output_size(*ratio, edge)
    w, h = request_size(FLEXIBLE, *target)
    assert w % 16 == 0 and h % 16 == 0
    assert w * h <= 3840 * 2160 and max(w, h) <= 3840
    assert max(w, h) / min(w, h) <= 3
    if target[0] * target[1] <= 3840 * 2160:
        # It can deliver the size itself: at least the target, never more than one 16px step over.
        assert target[0] <= w < target[0] + 16 and target[1] <= h < target[1] + 16
    else:
        # Too many pixels: the largest allowed size of (nearly) the same shape.
        assert w * h > 0.98 * 3840 * 2160
        assert abs((w / h) / (target[0] / target[1]) - 1) < 0.01


def test_native_4k_widescreen_is_asked_as_is():
    assert request_size(FLEXIBLE, 3840, 2160) == (3840, 2160)
    assert request_size(FLEXIBLE, 2160, 3840) == (2160, 3840)
    assert plan(FLEXIBLE, 16, 9, 3840).requested == (3840, 2160)


@pytest.mark.parametrize("ratio, edge", CASES)
def test_fixed_size_models_get_the_closest_shape(ratio, edge):
    target = output_size(*ratio, edge)
    asked = request_size(STANDARD, *target)
    assert asked in STANDARD.fixed
    want = math.log(target[0] / target[1])
    assert all(abs(math.log(asked[0] / asked[1]) - want) <= abs(math.log(s[0] / s[1]) - want) + 1e-9
               for s in STANDARD.fixed)


def test_capability_table():
    assert rules_for("gpt-image-2").flexible
    assert rules_for("gpt-image-2-2026-04-21").flexible
    assert rules_for("gpt-image-2.5-flare").flexible
    assert rules_for("gpt-image-1.5") is STANDARD
    assert rules_for("gpt-image-1-mini") is STANDARD
    assert rules_for("some-gateway-model") is STANDARD  # unknown: the sizes every model takes


@pytest.mark.parametrize("rules", [FLEXIBLE, STANDARD], ids=["gpt-image-2", "fixed"])
@pytest.mark.parametrize("ratio, edge", CASES)
def test_fit_turns_what_the_model_gives_into_the_exact_size(rules, ratio, edge):
    p = plan(rules, *ratio, edge)
    out = fit(Image.new("RGB", p.requested, "gray"), *p.delivered)
    assert out.size == p.delivered


def test_fit_only_crops_when_the_model_delivered_enough_pixels():
    source = Image.new("RGB", (1024, 448))
    source.paste((255, 0, 0), (0, 0, 1024, 4))  # a red band at the top edge is cropped away
    out = fit(source, 1024, 439)
    assert out.size == (1024, 439)
    assert out.getpixel((10, 0)) != (255, 0, 0)


def test_plan_without_rules_renders_the_exact_size():
    assert plan(None, 21, 9, 2048) == sizing.SizePlan(requested=(2048, 878), delivered=(2048, 878))


@given(st.integers(16, 4000), st.integers(16, 4000), st.integers(16, 4000), st.integers(16, 4000))
def test_crop_box_has_the_target_ratio_to_the_pixel(w, h, tw, th):
    left, top, right, bottom = crop_box(w, h, tw, th)
    cw, ch = right - left, bottom - top
    assert left >= 0 and top >= 0 and right <= w and bottom <= h
    assert cw == w or ch == h  # only one side is trimmed
    # Within one pixel of the exact ratio, on the trimmed side.
    assert abs(cw * th - ch * tw) <= max(tw, th)
