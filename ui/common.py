"""What every tab shares: who is signed in, the balance line in the header, error mapping."""

from __future__ import annotations

import gradio as gr

from models.user import User
from services.container import Services
from services.errors import DomainError


class Shell:
    """Handed to each tab's build(). `balance` is the header line shown on every page."""

    def __init__(self, services: Services):
        self.services = services
        self.balance: gr.Markdown | None = None
        # (fn, inputs, outputs) to run when the current tab is shown; ui/__init__ wires them.
        self.tab_loaders: list[tuple] = []

    def on_show(self, fn, inputs, outputs) -> None:
        """Run fn(inputs) -> outputs when the tab being built is shown (page load and tab select)."""
        self.tab_loaders.append((fn, inputs, outputs))

    def user(self, request: gr.Request | None) -> User:
        """The signed-in user, from the request that auth_dependency authenticated. Never from a component."""
        username = getattr(request, "username", None) if request is not None else None
        if not username:
            raise gr.Error("Please sign in.", title="Not signed in")
        try:
            return self.services.accounts.get_user(int(username))
        except (ValueError, DomainError):
            raise gr.Error("Please sign in again.", title="Not signed in") from None

    def balance_text(self, user_id: int, balance=None) -> str:
        """The header line; pass the Balance when the caller has just read it."""
        b = balance if balance is not None else self.services.ledger.balance(user_id)
        held = f" · {b.held} held" if b.held else ""
        return f"**{b.total} credits**{held}"

    @staticmethod
    def domain_error(err: DomainError) -> gr.Error:
        return gr.Error(err.message, print_exception=False)
