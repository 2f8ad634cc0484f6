"""Accounts: sign-up, sign-in with lockout and throttling, sessions, password reset, API keys.

Tokens (session cookies, reset links, API keys) are random; only their SHA-256 is stored.

Every attempt that costs a password hash (sign-in, sign-up) is first counted and recorded in
one serialised write transaction, and refused at its limit, before any hashing: attempts still
in flight count against the limits, in this process and in every other one sharing the store.

The package: service.py (`Accounts`, made of one mixin per concern), users.py (creating accounts,
sign-up, lookups), sessions.py (sign-in, sessions, sign-out proof), attempts.py (the limits and the
serialised count-and-record of attempts, the lockout), credentials.py (email and password checks,
the bounded argon2 `PasswordHasher`, `token_hash`), reset.py (password reset through the mail
outbox), api_keys.py, last_seen.py (the throttled "last seen" writes), oidc.py (sign-in with OpenID
Connect providers, linking), verification.py (email verification links), trials.py (one free trial
per person: `trial_claims`), devices.py (signed-in devices: list and sign out).
"""

from services.accounts.credentials import PasswordHasher, check_password, normalize_email, token_hash
from services.accounts.service import Accounts
from services.accounts.sessions import SignIn

__all__ = ["Accounts", "PasswordHasher", "SignIn", "check_password", "normalize_email", "token_hash"]
