"""Pages and mail from templates (issue 9), through the served app.

Every value a page prints is escaped by the template engine's autoescape: markupsafe writes a
quote as `&#34;`, which `html.escape` never does, so these pages prove which one did the work.
Rendered HTML handed to a template (the terms) is printed once, not escaped again, and the reset
mail is the plain-text template with nothing escaped.
"""

from __future__ import annotations

import re
import uuid

import pytest

from services.mailer import compose
from tests.e2e.conftest import csrf_of, sign_up

HOSTILE_EMAIL = 'x"><script>alert(1)</script>@example.com'
HOSTILE_NEXT = '/"><script>alert(2)</script>'


@pytest.mark.parametrize(("form", "status"), [("/login", 401), ("/signup", 400)])
def test_a_refused_form_shows_the_typed_email_and_next_escaped_by_the_template(served_app, form, status):
    client = served_app.client(follow_redirects=False)
    csrf = csrf_of(client.get(form))
    r = client.post(form, params={"next": HOSTILE_NEXT},
                    data={"email": HOSTILE_EMAIL, "password": "short", "csrf": csrf})

    assert r.status_code == status
    assert "<script>" not in r.text
    assert 'value="x&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;@example.com"' in r.text
    quoted_next = "/%22%3E%3Cscript%3Ealert%282%29%3C/script%3E"
    assert f'action="{form}?next={quoted_next}"' in r.text
    other = "/signup" if form == "/login" else "/login"
    assert f'href="{other}?next={quoted_next}"' in r.text
    assert csrf_of(r) != csrf, "the page carries a fresh form token"
    assert r.headers["cache-control"] == "no-store" and r.headers["x-frame-options"] == "DENY"


def test_the_reset_page_carries_its_token_escaped_by_the_template(served_app):
    r = served_app.client().get("/reset", params={"token": '"><script>alert(3)</script>'})
    assert r.status_code == 200 and "<script>" not in r.text
    assert '<input type="hidden" name="token" value="&#34;&gt;&lt;script&gt;alert(3)&lt;/script&gt;">' in r.text


def test_the_terms_are_rendered_html_printed_once(served_app):
    r = served_app.client().get("/terms")
    assert r.status_code == 200
    assert re.search(r'<div class="terms">\s*<h1>', r.text), "the markdown's HTML is in the page as HTML"
    assert "&lt;" not in r.text and "&amp;lt;" not in r.text, "nothing was escaped twice"


def test_the_reset_mail_is_the_plain_text_template(served_app, caplog):
    email = f"t-{uuid.uuid4().hex[:10]}@example.com"
    sign_up(served_app, email, "correct horse battery")
    caplog.set_level("WARNING", logger="studio.mail")
    client = served_app.client()
    r = client.post("/forgot", data={"email": email, "csrf": csrf_of(client.get("/forgot"))})
    assert r.status_code == 200
    served_app.services.accounts.outbox.join()

    [record] = [r for r in caplog.records if r.name == "studio.mail" and r.args and r.args[0] == email]
    to, subject, body = record.args
    link = re.search(r"^(http\S+/reset\?token=[\w-]+)$", body, re.MULTILINE).group(1)
    assert link.startswith(f"{served_app.settings.base_url}/reset?token=")
    assert (subject, body) == ("Reset your password", compose("reset_password.txt", reset_link=link).body)
    assert body.splitlines() == [
        "Someone asked to reset the password of this account.", "",
        "Open this link within an hour to choose a new password:", link, "",
        "If it was not you, ignore this email.",
    ]
