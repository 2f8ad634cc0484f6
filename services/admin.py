"""Administration: the admin console (ui/admin.py) and the CLI's admin commands. Every call checks,
on the server, that the actor is an admin user or the operator (`OPERATOR`: the CLI, run by whoever
has the server's shell, database and secrets). Hiding the tab is not the check; this is.

The console's tables (members, usage, money) are `Table`s: the tab shows them and the CSV export
writes the same rows (`table_csv`)."""

from __future__ import annotations

import csv
import io
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, update
from sqlmodel import col, select

from models.base import utcnow
from models.generation import Generation, ModerationEvent
from models.ledger import CREDIT_KIND_LABELS, GRANT_KINDS, Hold
from models.payment import Fulfillment, Subscription
from models.user import ApiKey, User, UserSession
from services.accounts import Accounts
from services.billing.plans import ACTIVE_STATUSES
from services.db import Database
from services.errors import NotFound, PermissionDenied, ValidationFailed
from services.ledger import MAX_AMOUNT
from services.settings import Settings


@dataclass(frozen=True)
class Operator:
    """The actor behind the CLI. Only code on the server can pass it: no request carries it."""

    key: str = "cli"
    default_note: str = "Granted from the CLI"


OPERATOR = Operator()


@dataclass(frozen=True)
class Overview:
    users: int
    generations_24h: int
    failed_24h: int
    rejections_24h: int


@dataclass
class Table:
    """One console table: what the tab shows and what its CSV holds, row for row."""

    name: str
    headers: list[str]
    rows: list[list] = field(default_factory=list)


NO_PLAN = "no plan"
TABLES = ("members", "usage", "usage_daily", "money_daily", "money_plans")


def provider_cost(usage: dict | None, model: str, prices: dict[str, dict[str, float]]) -> float:
    """The provider's cost of one generation from its token usage (OpenAI's `usage` object) and
    PROVIDER_PRICES (per 1M tokens, per model, per token kind; a dated snapshot takes its model's
    prices). No usage (the offline engine) or no prices for the model: 0."""
    if not usage:
        return 0.0
    table = prices.get(model) or next((p for m, p in sorted(prices.items(), key=lambda i: -len(i[0]))
                                       if model.startswith(m + "-")), None)
    if not table:
        return 0.0
    tokens = token_kinds(usage)
    return sum(tokens[kind] * table.get(kind, 0.0) for kind in tokens) / 1_000_000


def token_kinds(usage: dict) -> dict[str, int]:
    """OpenAI's image usage split into PROVIDER_PRICES' token kinds. Without a split, input
    tokens count as text and output tokens as image tokens."""
    def n(value) -> int:
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0

    inp = usage.get("input_tokens_details") or {}
    out = usage.get("output_tokens_details") or {}
    text_in, image_in = n(inp.get("text_tokens")), n(inp.get("image_tokens"))
    if not text_in and not image_in:
        text_in = n(usage.get("input_tokens"))
    text_out, image_out = n(out.get("text_tokens")), n(out.get("image_tokens"))
    if not text_out and not image_out:
        image_out = n(usage.get("output_tokens"))
    return {"text_input": text_in, "image_input": image_in, "text_output": text_out, "image_output": image_out}


class Admin:
    def __init__(self, *, db: Database, accounts: Accounts, ledger, settings: Settings | None = None,
                 team=None, clock: Callable[[], datetime] = utcnow):
        self.db = db
        self.accounts = accounts
        self.ledger = ledger
        self.settings = settings or accounts.settings
        self.team = team
        self.clock = clock

    @staticmethod
    def _require(actor: User | Operator) -> None:
        if actor is OPERATOR:
            return
        if not isinstance(actor, User) or not actor.is_admin:
            raise PermissionDenied("This needs an administrator.")

    def _fresh_admin(self, actor: User | Operator) -> None:
        """The role as the database has it now (a demoted or disabled admin's page is refused too)."""
        self._require(actor)
        if actor is OPERATOR:
            return
        with self.db.session() as s:
            current = s.get(User, actor.id)
        if current is None or not current.is_admin or current.disabled_at is not None:
            raise PermissionDenied("This needs an administrator.")

    # Credits ----------------------------------------------------------------------------------

    def _key(self, actor: User | Operator) -> tuple[str, str]:
        if actor is OPERATOR:
            return f"admin:{actor.key}:{uuid.uuid4().hex}", actor.default_note
        return f"admin:{actor.id}:{uuid.uuid4().hex}", f"Granted by {actor.email}"

    def grant_credits(self, *, actor: User | Operator, email: str, amount: int | float,
                      note: str | None = None) -> int:
        """Grant `amount` admin credits to the user with `email`; returns their new balance.

        `amount` must be a whole number from 1 to MAX_AMOUNT. A float with a whole value (1.0,
        what a number field may send) counts as that number; 1.5, True, "3" or None are refused,
        never rounded. `actor` is an admin user (the UI) or OPERATOR (the CLI).
        """
        self._fresh_admin(actor)
        amount = _whole_credits(amount)
        user = self.accounts.get_user_by_email(email)
        key, default_note = self._key(actor)
        self.ledger.grant(user_id=user.id, amount=amount, kind="admin", idempotency_key=key,
                          note=(note or default_note)[:500])
        return self.ledger.balance(user.id).total

    def take_back_credits(self, *, actor: User | Operator, email: str, amount: int | float,
                          note: str | None = None) -> tuple[int, int]:
        """Take up to `amount` credits back from the member (spend order, never below zero; held
        credits are not touched). Returns (credits taken, new balance). A ledger "adjust" entry."""
        self._fresh_admin(actor)
        amount = _whole_credits(amount)
        user = self.accounts.get_user_by_email(email)
        key, _ = self._key(actor)
        who = "the CLI" if actor is OPERATOR else actor.email
        result = self.ledger.adjust(user_id=user.id, amount=-amount, idempotency_key=key,
                                    note=(note or f"Taken back by {who}")[:500])
        return -result.amount, result.balance

    # Members ----------------------------------------------------------------------------------

    def set_disabled(self, *, actor: User | Operator, email: str, disabled: bool) -> User:
        """Disable a member (their sessions and API keys are revoked in the same transaction, so
        every replica refuses them at the next request) or enable them again (they sign in anew and
        create new keys)."""
        self._fresh_admin(actor)
        user = self.accounts.get_user_by_email(email)
        if disabled and actor is not OPERATOR and user.id == actor.id:
            raise ValidationFailed("You cannot disable your own account.")
        now = self.clock()
        with self.db.transaction() as s:
            s.exec(update(User).where(User.id == user.id).values(disabled_at=now if disabled else None))
            if disabled:
                s.exec(update(UserSession).where(UserSession.user_id == user.id,
                                                 col(UserSession.revoked_at).is_(None)).values(revoked_at=now))
                s.exec(update(ApiKey).where(ApiKey.user_id == user.id,
                                            col(ApiKey.revoked_at).is_(None)).values(revoked_at=now))
            changed = s.get(User, user.id)
        return changed

    def members(self, *, actor: User | Operator, query: str = "", limit: int = 500) -> Table:
        """Members (email contains `query`), with balance by bucket, plan, last activity, generations."""
        self._fresh_admin(actor)
        query = (query or "").strip().lower()[:320]
        with self.db.session() as s:
            q = select(User).order_by(col(User.id))
            if query:
                escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                q = q.where(col(User.email).like(f"%{escaped}%", escape="\\"))
            users = s.exec(q.limit(limit)).all()
            ids = [u.id for u in users]
            gens = dict(s.exec(select(Generation.user_id, func.count()).where(col(Generation.user_id).in_(ids))
                               .group_by(Generation.user_id)).all())
            last_gen = dict(s.exec(select(Generation.user_id, func.max(Generation.created_at))
                                   .where(col(Generation.user_id).in_(ids)).group_by(Generation.user_id)).all())
            last_seen = dict(s.exec(select(UserSession.user_id, func.max(UserSession.last_seen_at))
                                    .where(col(UserSession.user_id).in_(ids)).group_by(UserSession.user_id)).all())
            last_key = dict(s.exec(select(ApiKey.user_id, func.max(ApiKey.last_used_at))
                                   .where(col(ApiKey.user_id).in_(ids)).group_by(ApiKey.user_id)).all())
            plans = self._plans(s, ids)
        kinds = list(GRANT_KINDS)
        table = Table("members", ["Email", "Role", "Status", "Balance",
                                  *[CREDIT_KIND_LABELS[k] for k in kinds],
                                  "Plan", "Last activity (UTC)", "Generations", "Joined (UTC)"])
        for u in users:
            balance = self.ledger.balance(u.id)
            moments = [m for m in (last_gen.get(u.id), last_seen.get(u.id), last_key.get(u.id)) if m]
            table.rows.append([
                u.email, u.role, "disabled" if u.disabled_at else "active", balance.total,
                *[balance.buckets.get(k, 0) for k in kinds],
                plans.get(u.id, NO_PLAN), _when(max(moments) if moments else None), gens.get(u.id, 0),
                _when(u.created_at),
            ])
        return table

    @staticmethod
    def _plans(s, ids: list[int] | None = None) -> dict[int, str]:
        q = select(Subscription.user_id, Subscription.product).where(
            col(Subscription.status).in_(ACTIVE_STATUSES)).order_by(col(Subscription.updated_at))
        if ids is not None:
            q = q.where(col(Subscription.user_id).in_(ids))
        return dict(s.exec(q).all())  # the latest update wins

    # Usage ------------------------------------------------------------------------------------

    def usage(self, *, actor: User | Operator, days: int = 30) -> tuple[Table, Table]:
        """(generations per day by resolution and engine; per day: failures, refunds, moderation refusals)."""
        self._fresh_admin(actor)
        since = self._since(days)
        with self.db.session() as s:
            gens = s.exec(select(Generation.created_at, Generation.resolution, Generation.engine, Generation.status)
                          .where(Generation.created_at >= since)).all()
            refunds = s.exec(select(Hold.settled_at, Hold.amount).where(
                col(Hold.status).in_(("released", "expired")), Hold.settled_at >= since)).all()
            refusals = s.exec(select(ModerationEvent.created_at).where(ModerationEvent.created_at >= since)).all()
        by_kind: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])
        daily: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
        for created, resolution, engine, status in gens:
            day = _day(created)
            row = by_kind[(day, resolution, engine)]
            row[0] += 1
            row[1] += status == "succeeded"
            row[2] += status == "failed"
            daily[day][0] += 1
            daily[day][1] += status == "failed"
        for settled, amount in refunds:
            daily[_day(settled)][2] += 1
            daily[_day(settled)][3] += amount
        for created in refusals:
            daily[_day(created)][4] += 1
        usage = Table("usage", ["Day", "Resolution", "Engine", "Generations", "Succeeded", "Failed"],
                      [[d, r, e, *v] for (d, r, e), v in sorted(by_kind.items(), reverse=True)])
        summary = Table("usage_daily", ["Day", "Generations", "Failed", "Refunded holds", "Credits refunded",
                                        "Moderation refusals"],
                        [[d, *v] for d, v in sorted(daily.items(), reverse=True)])
        return usage, summary

    # Money ------------------------------------------------------------------------------------

    def money(self, *, actor: User | Operator, days: int = 30) -> tuple[Table, Table]:
        """(per day, per plan): revenue recorded at fulfilment (Stripe's amounts; refunds negative),
        the provider's cost estimated from each generation's token usage and PROVIDER_PRICES, and
        the margin. A member's payments and generations count under their current plan."""
        self._fresh_admin(actor)
        since = self._since(days)
        prices = self.settings.provider_price_table
        with self.db.session() as s:
            paid = s.exec(select(Fulfillment.created_at, Fulfillment.user_id, Fulfillment.amount_cents,
                                 Fulfillment.currency).where(Fulfillment.created_at >= since)).all()
            gens = s.exec(select(Generation.created_at, Generation.user_id, Generation.model, Generation.usage)
                          .where(Generation.created_at >= since, Generation.status == "succeeded")).all()
            plans = self._plans(s)
        currencies = sorted({(c or "usd").upper() for *_, c in paid}) or ["USD"]
        currency = "/".join(currencies)
        per_day: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0])
        per_plan: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0])
        for created, user_id, cents, _ in paid:
            per_day[_day(created)][0] += cents
            per_plan[plans.get(user_id, NO_PLAN)][0] += cents
        for created, user_id, model, usage in gens:
            cost = provider_cost(usage, model, prices)
            per_day[_day(created)][1] += cost
            per_day[_day(created)][2] += 1
            per_plan[plans.get(user_id, NO_PLAN)][1] += cost
            per_plan[plans.get(user_id, NO_PLAN)][2] += 1

        def row(label, values):
            revenue, cost = values[0] / 100, values[1]
            return [label, f"{revenue:.2f}", int(values[2]), f"{cost:.4f}", f"{revenue - cost:.2f}"]

        headers = [f"Revenue ({currency})", "Generations", "Provider cost (est.)", "Margin"]
        daily = Table("money_daily", ["Day", *headers], [row(d, v) for d, v in sorted(per_day.items(), reverse=True)])
        by_plan = Table("money_plans", ["Plan", *headers], [row(p, v) for p, v in sorted(per_plan.items())])
        return daily, by_plan

    # Invitations ------------------------------------------------------------------------------

    def create_invite(self, *, actor: User | Operator, email: str | None = None, days: int | None = None):
        """A single-use invitation link (services/team.py), optionally bound to `email`."""
        self._fresh_admin(actor)
        if self.team is None:
            raise ValidationFailed("Invitations are not available in this process.")
        if isinstance(days, float) and days.is_integer():
            days = int(days)
        return self.team.create_invite(created_by=None if actor is OPERATOR else actor.id, email=email, days=days)

    def invites(self, *, actor: User | Operator) -> Table:
        self._fresh_admin(actor)
        now = self.clock()
        table = Table("invites", ["Created (UTC)", "For", "Expires (UTC)", "Status"])
        for inv in self.team.list_invites():
            status = "used" if inv.used_at else "expired" if inv.expires_at <= now else "open"
            table.rows.append([_when(inv.created_at), inv.email or "anyone", _when(inv.expires_at), status])
        return table

    # Export -----------------------------------------------------------------------------------

    def table(self, *, actor: User | Operator, name: str, query: str = "") -> Table:
        """One console table by name (TABLES); anything else is NotFound."""
        if name == "members":
            return self.members(actor=actor, query=query)
        if name in ("usage", "usage_daily"):
            return self.usage(actor=actor)[0 if name == "usage" else 1]
        if name in ("money_daily", "money_plans"):
            return self.money(actor=actor)[0 if name == "money_daily" else 1]
        self._fresh_admin(actor)
        raise NotFound("No such table.")

    def table_csv(self, *, actor: User | Operator, name: str, query: str = "") -> str:
        """The table as CSV (a header line, then the rows the console shows)."""
        table = self.table(actor=actor, name=name, query=query)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(table.headers)
        for r in table.rows:
            writer.writerow([_csv_cell(v) for v in r])
        return out.getvalue()

    # The older read-outs ------------------------------------------------------------------------

    def overview(self, *, actor: User) -> Overview:
        self._fresh_admin(actor)
        since = utcnow() - timedelta(hours=24)
        with self.db.session() as s:
            users = s.exec(select(func.count()).select_from(User)).one()
            gens = s.exec(select(func.count()).select_from(Generation).where(Generation.created_at > since)).one()
            failed = s.exec(select(func.count()).select_from(Generation).where(
                Generation.created_at > since, Generation.status == "failed")).one()
            rejected = s.exec(select(func.count()).select_from(ModerationEvent).where(
                ModerationEvent.created_at > since)).one()
        return Overview(users=users, generations_24h=gens, failed_24h=failed, rejections_24h=rejected)

    def recent_rejections(self, *, actor: User, limit: int = 50) -> list[tuple[ModerationEvent, str]]:
        """Prompts refused by moderation, newest first, with the user's email."""
        self._fresh_admin(actor)
        with self.db.session() as s:
            rows = s.exec(select(ModerationEvent, User.email).join(User, User.id == ModerationEvent.user_id)
                          .order_by(col(ModerationEvent.created_at).desc()).limit(limit)).all()
        return [(event, email) for event, email in rows]

    def _since(self, days: int) -> datetime:
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3660:
            raise ValidationFailed("Choose from 1 to 3660 days.")
        start = self.clock() - timedelta(days=days - 1)
        return start.replace(hour=0, minute=0, second=0, microsecond=0)


def _day(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d}" if moment else ""


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M}" if moment else ""


def _csv_cell(value):
    """A cell a spreadsheet will not run as a formula (emails and notes are typed by people)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(value):
        return "'" + value
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _whole_credits(amount) -> int:
    if isinstance(amount, float) and amount.is_integer():
        amount = int(amount)
    if isinstance(amount, bool) or not isinstance(amount, int) or not 1 <= amount <= MAX_AMOUNT:
        raise ValidationFailed(f"Enter a whole number of credits from 1 to {MAX_AMOUNT:,}.")
    return amount
