"""The mail templates of assets/email/ (services.mailer.compose): plain text, nothing escaped."""

from __future__ import annotations

import jinja2
import pytest

from services.mailer import compose


def test_the_reset_mail_prints_its_link_as_it_is():
    link = "https://studio.example.com/reset?token=a-b_c&x=<1>"
    message = compose("reset_password.txt", reset_link=link)
    assert message.subject == "Reset your password"
    assert link in message.body.splitlines(), "a plain-text mail escapes nothing"
    assert "Subject" not in message.body and not message.body.endswith("\n")


def test_a_mail_without_its_link_is_refused_not_sent_empty():
    with pytest.raises(jinja2.UndefinedError):
        compose("reset_password.txt")
