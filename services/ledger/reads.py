"""The ledger's reads for people: a balance with its split per kind, history pages, a hold."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import func, or_, select

from models.generation import Generation
from models.ledger import CREDIT_KIND_LABELS, GRANT_KINDS
from services import i18n
from services.db import Database
from services.errors import ValidationFailed
from services.ledger.results import Balance, HistoryPage, HistoryRow, Reservation
from services.ledger.statements import E, G, H, hold_by_job


class LedgerReads:
    """Reading a user's credits (a mixin of `Ledger`)."""

    db: Database
    clock: Callable[[], datetime]

    def get_hold(self, job_id: str) -> Reservation | None:
        """The hold of job `job_id` as it is now, or None."""
        with self.db.session() as s:
            return hold_by_job(s.connection(), job_id)

    def balance(self, user_id: int) -> Balance:
        """The visible balance with its split per kind (an unknown user has an empty balance)."""
        now = self.clock()
        with self.db.session() as s:
            conn = s.connection()
            rows = conn.execute(
                select(G.c.kind, G.c.remaining, G.c.expires_at).where(
                    G.c.user_id == user_id,
                    or_(G.c.expires_at.is_(None), G.c.expires_at > now),
                    or_(G.c.remaining > 0, G.c.kind == "subscription"),
                )
            ).all()
            held = conn.execute(
                select(func.coalesce(func.sum(H.c.amount), 0)).where(H.c.user_id == user_id, H.c.status == "pending")
            ).scalar_one()
        buckets = dict.fromkeys(GRANT_KINDS, 0)
        next_expiry = subscription_end = None
        for kind, remaining, expires_at in rows:
            buckets[kind] = buckets.get(kind, 0) + remaining
            if expires_at is not None and remaining > 0 and (next_expiry is None or expires_at < next_expiry):
                next_expiry = expires_at
            if kind == "subscription" and (subscription_end is None or expires_at > subscription_end):
                subscription_end = expires_at
        return Balance(
            total=sum(buckets.values()), held=int(held), buckets=buckets,
            next_expiry=next_expiry, subscription_expires_at=subscription_end,
        )

    def history(self, user_id: int, page: int = 1, per_page: int = 20, language: str | None = None) -> HistoryPage:
        """The movements that changed the visible balance, newest first. Captures are not
        listed (the hold already showed the charge); a released hold shows as "Not charged".
        Each row says what it was (`detail`): a generation's style and resolution with its
        image, the pack or plan bought, the pack a refund took back, an administrator's note."""
        if isinstance(page, bool) or not isinstance(page, int) or page < 1:
            raise ValidationFailed("The page must be a whole number from 1.")
        if isinstance(per_page, bool) or not isinstance(per_page, int) or not 1 <= per_page <= 200:
            raise ValidationFailed("Rows per page must be between 1 and 200.")
        visible = (E.c.user_id == user_id, E.c.delta != E.c.held_delta)
        with self.db.session() as s:
            conn = s.connection()
            total = conn.execute(select(func.count()).select_from(E).where(*visible)).scalar_one()
            pages = max(1, math.ceil(total / per_page))
            page = min(page, pages)
            rows = conn.execute(
                select(E.c.created_at, E.c.kind, E.c.delta, E.c.held_delta, E.c.balance_after, G.c.kind, H.c.status,
                       E.c.note, G.c.note, H.c.job_id)
                .select_from(E.outerjoin(G, E.c.grant_id == G.c.id).outerjoin(H, E.c.hold_id == H.c.id))
                .where(*visible)
                .order_by(E.c.id.desc())
                .offset((page - 1) * per_page)
                .limit(per_page)
            ).all()
            jobs = sorted({row[9] for row in rows if row[9]})
            images = {}
            if jobs:
                GEN = Generation.__table__
                images = {r.id: r for r in conn.execute(
                    select(GEN.c.id, GEN.c.style, GEN.c.resolution, GEN.c.aspect_ratio, GEN.c.status,
                           GEN.c.image_key, GEN.c.deleted_at)
                    .where(GEN.c.id.in_(jobs), GEN.c.user_id == user_id)
                ).all()}
        out = []
        for at, kind, delta, held_delta, balance_after, grant_kind, hold_status, note, grant_note, job in rows:
            generation = images.get(job) if job else None
            out.append(HistoryRow(
                at=at, kind=kind, what=describe(kind, grant_kind, hold_status, language),
                delta=delta - held_delta, balance_after=balance_after,
                detail=detail(kind, grant_kind, note, grant_note, job, generation, language),
                generation_id=generation.id if generation is not None else None,
                image=image_state(generation),
            ))
        return HistoryPage(rows=out, page=page, pages=pages, total=int(total))


def credit_label(kind: str | None, language: str | None = None) -> str | None:
    """A credit kind's label (CREDIT_KIND_LABELS in English, "credit.kind.<kind>" in the language)."""
    if kind not in CREDIT_KIND_LABELS:
        return None
    return i18n.t(language, f"credit.kind.{kind}")


def describe(kind: str, grant_kind: str | None, hold_status: str | None, language: str | None = None) -> str:
    def say(key: str, **params) -> str:
        return i18n.t(language, key, **params)

    if kind == "grant":
        return credit_label(grant_kind, language) or say("history.credits_added")
    if kind == "hold":
        return say("history.generation_pending") if hold_status == "pending" else say("history.generation")
    if kind == "release":
        return say("history.not_charged_expired") if hold_status == "expired" else say("history.not_charged_failed")
    if kind == "expiry":
        label = credit_label(grant_kind, language)
        return say("history.kind_expired", label=label) if label else say("history.expired")
    if kind == "clawback":
        return say("history.clawback")
    if kind == "adjust":
        return say("history.adjust")
    if kind == "refund":
        return say("history.refund")
    return kind


def product_name(note: str | None) -> str:
    """The product in a Stripe grant's note, "Starter pack (cs_...)" → "Starter pack"."""
    if not note:
        return ""
    name, sep, ref = note.rpartition(" (")
    return name if sep and ref.endswith(")") and ref[:3] in ("cs_", "in_") else note


def image_state(generation) -> str | None:
    if generation is None or generation.image_key is None or generation.status == "failed":
        return None
    return "trash" if generation.deleted_at is not None else "gallery"


def detail(kind: str, grant_kind: str | None, note: str | None, grant_note: str | None, job: str | None,
           generation, language: str | None = None) -> str:
    """What a history row was, in a few words (see `history`)."""
    def say(key: str, **params) -> str:
        return i18n.t(language, key, **params)

    if kind in ("hold", "release"):
        if generation is None:
            return say("history.image_deleted") if kind == "hold" and job else ""
        style = i18n.catalog_text(language, "styles", generation.style, "name", generation.style)
        text = f"{style} · {generation.resolution} · {generation.aspect_ratio}"
        state = image_state(generation)
        return text + (" · " + say("history.in_trash") if state == "trash" else "") + \
            (" · " + say("history.image_deleted") if kind == "hold" and state is None else "")
    if kind == "grant" and grant_kind == "pack":
        return product_name(note)
    if kind == "grant" and grant_kind == "subscription":
        plan = product_name(note)
        return say("history.plan_period", plan=plan) if plan else say("history.new_period")
    if kind == "clawback":
        pack = product_name(grant_note)
        return say("history.taken_back", pack=pack) if pack else ""
    if kind == "adjust" or kind == "grant" and grant_kind == "admin":
        return note or ""
    if kind == "expiry" and note:
        return note
    return ""
