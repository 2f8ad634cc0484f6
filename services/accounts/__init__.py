"""Accounts: sign-up, sign-in with lockout and throttling, sessions, password reset, API keys."""

from services.accounts.service import Accounts, token_hash

__all__ = ["Accounts", "token_hash"]
