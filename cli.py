"""The command line: `python app.py SUBCOMMAND` (app.py hands the arguments over).

Each command prints one JSON object as the last line of stdout; a refusal prints
`error: <message>` on stderr and exits 1. Every command goes through the same services as the UI.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.container import Services
    from services.settings import Settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python app.py", description="Image Studio. No arguments: serve the app.")
    sub = p.add_subparsers(dest="command", required=True)

    users = sub.add_parser("users", help="manage users").add_subparsers(dest="action", required=True)
    uc = users.add_parser("create", help="create a user")
    uc.add_argument("email")
    uc.add_argument("--password", required=True)
    uc.add_argument("--admin", action="store_true")

    keys = sub.add_parser("apikey", help="manage API keys").add_subparsers(dest="action", required=True)
    keys.add_parser("create", help="create an API key for a user").add_argument("email")

    db = sub.add_parser("db", help="database").add_subparsers(dest="action", required=True)
    db.add_parser("upgrade", help="apply migrations")

    credits = sub.add_parser("credits", help="credits").add_subparsers(dest="action", required=True)
    cg = credits.add_parser("grant", help="grant credits to a user (kind: granted by an administrator)")
    cg.add_argument("email")
    cg.add_argument("amount", type=int)
    cg.add_argument("--note", default=None)
    credits.add_parser("balance", help="a user's balance").add_argument("email")
    credits.add_parser("reconcile", help="check the ledger; exit 1 on any discrepancy")

    sub.add_parser("catalog", help="print styles, aspect ratios, resolutions and products")
    stripe = sub.add_parser("stripe", help="Stripe").add_subparsers(dest="action", required=True)
    stripe.add_parser("sync", help="create missing Stripe products and prices (idempotent)")
    invites = sub.add_parser("invites", help="sign-up invitations").add_subparsers(dest="action", required=True)
    ic = invites.add_parser("create", help="create a single-use invitation link")
    ic.add_argument("--email", default=None, help="only this address may use it")
    ic.add_argument("--days", type=int, default=None, help="valid for N days (default INVITE_DAYS, 7)")
    storage = sub.add_parser("storage", help="image storage").add_subparsers(dest="action", required=True)
    sm = storage.add_parser("migrate", help="copy every image to another store (resumable, checksums verified)")
    sm.add_argument("--to", required=True, dest="to", help="s3://bucket/prefix or a local folder")
    return p


def run_cli(argv: list[str], settings: Settings, *, build_services: Callable[[Settings], Services]) -> int:
    """Run one command; print its JSON object (errors: `error: <message>` on stderr, exit 1)."""
    from services.errors import DomainError

    args = _parser().parse_args(argv)
    try:
        if args.command == "db":
            from services.db import Database

            out = {"revision": Database(settings.resolved_database_url).upgrade()}
        else:
            services = build_services(settings)
            out = _run_command(args, services)
            if out.pop("_exit", 0):
                print(json.dumps(out))
                return 1
    except DomainError as err:
        print(f"error: {err.message}", file=sys.stderr)
        return 1
    print(json.dumps(out, default=str))
    return 0


def _run_command(args, services: Services) -> dict:
    cmd = (args.command, getattr(args, "action", None))
    if cmd == ("users", "create"):
        user = services.accounts.create_user(email=args.email, password=args.password, admin=args.admin)
        return {"id": user.id, "email": user.email, "balance": services.ledger.balance(user.id).total,
                "role": user.role}
    if cmd == ("apikey", "create"):
        user = services.accounts.get_user_by_email(args.email)
        _, key = services.accounts.create_api_key(user_id=user.id, name="cli")
        return {"api_key": key}
    if cmd == ("credits", "grant"):
        from services.admin import OPERATOR

        return {"balance": services.admin.grant_credits(actor=OPERATOR, email=args.email, amount=args.amount,
                                                        note=args.note)}
    if cmd == ("credits", "balance"):
        user = services.accounts.get_user_by_email(args.email)
        return {"balance": services.ledger.balance(user.id).total}
    if cmd == ("credits", "reconcile"):
        problems = services.ledger.reconcile()
        return {"discrepancies": problems, "_exit": 1 if problems else 0}
    if cmd == ("invites", "create"):
        from services.admin import OPERATOR

        invite = services.admin.create_invite(actor=OPERATOR, email=args.email, days=args.days)
        return {"id": invite.id, "url": invite.url, "token": invite.token, "email": invite.email,
                "expires_at": invite.expires_at.isoformat()}
    if cmd == ("storage", "migrate"):
        from services.storage import migrate, store_for_url

        source, target = services.studio.store, store_for_url(args.to, services.settings)
        summary = migrate(source, target)
        return {"from": _described(source), "to": _described(target), **summary,
                "_exit": 1 if summary["failed"] else 0}
    if cmd == ("catalog", None):
        return {**services.catalog.to_json(), "products": services.pricing.products_json()}
    if cmd == ("stripe", "sync"):
        return {"actions": services.billing.sync_catalog()}
    raise SystemExit(f"unknown command {cmd}")


def _described(store) -> str:
    return store.describe() if hasattr(store, "describe") else type(store).__name__
