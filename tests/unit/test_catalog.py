import copy
import json

import pytest

from services.catalog import Catalog, CatalogError, source_name
from services.db import ROOT
from services.errors import ValidationFailed

ASSETS = ROOT / "assets"
STYLES = json.loads((ASSETS / "styles.json").read_text())
CATALOG = json.loads((ASSETS / "catalog.json").read_text())


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load(ASSETS)


def test_shipped_catalog_has_what_the_product_promises(catalog):
    names = catalog.style_names
    assert len(names) >= 16
    assert {"photographic", "cinematic", "anime", "none"} <= set(names)
    assert all("{prompt}" in s.template and s.description for s in catalog.styles)
    assert [r.ratio for r in catalog.aspect_ratios] == ["1:1", "4:3", "3:4", "3:2", "2:3", "16:9", "9:16", "21:9"]
    assert all(r.ratio in r.label for r in catalog.aspect_ratios)
    assert {r.key: r.price for r in catalog.resolutions} == {"1K": 10, "2K": 20, "4K": 40}
    assert all(r.key in r.label for r in catalog.resolutions)
    assert [r.long_edge for r in catalog.resolutions] == [1024, 2048, 3840]
    assert all(r.requires is None for r in catalog.resolutions), "the shipped default opens every resolution"


def test_to_json_is_the_public_shape(catalog):
    out = catalog.to_json()
    assert out["resolutions"] == {"1K": 10, "2K": 20, "4K": 40}
    assert out["aspect_ratios"][0] == "1:1" and "21:9" in out["aspect_ratios"]
    assert out["styles"] == catalog.style_names
    json.dumps(out)


def test_style_template_keeps_user_braces_literal(catalog):
    style = catalog.style("photographic")
    sent = style.apply("a sign reading {hello} and {prompt}")
    assert "a sign reading {hello} and {prompt}" in sent
    assert catalog.style("none").apply("just this") == "just this"


def test_lookups_accept_case_and_spaces_and_refuse_unknown_values(catalog):
    assert catalog.style("  Cinematic ").name == "cinematic"
    assert catalog.resolution("2k").key == "2K"
    assert catalog.aspect_ratio("16:9").width == 16
    for bad in ("", "16/9", "5:4", None, 3):
        with pytest.raises(ValidationFailed, match="aspect ratio"):
            catalog.aspect_ratio(bad)
    with pytest.raises(ValidationFailed, match="Unknown style"):
        catalog.style("vaporwave-deluxe")
    with pytest.raises(ValidationFailed, match="Unknown resolution"):
        catalog.resolution("8K")


def _broken(mutate) -> tuple[dict, dict]:
    styles, cat = copy.deepcopy(STYLES), copy.deepcopy(CATALOG)
    mutate(styles, cat)
    return styles, cat


@pytest.mark.parametrize("mutate, message", [
    (lambda s, c: s["styles"][0].update(template="no placeholder"),
     "styles.json: styles[0].template: must contain {prompt}"),
    (lambda s, c: s["styles"].append(dict(s["styles"][1])), "styles.json: styles: duplicate style: photographic"),
    (lambda s, c: s["styles"][0]["preview"].update(palette=["red", "#000000", "#ffffff"]),
     "styles.json: styles[0].preview.palette[0]: String should match pattern"),
    (lambda s, c: s["styles"][2]["preview"].update(palette=["#000000"]),
     "styles.json: styles[2].preview.palette: List should have at least 3 items"),
    (lambda s, c: s["styles"][1].update(name=7), "styles.json: styles[1].name: Input should be a valid string"),
    (lambda s, c: s["styles"][1].update(name="  "), "styles.json: styles[1].name: String should have at least 1"),
    (lambda s, c: s["styles"][1].update(prompt="{prompt}"), "styles.json: styles[1].prompt: unknown field"),
    (lambda s, c: s.update(styles={}), "styles.json: styles: Input should be a valid list"),
    (lambda s, c: c["aspect_ratios"].append({"ratio": "4:1", "label": "4:1"}),
     "catalog.json: aspect_ratios[8].ratio: 4:1 is beyond 3:1"),
    (lambda s, c: c["aspect_ratios"].append({"ratio": "5-4", "label": "5-4"}),
     "catalog.json: aspect_ratios[8].ratio: must look like 16:9"),
    (lambda s, c: c["aspect_ratios"][0].update(label="Square"),
     "catalog.json: aspect_ratios[0].label: must contain the ratio text 1:1"),
    (lambda s, c: c["aspect_ratios"].append({"ratio": "1:1"}), "catalog.json: aspect_ratios: duplicate aspect ratio: 1:1"),
    (lambda s, c: c["resolutions"][0].update(price="10"),
     "catalog.json: resolutions[0].price: Input should be a valid integer"),
    (lambda s, c: c["resolutions"][2].update(price=0), "catalog.json: resolutions[2].price: Input should be greater than 0"),
    (lambda s, c: c["resolutions"][1].update(price=True),
     "catalog.json: resolutions[1].price: Input should be a valid integer"),
    (lambda s, c: c["resolutions"][2].update(long_edge=8192),
     "catalog.json: resolutions[2].long_edge: Input should be less than or equal to 3840"),
    (lambda s, c: c["resolutions"][2].update(requires="vip"),
     "catalog.json: resolutions[2].requires: Input should be 'paid' or 'purchase'"),
    (lambda s, c: c["resolutions"][0].pop("price"), "catalog.json: resolutions[0].price: Field required"),
    (lambda s, c: c.update(resolutions=[]), "catalog.json: resolutions: List should have at least 1 item"),
    (lambda s, c: c.update(defaults={"style": "nope"}), "catalog.json: defaults.style: Unknown style"),
    (lambda s, c: c.update(defaults={"resolution": "8K"}), "catalog.json: defaults.resolution: Unknown resolution"),
    (lambda s, c: c.update(prices={}), "catalog.json: prices: unknown field"),
])
def test_invalid_catalog_data_is_refused_naming_the_file_and_the_field(mutate, message):
    with pytest.raises(CatalogError) as refused:
        Catalog.from_dicts(*_broken(mutate))
    assert str(refused.value).startswith(message)


def test_every_problem_of_a_file_is_named_not_only_the_first():
    def mutate(s, c):
        c["resolutions"][0].update(price=0)
        c["resolutions"][1].update(long_edge=1)
    with pytest.raises(CatalogError) as refused:
        Catalog.from_dicts(*_broken(mutate))
    assert str(refused.value) == ("catalog.json: resolutions[0].price: Input should be greater than 0; "
                                  "catalog.json: resolutions[1].long_edge: Input should be greater than or equal to 256")


def test_a_bad_file_on_disk_is_named_by_its_path(tmp_path):
    styles, cat = _broken(lambda s, c: c["resolutions"][2].update(price=-5))
    (tmp_path / "styles.json").write_text(json.dumps(styles))
    (tmp_path / "catalog.json").write_text(json.dumps(cat))
    with pytest.raises(CatalogError) as refused:
        Catalog.load(tmp_path)
    assert str(refused.value) == f"{tmp_path / 'catalog.json'}: resolutions[2].price: Input should be greater than 0"


def test_shipped_files_are_named_as_a_person_finds_them_in_the_project(tmp_path):
    assert source_name(ASSETS / "catalog.json") == "assets/catalog.json"
    assert source_name(tmp_path / "catalog.json") == str(tmp_path / "catalog.json")


def test_defaults_are_spelled_as_the_choices_are():
    catalog = Catalog.from_dicts(*_broken(lambda s, c: c.update(defaults={"style": " Cinematic", "resolution": "2k"})))
    assert (catalog.default_style, catalog.default_resolution, catalog.default_aspect_ratio) == ("cinematic", "2K", "1:1")


def test_gating_is_data(tmp_path):
    styles, cat = _broken(lambda s, c: c["resolutions"][2].update(requires="paid"))
    (tmp_path / "styles.json").write_text(json.dumps(styles))
    (tmp_path / "catalog.json").write_text(json.dumps(cat))
    assert Catalog.load(tmp_path).resolution("4K").requires == "paid"


def test_missing_or_malformed_files_name_the_file(tmp_path):
    with pytest.raises(CatalogError, match="styles.json is missing"):
        Catalog.load(tmp_path)
    (tmp_path / "styles.json").write_text("{not json")
    with pytest.raises(CatalogError, match="not valid JSON"):
        Catalog.load(tmp_path)
