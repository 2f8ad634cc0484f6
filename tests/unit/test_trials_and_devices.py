"""Pure rules: the mailbox behind an email for counting trials, blocked domains, device labels."""

from __future__ import annotations

import pytest

from services.accounts.devices import device_label
from services.accounts.trials import email_claim_key, is_blocked_domain, subject_claim_key, trial_email


@pytest.mark.parametrize(("email", "mailbox"), [
    ("Jane.Doe@Gmail.com", "janedoe@gmail.com"),
    ("j.a.n.e.doe+studio@googlemail.com", "janedoe@gmail.com"),
    ("jane.doe+x@company.com", "jane.doe@company.com"),  # dots matter outside gmail
    ("JANE@EXAMPLE.ORG", "jane@example.org"),
])
def test_trial_email_finds_the_mailbox(email, mailbox):
    assert trial_email(email) == mailbox
    assert email_claim_key(email) == "email:" + mailbox


def test_subject_keys_are_per_issuer():
    assert subject_claim_key("https://a", "1") != subject_claim_key("https://b", "1")


def test_blocked_domains_cover_subdomains_only_of_listed_ones():
    blocked = frozenset({"mailinator.com"})
    assert is_blocked_domain("x@mailinator.com", blocked)
    assert is_blocked_domain("x@eu.mailinator.com", blocked)
    assert not is_blocked_domain("x@notmailinator.com", blocked)
    assert not is_blocked_domain("x@com", blocked)


@pytest.mark.parametrize(("agent", "label"), [
    ("Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0", "Firefox on Linux"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
     "Safari/537.36 Edg/131.0.0.0", "Edge on Windows"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 "
     "Safari/605.1.15", "Safari on macOS"),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile "
     "Safari/537.36", "Chrome on Android"),
    ("python-httpx/0.28.1", "API client"),
    ("", "Unknown device"),
    (None, "Unknown device"),
])
def test_device_labels_are_short_and_approximate(agent, label):
    assert device_label(agent) == label
