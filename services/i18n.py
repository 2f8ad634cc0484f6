"""Languages: the product's words as data (assets/i18n/<language>.json, one flat table of keys per
language, `{name}` placeholders), the catalog's and the price list's names beside them
(catalog.<language>.json, pricing.<language>.json), the choice of a language for a request, and
numbers, money and dates in that language (Babel). English is the fallback for anything missing.

A new language: copy assets/i18n/en.json (and the catalog/pricing files) to <tag>.json, translate,
add the tag to LANGUAGES. tests/unit/test_i18n.py fails until every key and placeholder is there."""

from __future__ import annotations

import json
import re
import string
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal

I18N_DIR = Path(__file__).resolve().parent.parent / "assets" / "i18n"
# Tag → the language's own name (the switch shows these).
LANGUAGES = {"en": "English", "zh-CN": "简体中文"}
FALLBACK = "en"
LANGUAGE_COOKIE = "studio_lang"
ZERO_DECIMAL = {"jpy", "krw", "vnd", "clp", "pyg", "isk", "ugx"}


def supported(tag: str | None) -> str | None:
    """Our tag for a BCP 47 tag a browser sends ("zh", "zh-hans-cn", "zh_CN" → "zh-CN"; "en-GB" → "en")."""
    if not tag:
        return None
    tag = tag.strip().replace("_", "-").lower()
    for ours in LANGUAGES:
        if tag == ours.lower():
            return ours
    primary = tag.split("-")[0]
    if primary == "zh" and not any(part in ("tw", "hk", "mo", "hant") for part in tag.split("-")[1:]):
        return "zh-CN"
    return primary if primary in LANGUAGES else None


def negotiate(accept_language: str | None) -> str | None:
    """The best of our languages for an Accept-Language header (quality order), or None."""
    ranked = []
    for index, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        match = re.search(r"q=([0-9.]+)", params)
        if match:
            try:
                quality = float(match.group(1))
            except ValueError:
                quality = 0.0
        if tag and tag != "*" and quality > 0:
            ranked.append((-quality, index, tag))
    for _, _, tag in sorted(ranked):
        ours = supported(tag)
        if ours:
            return ours
    return None


def choose(*, cookie: str | None, accept_language: str | None, account: str | None = None,
           default: str = FALLBACK) -> str:
    """The language of a request: the switch's cookie, else the signed-in account's choice, else the
    browser's Accept-Language, else the instance's DEFAULT_LANGUAGE."""
    return supported(cookie) or supported(account) or negotiate(accept_language) or supported(default) or FALLBACK


@cache
def _table(name: str) -> dict:
    path = I18N_DIR / name
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def messages(language: str) -> dict[str, str]:
    """The language's table of UI and page strings (keys starting with "_" are notes)."""
    return {k: v for k, v in _table(f"{language}.json").items() if not k.startswith("_")}


def t(language: str | None, key: str, /, **params) -> str:
    """The string `key` in `language` (English when that language lacks it), placeholders filled."""
    text = messages(supported(language) or FALLBACK).get(key)
    if text is None:
        text = messages(FALLBACK)[key]
    return text.format(**params) if params else text


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def catalog_text(language: str | None, section: str, key: str, field: str | None, default: str) -> str:
    """A translated catalog or price-list word: `catalog_text("zh-CN", "styles", "photographic", "name", …)`.
    Sections: styles, aspect_ratios, resolutions (catalog.<lang>.json); packs, plans (pricing.<lang>.json)."""
    language = supported(language) or FALLBACK
    file = "pricing" if section in ("packs", "plans") else "catalog"
    entry = _table(f"{file}.{language}.json").get(section, {}).get(key)
    if isinstance(entry, dict):
        entry = entry.get(field or "", None)
    return entry if isinstance(entry, str) and entry else default


def _locale(language: str | None) -> Locale:
    return Locale.parse((supported(language) or FALLBACK).replace("-", "_"))


def money(language: str | None, amount: Decimal | int | float, currency: str, places: int | None = None) -> str:
    """`amount` (in major units, e.g. Decimal("4.99")) in `currency` as the language writes it; with
    `places`, to that many decimals (a credit's price: "US$0.050")."""
    if places is None:
        return format_currency(Decimal(str(amount)), currency.upper(), locale=_locale(language))
    pattern = "¤#,##0" + ("." + "0" * places if places else "")
    return format_currency(Decimal(str(amount)), currency.upper(), format=pattern, locale=_locale(language),
                           currency_digits=False)


def money_units(language: str | None, unit_amount: int, currency: str) -> str:
    """An amount in the currency's smallest unit (Stripe's), e.g. 499 usd → "$4.99", "US$4.99"."""
    major = Decimal(unit_amount) if currency.lower() in ZERO_DECIMAL else Decimal(unit_amount) / 100
    return money(language, major, currency)


def number(language: str | None, value: int | float | Decimal) -> str:
    return format_decimal(value, locale=_locale(language))


def date(language: str | None, when: datetime, form: str = "medium") -> str:
    return format_date(when, format=form, locale=_locale(language))


def day(language: str | None, when: datetime) -> str:
    """A day as the language writes it (its "format.date" pattern): "2026-11-28", "2026年11月28日"."""
    return format_date(when, format=t(language, "format.date"), locale=_locale(language))


def moment(language: str | None, when: datetime) -> str:
    """A day and time (UTC) as the language writes it ("format.datetime"): "2026-11-28 11:20"."""
    return format_datetime(when, format=t(language, "format.datetime"), tzinfo=UTC, locale=_locale(language))
