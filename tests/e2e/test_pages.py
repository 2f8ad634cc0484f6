"""The public pages over HTTP: the landing page at `/` (from the catalog, pricing.json, settings and
assets/showcase/), the showcase route, the API page, the terms, and the studio's look (no web font)."""

from __future__ import annotations

import html
import json
import re
import uuid
from pathlib import Path

import httpx
import pytest

from services.catalog import Catalog
from services.pricing import Pricing
from tests.e2e.conftest import sign_up
from ui.web import SHOWCASE, showcase_images

ASSETS = Path(__file__).resolve().parents[2] / "assets"
HTML = {"accept": "text/html,application/xhtml+xml"}


def landing(app) -> httpx.Response:
    page = httpx.get(f"{app.url}/", headers=HTML, follow_redirects=False)
    assert page.status_code == 200, page.text
    assert page.headers["cache-control"] == "no-store"
    return page


def test_the_landing_page_states_the_offer_from_the_data(served_app):
    page = landing(served_app).text
    services = served_app.services
    assert "Create images from a sentence" in page
    assert 'href="/signup"' in page and 'href="/login"' in page
    assert f"{services.settings.trial_credits} free credits" in page
    rows = re.findall(r"<tr><td>([^<]+)</td><td>(\d+)</td><td>([^<]+)</td></tr>", page)
    assert [(label, int(credits)) for label, credits, _ in rows] == [(r.label, r.price) for r in
                                                                   services.catalog.resolutions]
    for pack in services.pricing.packs:
        assert html.escape(pack.name) in page and pack.display_price in page
    for plan in services.pricing.plans:
        assert f"{plan.monthly.display_price}<span>/month" in page and plan.annual.display_price in page
    # The strip shows the files of assets/showcase/, each served by the public route.
    shown = re.findall(r'<img src="(/showcase/[^"]+)" alt="([^"]*)"', page)
    assert shown and [url for url, _ in shown] == [i["url"] for i in showcase_images()]
    for url, _ in shown:
        image = httpx.get(served_app.url + url)
        assert image.status_code == 200 and image.headers["content-type"] == "image/webp"
        assert image.content[:4] == b"RIFF" and image.content[8:12] == b"WEBP"


def test_the_landing_page_follows_a_changed_catalog_and_price_list(serve_app):
    app = serve_app(TRIAL_CREDITS=7)
    styles = json.loads((ASSETS / "styles.json").read_text())
    catalog = json.loads((ASSETS / "catalog.json").read_text())
    catalog["resolutions"] = [{"key": "1K", "long_edge": 1024, "price": 3},
                              {"key": "2K", "label": "2K sharp", "long_edge": 2048, "price": 11}]
    prices = json.loads((ASSETS / "pricing.json").read_text())
    prices["plans"] = [{"key": "solo", "name": "Solo", "credits_per_month": 90, "monthly_price": "3.33",
                        "annual_price": "30.00"}]
    prices["packs"] = [{"key": "small", "name": "Small bag", "credits": 100, "price": "2.00"},
                       {"key": "big", "name": "Big bag", "credits": 1000, "price": "10.00"}]
    app.services.catalog = Catalog.from_dicts(styles, catalog)
    app.services.pricing = Pricing.from_dict(prices)

    page = landing(app).text
    assert "7 free credits" in page and "40 free credits" not in page
    # The cheapest credit is the big bag's $0.01: a 1K image from $0.03, a 2K one from $0.11.
    assert re.findall(r"<tr><td>([^<]+)</td><td>(\d+)</td><td>([^<]+)</td></tr>", page) == [
        ("1K", "3", "$0.03"), ("2K sharp", "11", "$0.11")]
    assert "4K" not in page and "$4.99" not in page and "Starter pack" not in page
    assert "Small bag" in page and "$2.00" in page and "$3.33<span>/month" in page and "$30.00" in page
    best = re.search(r'<div class="offer best"><span class="badge">Best value</span>\s*<h3>([^<]+)</h3>', page)
    assert best and best.group(1) == "Big bag"

    prices["packs"][0]["price"] = "0.50"  # now the small bag's credit is the cheapest
    app.services.pricing = Pricing.from_dict(prices)
    best = re.search(r'<div class="offer best"><span class="badge">Best value</span>\s*<h3>([^<]+)</h3>',
                     landing(app).text)
    assert best and best.group(1) == "Small bag"


def test_a_signed_in_browser_and_an_api_caller_at_root_get_the_studio(served_app):
    email = f"root-{uuid.uuid4().hex[:8]}@example.com"
    browser = sign_up(served_app, email)
    studio = browser.get("/", headers=HTML)
    assert studio.status_code == 200 and "gradio" in studio.text.lower()
    assert "Create images from a sentence" not in studio.text

    anonymous_api = httpx.get(f"{served_app.url}/", headers={**HTML, "Authorization": "Bearer sk_studio_nope"})
    assert anonymous_api.status_code == 401, "an Authorization header is left to the auth dependency"
    user = served_app.services.accounts.get_user_by_email(email)
    _, key = served_app.services.accounts.create_api_key(user_id=user.id, name="root")
    keyed = httpx.get(f"{served_app.url}/", headers={**HTML, "Authorization": f"Bearer {key}"})
    assert keyed.status_code == 200 and "Create images from a sentence" not in keyed.text


def test_the_showcase_route_serves_only_showcase_images(served_app):
    names = sorted(p.name for p in SHOWCASE.iterdir() if p.suffix == ".webp")
    assert names, "the shipped examples are in assets/showcase/"
    r = httpx.get(f"{served_app.url}/showcase/{names[0]}")
    assert r.status_code == 200 and r.content == (SHOWCASE / names[0]).read_bytes()
    assert r.headers["content-type"] == "image/webp" and r.headers["x-content-type-options"] == "nosniff"
    for bad in ("nope.webp", "README.md", "..%2Fterms.md", "%2E%2E%2Fcatalog.json", ".hidden.webp"):
        assert httpx.get(f"{served_app.url}/showcase/{bad}").status_code == 404, bad


def test_the_api_page_shows_the_header_the_real_values_and_working_links(served_app):
    r = httpx.get(f"{served_app.url}/api", headers=HTML)
    assert r.status_code == 200
    page = html.unescape(r.text)
    catalog = served_app.services.catalog
    assert "Authorization: Bearer YOUR_API_KEY" in page
    assert f'Client("{served_app.settings.base_url}", headers={{"Authorization": "Bearer YOUR_API_KEY"}})' in page
    assert 'api_name="/generate"' in page and 'api_name="/balance"' in page
    assert "/gradio_api/call/generate" in page and "/gradio_api/call/balance" in page
    for value in [*catalog.style_names, *(a.ratio for a in catalog.aspect_ratios), *(x.key for x in catalog.resolutions)]:
        assert f"<code>{value}</code>" in page, value
    assert f'"{catalog.default_style}",  # style' in page and "Hello!!" not in page
    assert 'api_name="/edit"' in page and 'api_name="/compare"' in page, "the other doors are shown too"
    assert f"{served_app.settings.base_url}/v1" in page and f"{served_app.settings.base_url}/mcp" in page
    assert f"(/edit):</strong> {catalog.reference_surcharge}</p>" in page
    links = set(re.findall(r'href="([^"]+)"', r.text)) - {f"mailto:{served_app.settings.support_contact}"}
    assert {"/", "/pricing", "/terms", "/api"} <= links
    for link in links:
        answer = httpx.get(served_app.url + html.unescape(link), headers=HTML, follow_redirects=True)
        assert answer.status_code == 200, link


def test_the_api_page_examples_work_with_a_key(served_app):
    """The curl example's two requests, made as written, with a real key."""
    email = f"api-{uuid.uuid4().hex[:8]}@example.com"
    sign_up(served_app, email)
    user = served_app.services.accounts.get_user_by_email(email)
    _, key = served_app.services.accounts.create_api_key(user_id=user.id, name="docs")
    auth = {"Authorization": f"Bearer {key}"}
    catalog = served_app.services.catalog

    def call(name: str, data: list) -> list:
        started = httpx.post(f"{served_app.url}/gradio_api/call/{name}", json={"data": data}, headers=auth)
        assert started.status_code == 200, started.text
        with httpx.stream("GET", f"{served_app.url}/gradio_api/call/{name}/{started.json()['event_id']}",
                          headers=auth, timeout=120) as events:
            lines = [line for line in events.iter_lines() if line.startswith("data:")]
        return json.loads(lines[-1][5:])

    assert call("balance", []) == [served_app.settings.trial_credits]
    image, message, balance = call("generate", ["a lighthouse at dusk", catalog.default_style,
                                                catalog.default_aspect_ratio, catalog.default_resolution])
    price = catalog.resolution(catalog.default_resolution).price
    assert balance == served_app.settings.trial_credits - price and "/images/" in image["url"]
    assert httpx.get(image["url"], headers=auth).status_code == 200


def test_gradio_s_own_api_page_and_footer_are_off(served_app):
    browser = sign_up(served_app, f"cfg-{uuid.uuid4().hex[:8]}@example.com")
    config = browser.get("/config").json()
    assert config["footer_links"] == [], "no 'Use via API' page with placeholder values, no MCP tab"
    assert not config.get("mcp_server")
    # Our footer instead, the same as the server pages', and each of its links answers.
    footer = next(c["props"]["value"] for c in config["components"]
                  if "site-footer" in str(c.get("props", {}).get("value", "")))
    assert footer == httpx.get(f"{served_app.url}/terms").text.split("</main>\n", 1)[1].split("\n</body>")[0]
    links = set(re.findall(r'href="(/[^"]*)"', footer))
    assert links == {"/pricing", "/api", "/terms"}
    for link in links:
        assert browser.get(link).status_code == 200, link


def test_the_terms_leave_out_the_operator_note(served_app):
    source = (ASSETS / "terms.md").read_text()
    assert "For operators" in source, "the note is kept for operators, in the file"
    page = httpx.get(f"{served_app.url}/terms", headers=HTML).text
    assert "For operators" not in page and "starting point" not in page and "&lt;!--" not in page
    assert "Terms of use" in page and "Credits" in page


@pytest.mark.parametrize("path", ["/", "/login", "/api"])
def test_no_page_asks_for_a_web_font(served_app, path):
    browser = sign_up(served_app, f"font-{uuid.uuid4().hex[:8]}@example.com") if path == "/" else httpx.Client(
        base_url=served_app.url)
    page = browser.get(path, headers=HTML).text
    theme = browser.get("/theme.css").text if path == "/" else ""
    for text in (page, theme):
        assert "googleapis" not in text and "gstatic" not in text
    if path == "/":
        assert "@font-face" not in theme and "Montserrat" not in theme
        assert "ui-sans-serif, system-ui" in theme
    else:
        assert "ui-sans-serif, system-ui" in page


def test_the_public_price_list_states_per_credit_prices_the_best_value_and_the_saving(served_app):
    page = httpx.get(f"{served_app.url}/pricing", headers=HTML).text
    assert "Studio pack</strong> <span class=\"badge\">Best value</span> for $49.99 ($0.033 per credit, $0.33 per 1K image)" \
        not in page, "the Pro plan's credit ($0.025) is cheaper than any pack's"
    assert "<strong>Pro</strong> <span class=\"badge\">Best value</span>" in page
    assert "Starter pack</strong> for $4.99 ($0.050 per credit, $0.50 per 1K image)" in page
    assert "save 65%: $77.92 a year" in page and "save 65%: $194.92 a year" in page
