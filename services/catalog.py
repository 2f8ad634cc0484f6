"""What a user can ask for: styles, aspect ratios, resolutions and their prices.

All of it is data in assets/ (`styles.json`, `catalog.json`); adding a style or changing a price
is an edit there, checked once at start-up by `Catalog.load`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from services.errors import ValidationFailed

RATIO_RE = re.compile(r"^([1-9][0-9]?):([1-9][0-9]?)$")
HEX_RE = re.compile(r"^#[0-9a-fA-F]{6}$")
REQUIREMENTS = ("paid", "purchase")  # checked by Billing.can_use_resolution


class CatalogError(ValueError):
    """An assets file is not valid; the message says which and where."""


@dataclass(frozen=True)
class Style:
    name: str
    description: str
    template: str
    preview: dict = field(default_factory=dict, compare=False)

    def apply(self, prompt: str) -> str:
        """The prompt as sent to the engine. `replace`, not `format`: user braces stay literal."""
        return self.template.replace("{prompt}", prompt)

    @property
    def label(self) -> str:
        return self.name[:1].upper() + self.name[1:]


@dataclass(frozen=True)
class AspectRatio:
    ratio: str  # "16:9"
    label: str  # contains the ratio text
    width: int  # 16
    height: int  # 9


@dataclass(frozen=True)
class Resolution:
    key: str  # "1K"
    label: str
    long_edge: int
    price: int  # credits
    requires: str | None = None  # "paid" (a live plan) or "purchase" (a plan or any pack)


@dataclass(frozen=True)
class Catalog:
    styles: tuple[Style, ...]
    aspect_ratios: tuple[AspectRatio, ...]
    resolutions: tuple[Resolution, ...]
    default_style: str
    default_aspect_ratio: str
    default_resolution: str

    @classmethod
    def load(cls, assets_dir: str | Path) -> Catalog:
        """Read and check assets/styles.json and assets/catalog.json."""
        assets = Path(assets_dir)
        return cls.from_dicts(_read(assets / "styles.json"), _read(assets / "catalog.json"))

    @classmethod
    def from_dicts(cls, styles_doc: dict, catalog_doc: dict) -> Catalog:
        styles = tuple(_style(item, i) for i, item in enumerate(_list(styles_doc, "styles", "styles.json")))
        ratios = tuple(_ratio(item, i) for i, item in enumerate(_list(catalog_doc, "aspect_ratios", "catalog.json")))
        resolutions = tuple(_resolution(item, i) for i, item in
                            enumerate(_list(catalog_doc, "resolutions", "catalog.json")))
        for what, names in (("style", [s.name.lower() for s in styles]), ("aspect ratio", [r.ratio for r in ratios]),
                            ("resolution", [r.key.lower() for r in resolutions])):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise CatalogError(f"duplicate {what}: {', '.join(dupes)}")
        defaults = catalog_doc.get("defaults") or {}
        catalog = cls(
            styles=styles, aspect_ratios=ratios, resolutions=resolutions,
            default_style=defaults.get("style", styles[0].name),
            default_aspect_ratio=defaults.get("aspect_ratio", ratios[0].ratio),
            default_resolution=defaults.get("resolution", resolutions[0].key),
        )
        try:
            catalog.style(catalog.default_style)
            catalog.aspect_ratio(catalog.default_aspect_ratio)
            catalog.resolution(catalog.default_resolution)
        except ValidationFailed as err:
            raise CatalogError(f"catalog.json defaults: {err.message}") from None
        return catalog

    # Lookups: each raises ValidationFailed with a message fit for the user ------------------

    def style(self, name: str) -> Style:
        wanted = name.strip().lower() if isinstance(name, str) else None
        for style in self.styles:
            if style.name.lower() == wanted:
                return style
        raise ValidationFailed(f"Unknown style {_show(name)}. Choose one of: {', '.join(self.style_names)}.")

    def aspect_ratio(self, ratio: str) -> AspectRatio:
        wanted = ratio.strip() if isinstance(ratio, str) else None
        for item in self.aspect_ratios:
            if item.ratio == wanted:
                return item
        raise ValidationFailed(
            f"Unknown aspect ratio {_show(ratio)}. Choose one of: {', '.join(r.ratio for r in self.aspect_ratios)}."
        )

    def resolution(self, key: str) -> Resolution:
        wanted = key.strip().upper() if isinstance(key, str) else None
        for item in self.resolutions:
            if item.key.upper() == wanted:
                return item
        raise ValidationFailed(
            f"Unknown resolution {_show(key)}. Choose one of: {', '.join(r.key for r in self.resolutions)}."
        )

    def price(self, resolution: str) -> int:
        return self.resolution(resolution).price

    @property
    def style_names(self) -> list[str]:
        return [s.name for s in self.styles]

    def to_json(self) -> dict:
        """The public shape printed by `python app.py catalog` (billing adds "products")."""
        return {
            "resolutions": {r.key: r.price for r in self.resolutions},
            "aspect_ratios": [r.ratio for r in self.aspect_ratios],
            "styles": self.style_names,
        }


def _show(value) -> str:
    text = str(value) if value is not None else "(none)"
    return f"“{text[:40]}”"


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogError(f"{path} is missing") from None
    except json.JSONDecodeError as err:
        raise CatalogError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise CatalogError(f"{path} must hold a JSON object")
    return data


def _list(doc: dict, key: str, source: str) -> list:
    items = doc.get(key)
    if not isinstance(items, list) or not items:
        raise CatalogError(f"{source}: `{key}` must be a non-empty list")
    return items


def _text(item: dict, key: str, where: str, *, max_len: int) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        raise CatalogError(f"{where}: `{key}` must be a non-empty string of at most {max_len} characters")
    return value.strip()


def _style(item, i: int) -> Style:
    where = f"styles.json styles[{i}]"
    if not isinstance(item, dict):
        raise CatalogError(f"{where} must be an object")
    name = _text(item, "name", where, max_len=64)
    template = _text(item, "template", f"{where} ({name})", max_len=2000)
    if "{prompt}" not in template:
        raise CatalogError(f"{where} ({name}): `template` must contain {{prompt}}")
    preview = item.get("preview") or {}
    palette = preview.get("palette", [])
    if not isinstance(palette, list) or not all(isinstance(c, str) and HEX_RE.match(c) for c in palette):
        raise CatalogError(f"{where} ({name}): `preview.palette` must be a list of #rrggbb colours")
    return Style(name=name, description=_text(item, "description", where, max_len=200),
                 template=template, preview=dict(preview))


def _ratio(item, i: int) -> AspectRatio:
    where = f"catalog.json aspect_ratios[{i}]"
    if not isinstance(item, dict):
        raise CatalogError(f"{where} must be an object")
    ratio = _text(item, "ratio", where, max_len=16)
    match = RATIO_RE.match(ratio)
    if not match:
        raise CatalogError(f"{where}: `ratio` must look like 16:9")
    w, h = int(match[1]), int(match[2])
    if max(w, h) / min(w, h) > 3:
        raise CatalogError(f"{where}: {ratio} is beyond 3:1, which no engine can deliver")
    label = item.get("label") or ratio
    if ratio not in label:
        raise CatalogError(f"{where}: `label` must contain the ratio text {ratio}")
    return AspectRatio(ratio=ratio, label=label, width=w, height=h)


def _resolution(item, i: int) -> Resolution:
    where = f"catalog.json resolutions[{i}]"
    if not isinstance(item, dict):
        raise CatalogError(f"{where} must be an object")
    key = _text(item, "key", where, max_len=8)
    label = item.get("label") or key
    if key not in label:
        raise CatalogError(f"{where}: `label` must contain {key}")
    long_edge, price = item.get("long_edge"), item.get("price")
    if not isinstance(long_edge, int) or isinstance(long_edge, bool) or not 256 <= long_edge <= 3840:
        raise CatalogError(f"{where}: `long_edge` must be an integer from 256 to 3840")
    if not isinstance(price, int) or isinstance(price, bool) or not 1 <= price <= 1_000_000:
        raise CatalogError(f"{where}: `price` must be a positive whole number of credits")
    requires = item.get("requires")
    if requires is not None and requires not in REQUIREMENTS:
        raise CatalogError(f"{where}: `requires` must be one of {', '.join(REQUIREMENTS)} or absent")
    return Resolution(key=key, label=label, long_edge=long_edge, price=price, requires=requires)
