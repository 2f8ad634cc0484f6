"""What a user can ask for: styles, aspect ratios, resolutions and their prices.

All of it is data in assets/ (`styles.json`, `catalog.json`); adding a style or changing a price
is an edit there, checked once at start-up by `Catalog.load`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    ValidationError,
    field_validator,
)
from pydantic import dataclasses as pydantic_dataclasses
from typing_extensions import TypedDict

from services.errors import ValidationFailed

ROOT = Path(__file__).resolve().parent.parent
RATIO_RE = re.compile(r"^([1-9][0-9]?):([1-9][0-9]?)$")
_STRICT = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CatalogError(ValueError):
    """An assets file is not valid; the message names the file and the field."""


def _text(max_len: int):
    return Annotated[str, StringConstraints(strict=True, min_length=1, max_length=max_len)]


_Key, _Ratio, _Name, _Description, _Template = _text(8), _text(16), _text(64), _text(200), _text(2000)
_HexColour = Annotated[str, StringConstraints(pattern=r"^#[0-9a-fA-F]{6}$")]


class Preview(TypedDict, total=False):
    """How the offline preview engine draws a style (services/engines/offline_art.py)."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    palette: Annotated[list[_HexColour], Field(min_length=3, max_length=6)]
    texture: str
    composition: str


@pydantic_dataclasses.dataclass(frozen=True, config=_STRICT)
class Style:
    name: _Name
    description: _Description
    template: _Template
    preview: Preview = field(default_factory=dict, compare=False)

    @field_validator("template")
    @classmethod
    def _has_placeholder(cls, template: str) -> str:
        if "{prompt}" not in template:
            raise ValueError("must contain {prompt}")
        return template

    def apply(self, prompt: str) -> str:
        """The prompt as sent to the engine. `replace`, not `format`: user braces stay literal."""
        return self.template.replace("{prompt}", prompt)

    @property
    def label(self) -> str:
        return self.name[:1].upper() + self.name[1:]


@pydantic_dataclasses.dataclass(frozen=True, config=_STRICT)
class AspectRatio:
    ratio: _Ratio  # "16:9"
    label: _Name | None = Field(default=None, validate_default=True)  # contains the ratio text

    @field_validator("ratio")
    @classmethod
    def _ratio(cls, ratio: str) -> str:
        match = RATIO_RE.match(ratio)
        if not match:
            raise ValueError("must look like 16:9")
        w, h = int(match[1]), int(match[2])
        if max(w, h) / min(w, h) > 3:
            raise ValueError(f"{ratio} is beyond 3:1, which no engine can deliver")
        return ratio

    @field_validator("label")
    @classmethod
    def _label(cls, label: str | None, info) -> str:
        ratio = info.data.get("ratio", "")
        return _label_containing(label, ratio, f"the ratio text {ratio}")

    @property
    def width(self) -> int:  # 16
        return int(self.ratio.split(":")[0])

    @property
    def height(self) -> int:  # 9
        return int(self.ratio.split(":")[1])


@pydantic_dataclasses.dataclass(frozen=True, config=_STRICT)
class Resolution:
    key: _Key  # "1K"
    long_edge: StrictInt = Field(ge=256, le=3840)
    price: StrictInt = Field(gt=0, le=1_000_000)  # credits
    label: _Name | None = Field(default=None, validate_default=True)  # contains the key
    requires: Literal["paid", "purchase"] | None = None  # a live plan, or a plan or any pack

    @field_validator("label")
    @classmethod
    def _label(cls, label: str | None, info) -> str:
        key = info.data.get("key", "")
        return _label_containing(label, key, key)


def _label_containing(label: str | None, text: str, what: str) -> str:
    """A choice's label: `text` itself when none is given, else it must contain `text`."""
    if label is None:
        return text
    if text not in label:
        raise ValueError(f"must contain {what}")
    return label


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    comment: str | None = Field(default=None, alias="_comment")


class StylesFile(_File):
    """assets/styles.json"""

    styles: list[Style] = Field(min_length=1)

    @field_validator("styles")
    @classmethod
    def _unique(cls, styles: list[Style]) -> list[Style]:
        _refuse_duplicates("style", [s.name.lower() for s in styles])
        return styles


class Defaults(BaseModel):
    model_config = _STRICT
    style: str | None = None
    aspect_ratio: str | None = None
    resolution: str | None = None


class CatalogFile(_File):
    """assets/catalog.json"""

    aspect_ratios: list[AspectRatio] = Field(min_length=1)
    resolutions: list[Resolution] = Field(min_length=1)
    defaults: Defaults = Field(default_factory=Defaults)
    # Credits per reference image, on top of the resolution's price (issue #11).
    reference_surcharge: StrictInt = Field(default=0, ge=0, le=1_000_000)

    @field_validator("aspect_ratios")
    @classmethod
    def _unique_ratios(cls, ratios: list[AspectRatio]) -> list[AspectRatio]:
        _refuse_duplicates("aspect ratio", [r.ratio for r in ratios])
        return ratios

    @field_validator("resolutions")
    @classmethod
    def _unique_resolutions(cls, resolutions: list[Resolution]) -> list[Resolution]:
        _refuse_duplicates("resolution", [r.key.lower() for r in resolutions])
        return resolutions


def _refuse_duplicates(what: str, names: list[str]) -> None:
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate {what}: {', '.join(dupes)}")


@dataclass(frozen=True)
class Catalog:
    styles: tuple[Style, ...]
    aspect_ratios: tuple[AspectRatio, ...]
    resolutions: tuple[Resolution, ...]
    default_style: str
    default_aspect_ratio: str
    default_resolution: str
    reference_surcharge: int = 0  # credits per reference image, on top of the resolution's price

    @classmethod
    def load(cls, assets_dir: str | Path) -> Catalog:
        """Read and check assets/styles.json and assets/catalog.json."""
        styles_path, catalog_path = Path(assets_dir) / "styles.json", Path(assets_dir) / "catalog.json"
        return cls.from_dicts(read_json(styles_path, CatalogError), read_json(catalog_path, CatalogError),
                              sources=(source_name(styles_path), source_name(catalog_path)))

    @classmethod
    def from_dicts(cls, styles_doc: Any, catalog_doc: Any, *,
                   sources: tuple[str, str] = ("styles.json", "catalog.json")) -> Catalog:
        styles = validate(StylesFile, styles_doc, sources[0], CatalogError).styles
        doc = validate(CatalogFile, catalog_doc, sources[1], CatalogError)
        catalog = cls(
            styles=tuple(styles), aspect_ratios=tuple(doc.aspect_ratios), resolutions=tuple(doc.resolutions),
            default_style=doc.defaults.style or styles[0].name,
            default_aspect_ratio=doc.defaults.aspect_ratio or doc.aspect_ratios[0].ratio,
            default_resolution=doc.defaults.resolution or doc.resolutions[0].key,
            reference_surcharge=doc.reference_surcharge,
        )
        canonical = {}  # " Photographic" in the file → "photographic", as the choices spell it
        for name, lookup, spelling in (("style", catalog.style, "name"), ("aspect_ratio", catalog.aspect_ratio, "ratio"),
                                       ("resolution", catalog.resolution, "key")):
            try:
                canonical[f"default_{name}"] = getattr(lookup(getattr(catalog, f"default_{name}")), spelling)
            except ValidationFailed as err:
                raise CatalogError(f"{sources[1]}: defaults.{name}: {err.message}") from None
        return replace(catalog, **canonical)

    # Lookups: each raises ValidationFailed with a message fit for the user ------------------

    def style(self, name: str) -> Style:
        wanted = name.strip().lower() if isinstance(name, str) else None
        for style in self.styles:
            if style.name.lower() == wanted:
                return style
        raise ValidationFailed(f"Unknown style {_show(name)}. Choose one of: {', '.join(self.style_names)}.",
                               key="error.unknown_style", name=_show(name), choices=", ".join(self.style_names))

    def aspect_ratio(self, ratio: str) -> AspectRatio:
        wanted = ratio.strip() if isinstance(ratio, str) else None
        for item in self.aspect_ratios:
            if item.ratio == wanted:
                return item
        raise ValidationFailed(
            f"Unknown aspect ratio {_show(ratio)}. Choose one of: {', '.join(r.ratio for r in self.aspect_ratios)}.",
            key="error.unknown_aspect_ratio", name=_show(ratio), choices=", ".join(r.ratio for r in self.aspect_ratios),
        )

    def resolution(self, key: str) -> Resolution:
        wanted = key.strip().upper() if isinstance(key, str) else None
        for item in self.resolutions:
            if item.key.upper() == wanted:
                return item
        raise ValidationFailed(
            f"Unknown resolution {_show(key)}. Choose one of: {', '.join(r.key for r in self.resolutions)}.",
            key="error.unknown_resolution", name=_show(key), choices=", ".join(r.key for r in self.resolutions),
        )

    @property
    def style_names(self) -> list[str]:
        return [s.name for s in self.styles]

    def to_json(self) -> dict:
        """The public shape printed by `python app.py catalog` (billing adds "products")."""
        return {
            "resolutions": {r.key: r.price for r in self.resolutions},
            "aspect_ratios": [r.ratio for r in self.aspect_ratios],
            "styles": self.style_names,
            "reference_surcharge": self.reference_surcharge,
        }


def _show(value) -> str:
    text = str(value) if value is not None else "(none)"
    return f"“{text[:40]}”"


def source_name(path: Path) -> str:
    """The path as a person finds it: relative to the project when inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def read_json(path: Path, error: type[ValueError]) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{source_name(path)} is missing") from None
    except (OSError, UnicodeDecodeError) as err:
        raise error(f"{source_name(path)} cannot be read: {err}") from None
    except json.JSONDecodeError as err:
        raise error(f"{source_name(path)} is not valid JSON: {err}") from None


M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], data: Any, source: str, error: type[ValueError]) -> M:
    """`model` checked against `data`; on bad data, `error` naming the file and each bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [_problem(e) for e in exc.errors()]
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise error("; ".join(f"{source}: {p}" for p in problems[:3]) + more) from None


def _problem(error: dict) -> str:
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]).lstrip(".")
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        message = "unknown field"
    return f"{where}: {message}" if where else message
