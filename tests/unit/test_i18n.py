"""The languages are complete: every key and placeholder in every language, the catalog's and price
list's words, the mails and the terms; the language a request gets; money in each language."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import jinja2
import jinja2.meta
import pytest

from services import i18n
from services.catalog import Catalog
from services.pricing import Pricing

ROOT = Path(__file__).resolve().parents[2]
OTHERS = [tag for tag in i18n.LANGUAGES if tag != i18n.FALLBACK]
KEY_USE = re.compile(r"""\b(?:_|_html|t|i18n\.t|tr)\(\s*(?:[a-z_]+,\s*)?["']([a-z_]+(?:\.[a-z0-9_]+)+)["']""")


def _raw(name: str) -> dict:
    return {k: v for k, v in json.loads((i18n.I18N_DIR / name).read_text(encoding="utf-8")).items()
            if not k.startswith("_")}


def test_there_is_more_than_one_language_and_each_has_a_file():
    assert i18n.FALLBACK == "en" and "zh-CN" in i18n.LANGUAGES
    for tag in i18n.LANGUAGES:
        assert (i18n.I18N_DIR / f"{tag}.json").is_file()


@pytest.mark.parametrize("tag", OTHERS)
def test_every_key_exists_in_every_language_with_the_same_placeholders(tag):
    english, other = _raw("en.json"), _raw(f"{tag}.json")
    assert sorted(set(english) - set(other)) == [], f"missing in {tag}"
    assert sorted(set(other) - set(english)) == [], f"only in {tag}, not in English"
    lost = {key: (i18n.placeholders(english[key]), i18n.placeholders(other[key])) for key in english
            if i18n.placeholders(english[key]) != i18n.placeholders(other[key])}
    assert lost == {}, f"placeholders differ in {tag}"
    empty = [key for key, text in other.items() if not text.strip()]
    assert empty == []


@pytest.mark.parametrize("tag", OTHERS)
def test_the_catalog_and_price_list_words_cover_every_style_ratio_pack_and_plan(tag):
    catalog = Catalog.load(ROOT / "assets")
    pricing = Pricing.load(ROOT / "assets")
    words, prices = _raw(f"catalog.{tag}.json"), _raw(f"pricing.{tag}.json")
    for style in catalog.styles:
        assert words["styles"][style.name]["name"] and words["styles"][style.name]["description"], style.name
    assert {r.ratio for r in catalog.aspect_ratios} <= set(words["aspect_ratios"])
    for section, items in (("packs", pricing.packs), ("plans", pricing.plans)):
        for item in items:
            assert prices[section][item.key]["name"] and prices[section][item.key]["description"], item.key


def test_every_key_the_code_and_templates_use_exists_in_english():
    english = _raw("en.json")
    used = set()
    for path in [*(ROOT / "ui").rglob("*.py"), *(ROOT / "ui" / "templates").glob("*.html"),
                 *(ROOT / "services").rglob("*.py"), *(ROOT / "api").rglob("*.py")]:
        used |= set(KEY_USE.findall(path.read_text(encoding="utf-8")))
        used |= set(re.findall(r"""key=["']([a-z_]+\.[a-z0-9_.]+)["']""", path.read_text(encoding="utf-8")))
    assert len(used) > 50
    assert sorted(k for k in used if k not in english) == []


@pytest.mark.parametrize("tag", OTHERS)
def test_every_mail_and_the_terms_exist_in_every_language_with_the_same_fields(tag):
    env = jinja2.Environment()
    folder = ROOT / "assets" / "email"
    for english in folder.glob("*.txt"):
        if english.name.count(".") > 1:
            continue
        other = folder / f"{english.stem}.{tag}.txt"
        assert other.is_file(), other.name
        fields = [jinja2.meta.find_undeclared_variables(env.parse(p.read_text(encoding="utf-8")))
                  for p in (english, other)]
        assert fields[0] == fields[1], english.name
        assert other.read_text(encoding="utf-8").startswith("Subject: ")
    assert (ROOT / "assets" / f"terms.{tag}.md").is_file()


def test_a_missing_translation_falls_back_to_english_and_placeholders_are_filled():
    assert i18n.t("zh-CN", "error.insufficient_credits", needed=10, available=3).startswith("此操作需要 10 个点数")
    assert i18n.t("fr", "nav.pricing") == "Pricing"
    assert i18n.t("zh-CN", "brand") == "Image Studio"


@pytest.mark.parametrize("header, expected", [
    ("zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"), ("zh", "zh-CN"), ("zh-Hans-CN", "zh-CN"), ("en-GB,en;q=0.9", "en"),
    ("fr-FR, en;q=0.5, zh;q=0.7", "zh-CN"), ("fr, de", None), ("", None), ("zh-TW", None), ("*;q=0.1", None),
    ("en;q=0, zh;q=0.2", "zh-CN"),
])
def test_accept_language_picks_our_best_language(header, expected):
    assert i18n.negotiate(header) == expected


def test_the_cookie_beats_the_account_beats_the_browser_beats_the_default():
    assert i18n.choose(cookie="en", accept_language="zh-CN", account="zh-CN", default="zh-CN") == "en"
    assert i18n.choose(cookie=None, accept_language="en", account="zh-CN") == "zh-CN"
    assert i18n.choose(cookie="xx", accept_language="zh", account=None) == "zh-CN"
    assert i18n.choose(cookie=None, accept_language="fr", account=None, default="zh-CN") == "zh-CN"


def test_money_follows_the_language_and_the_currency():
    assert i18n.money("en", Decimal("4.99"), "usd") == "$4.99"
    assert i18n.money_units("zh-CN", 2900, "cny") == "¥29.00"
    assert i18n.money_units("en", 2900, "cny") == "CN¥29.00"
    assert i18n.number("en", 1500) == "1,500"


def test_the_compare_cost_line_and_a_reference_refusal_in_both_languages():
    from services.references import ReferenceRefused, ReferenceRules
    from services.studio.compare import Quote

    quote = Quote(count=6, unit=10, balance=140)
    assert quote.line == quote.text("en") == "6 images × 10 credits = 60 · you have 140"
    assert quote.text("zh-CN") == "6 张图片 × 10 个点数 = 60 · 您有 140 个"
    with pytest.raises(ReferenceRefused) as refused:
        ReferenceRules().prepare_one("scan.jpg", b"%PDF-1.4\n" + bytes(200))
    assert str(refused.value) == "scan.jpg: this is a PDF; upload a PNG, JPEG or WebP image."
    assert refused.value.text("zh-CN") == "scan.jpg：这是 PDF 文件；请上传 PNG、JPEG 或 WebP 图片。"
