"""One free trial per person: the trial is granted once per normalised email and once per
provider subject, whatever sequence of sign-ups, deletions and links happens.

Each grant claims its keys in `trial_claims` (unique, no foreign key: a claim outlives its
account) in the same transaction as the ledger grant. If any key was claimed before, nothing is
granted; the keys not yet claimed are then recorded too, so they cannot start a trial later.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from models.user import TrialClaim

# Providers that deliver mail for "j.o.h.n@" to "john@" (and the domain aliases they answer to).
DOTS_IGNORED = frozenset({"gmail.com"})
DOMAIN_ALIASES = {"googlemail.com": "gmail.com"}
TRIAL_NOTE = "Free trial credits"


def trial_email(email: str) -> str:
    """The mailbox behind an address, for counting trials: lower-cased, a `+tag` dropped (nearly
    every provider delivers `name+tag@` to `name@`), dots dropped where the provider ignores them,
    and domain aliases folded (googlemail.com is gmail.com)."""
    local, _, domain = (email or "").strip().lower().rpartition("@")
    domain = DOMAIN_ALIASES.get(domain, domain)
    local = local.split("+", 1)[0]
    if domain in DOTS_IGNORED:
        local = local.replace(".", "")
    return f"{local}@{domain}"


def email_claim_key(email: str) -> str:
    return "email:" + trial_email(email)


def subject_claim_key(issuer: str, subject: str) -> str:
    return f"oidc:{issuer} {subject}"[:600]


def claim_trial(s: Session, *, ledger, user_id: int, amount: int, keys: Iterable[str],
                now: datetime) -> bool:
    """Inside the caller's write transaction: grant `amount` trial credits to `user_id` when none
    of `keys` has had a trial; record the keys either way. True when credits were granted.

    A user never gets two trials: the ledger key `trial:<user id>` makes a repeat a no-op."""
    keys = sorted({k for k in keys if k})
    if not keys:
        return False
    claimed = set(s.exec(select(TrialClaim.claim_key).where(col(TrialClaim.claim_key).in_(keys))).all())
    fresh = [k for k in keys if k not in claimed]
    if fresh:
        try:
            # A savepoint: another replica claiming the same key at the same moment (PostgreSQL)
            # makes this insert fail; then nothing is granted and the rest of the work stands.
            with s.begin_nested():
                for key in fresh:
                    s.add(TrialClaim(claim_key=key, user_id=user_id, created_at=now))
                s.flush()
        except IntegrityError:
            return False
    if claimed or amount <= 0:
        return False
    result = ledger.grant(user_id=user_id, amount=amount, kind="trial", idempotency_key=f"trial:{user_id}",
                          note=TRIAL_NOTE, session=s)
    return not getattr(result, "replayed", False)


def load_blocked_domains(path: Path) -> frozenset[str]:
    """assets/blocked_email_domains.txt: one domain a line, `#` comments; missing file: none."""
    if not path.exists():
        return frozenset()
    lines = (line.split("#", 1)[0].strip().lower() for line in path.read_text().splitlines())
    return frozenset(line for line in lines if line)


def is_blocked_domain(email: str, blocked: frozenset[str]) -> bool:
    """True when the email's domain, or a domain it is under, is listed."""
    domain = email.rpartition("@")[2].lower()
    parts = domain.split(".")
    return any(".".join(parts[i:]) in blocked for i in range(len(parts) - 1))
