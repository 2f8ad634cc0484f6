"""My styles: a user's own saved styles, and their prompt history.

A saved style is a name (1-60 characters, unique per user without regard to case, not a built-in
style's name), a prompt template with `{prompt}` exactly once (at most 1,000 characters, no
control characters) and an optional default aspect ratio and resolution; at most 50 per user.
Only its owner can read, use, change or delete it: anyone else's is NotFound. Exporting gives a
share code (random, stored on the style) that another signed-in user imports as their own,
independent copy; the code finds that style's name, template and defaults, nothing of its owner.
`resolve` is `Studio.style_resolver`: `/generate`, `/compare` (and `/edit`) use a saved style by name.
The prompt history is read from the user's generations: the last 50 distinct prompts.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Callable
from datetime import datetime

from pydantic import dataclasses as pydantic_dataclasses
from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from models.base import utcnow
from models.generation import Generation
from models.style import SavedStyle
from models.user import User
from services.catalog import _STRICT, Catalog, Style
from services.db import Database
from services.errors import Conflict, NotFound, ValidationFailed

NAME_MAX = 60
TEMPLATE_MAX = 1000
MAX_STYLES = 50
HISTORY_MAX = 50
PLACEHOLDER = "{prompt}"
CODE_RE = re.compile(r"^[A-Za-z0-9_-]{16}$")


@pydantic_dataclasses.dataclass(frozen=True, config=_STRICT)
class OwnStyle(Style):
    """A saved style as the studio uses it (a `Style`, with its defaults and its row id)."""

    id: int = 0
    aspect_ratio: str | None = None
    resolution: str | None = None
    owned: bool = True

    @property
    def label(self) -> str:  # the user's own spelling
        return self.name


def _control(text: str) -> str | None:
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Cs"):
            return f"U+{ord(ch):04X}"
    return None


class MyStyles:
    """Saved styles and prompt history, per user. Every method takes the owner's id."""

    def __init__(self, *, db: Database, catalog: Catalog, clock: Callable[[], datetime] = utcnow,
                 max_styles: int = MAX_STYLES):
        self.db = db
        self.catalog = catalog
        self.clock = clock
        self.max_styles = max_styles

    # Reading ---------------------------------------------------------------------------------

    def list(self, *, user_id: int) -> list[SavedStyle]:
        """The user's styles, by name."""
        with self.db.session() as s:
            return list(s.exec(select(SavedStyle).where(SavedStyle.user_id == user_id)
                               .order_by(col(SavedStyle.name_key))).all())

    def get(self, *, user_id: int, style_id) -> SavedStyle:
        """One of the user's styles; NotFound for anyone else's."""
        with self.db.session() as s:
            return _owned(s, user_id, style_id)

    def find(self, *, user_id: int, name: str) -> SavedStyle | None:
        if not isinstance(name, str) or not name.strip():
            return None
        with self.db.session() as s:
            return s.exec(select(SavedStyle).where(SavedStyle.user_id == user_id,
                                                   SavedStyle.name_key == name.strip().lower())).first()

    def resolve(self, *, user_id: int, name: str) -> OwnStyle | None:
        """The user's saved style called `name` as a Style the studio can use, or None."""
        row = self.find(user_id=user_id, name=name)
        return self.as_style(row) if row is not None else None

    def as_style(self, row: SavedStyle) -> OwnStyle:
        base = next((s for s in self.catalog.styles if s.name == row.base_style), None)
        description = f"Your style (from {base.label})." if base else "Your style."
        return OwnStyle(name=row.name, description=description, template=row.template,
                        preview=dict(base.preview) if base else {}, id=row.id, aspect_ratio=row.aspect_ratio,
                        resolution=row.resolution)

    def prompt_history(self, *, user_id: int, limit: int = HISTORY_MAX) -> list[str]:
        """The user's last `limit` distinct prompts, most recent first."""
        last = func.max(Generation.created_at)
        with self.db.session() as s:
            rows = s.exec(select(Generation.prompt, last).where(Generation.user_id == user_id)
                          .group_by(Generation.prompt).order_by(last.desc()).limit(min(limit, HISTORY_MAX))).all()
        return [prompt for prompt, _ in rows]

    # Writing ---------------------------------------------------------------------------------

    def create(self, *, user_id: int, name, template, aspect_ratio=None, resolution=None,
               base_style: str | None = None) -> SavedStyle:
        """Save a new style; ValidationFailed / Conflict (nothing saved) when a rule is broken."""
        fields = self._checked(name=name, template=template, aspect_ratio=aspect_ratio, resolution=resolution)
        now = self.clock()
        try:
            with self.db.transaction() as s:
                self._lock_user(s, user_id)
                count = s.exec(select(func.count()).select_from(SavedStyle)
                               .where(SavedStyle.user_id == user_id)).one()
                if count >= self.max_styles:
                    raise ValidationFailed(f"You have {count} saved styles, the most you can keep is "
                                           f"{self.max_styles}: delete one first.", key="error.style.too_many",
                                           count=count, most=self.max_styles)
                self._refuse_taken(s, user_id, fields["name_key"])
                row = SavedStyle(user_id=user_id, base_style=base_style, created_at=now, updated_at=now, **fields)
                s.add(row)
                s.flush()
        except IntegrityError:
            raise Conflict(f"You already have a style called “{fields['name']}”.", key="error.style.taken",
                           name=fields["name"]) from None
        return row

    def update(self, *, user_id: int, style_id, name, template, aspect_ratio=None, resolution=None) -> SavedStyle:
        """Change one of the user's styles (all fields at once, checked first)."""
        fields = self._checked(name=name, template=template, aspect_ratio=aspect_ratio, resolution=resolution)
        try:
            with self.db.transaction() as s:
                row = _owned(s, user_id, style_id)
                if fields["name_key"] != row.name_key:
                    self._refuse_taken(s, user_id, fields["name_key"])
                for key, value in fields.items():
                    setattr(row, key, value)
                row.updated_at = self.clock()
                s.add(row)
                s.flush()
        except IntegrityError:
            raise Conflict(f"You already have a style called “{fields['name']}”.", key="error.style.taken",
                           name=fields["name"]) from None
        return row

    def delete(self, *, user_id: int, style_id) -> str:
        """Delete one of the user's styles (its share code stops working). Returns its name."""
        with self.db.transaction() as s:
            row = _owned(s, user_id, style_id)
            name = row.name
            s.delete(row)
        return name

    def duplicate(self, *, user_id: int, style: str) -> SavedStyle:
        """A copy of a built-in style (or one of the user's own) as a new saved style to edit."""
        own = self.find(user_id=user_id, name=style)
        source = self.as_style(own) if own is not None else self.catalog.style(style)
        base = own.base_style if own is not None else source.name
        return self.create(user_id=user_id, name=self._free_name(user_id, f"{source.label} (my copy)"),
                           template=source.template, aspect_ratio=getattr(source, "aspect_ratio", None),
                           resolution=getattr(source, "resolution", None), base_style=base)

    def export(self, *, user_id: int, style_id) -> str:
        """The style's share code (made on the first export, the same afterwards)."""
        with self.db.transaction() as s:
            row = _owned(s, user_id, style_id)
            if row.share_code is None:
                row.share_code = secrets.token_urlsafe(12)  # 16 characters, 96 random bits
                s.add(row)
            return row.share_code

    def import_code(self, *, user_id: int, code) -> SavedStyle:
        """Import a shared style as the user's own copy (renamed if the name is taken)."""
        code = code.strip() if isinstance(code, str) else ""
        if not CODE_RE.match(code):
            raise ValidationFailed("That is not a style code: a code has 16 letters, digits, “-” or “_”.",
                                   key="error.style.bad_code")
        with self.db.session() as s:
            shared = s.exec(select(SavedStyle).where(SavedStyle.share_code == code)).first()
        if shared is None:
            raise NotFound("No style has this code (it may have been deleted).", key="error.style.no_code")
        return self.create(user_id=user_id, name=self._free_name(user_id, shared.name), template=shared.template,
                           aspect_ratio=shared.aspect_ratio, resolution=shared.resolution,
                           base_style=shared.base_style)

    # Rules -----------------------------------------------------------------------------------

    def _checked(self, *, name, template, aspect_ratio, resolution) -> dict:
        if not isinstance(name, str) or not name.strip():
            raise ValidationFailed("Please give the style a name.", key="error.style.no_name")
        name = name.strip()
        if len(name) > NAME_MAX:
            raise ValidationFailed(f"The name is too long: {len(name)} characters (at most {NAME_MAX}).",
                                   key="error.style.name_long", length=len(name), most=NAME_MAX)
        if bad := _control(name):
            raise ValidationFailed(f"The name contains a control character ({bad}). Please remove it.",
                                   key="error.style.name_control", bad=bad)
        if name.lower() in (s.name.lower() for s in self.catalog.styles):
            raise ValidationFailed(f"“{name}” is the name of a built-in style: please choose another name.",
                                   key="error.style.built_in_name", name=name)
        if not isinstance(template, str) or not template.strip():
            raise ValidationFailed("Please enter a prompt template containing {prompt}.", key="error.style.no_template",
                                   placeholder=PLACEHOLDER)
        template = template.strip()
        if len(template) > TEMPLATE_MAX:
            raise ValidationFailed(f"The template is too long: {len(template):,} characters (at most {TEMPLATE_MAX:,}).",
                                   key="error.style.template_long", length=f"{len(template):,}", most=f"{TEMPLATE_MAX:,}")
        if bad := _control(template):
            raise ValidationFailed(f"The template contains a control character ({bad}), such as a line break. "
                                   "Please keep it on one line.", key="error.style.template_control", bad=bad)
        if template.count(PLACEHOLDER) != 1:
            where = "does not contain" if PLACEHOLDER not in template else "contains more than once"
            raise ValidationFailed(f"The template {where} {PLACEHOLDER}: it must contain {PLACEHOLDER} exactly once, "
                                   "where your prompt goes.", placeholder=PLACEHOLDER,
                                   key="error.style.placeholder_missing" if PLACEHOLDER not in template
                                   else "error.style.placeholder_twice")
        ratio = self.catalog.aspect_ratio(aspect_ratio).ratio if aspect_ratio else None
        res = self.catalog.resolution(resolution).key if resolution else None
        return {"name": name, "name_key": name.lower(), "template": template, "aspect_ratio": ratio, "resolution": res}

    @staticmethod
    def _lock_user(s, user_id: int) -> None:
        """Serialises one user's creates (the 50-style limit) on PostgreSQL; SQLite has one writer."""
        if s.exec(select(User.id).where(User.id == user_id).with_for_update()).first() is None:
            raise NotFound("Unknown user.")

    @staticmethod
    def _refuse_taken(s, user_id: int, name_key: str) -> None:
        taken = s.exec(select(SavedStyle.name).where(SavedStyle.user_id == user_id,
                                                     SavedStyle.name_key == name_key)).first()
        if taken is not None:
            raise Conflict(f"You already have a style called “{taken}”. Choose another name.")

    def _free_name(self, user_id: int, wanted: str) -> str:
        taken = {row.name_key for row in self.list(user_id=user_id)}
        builtin = {s.name.lower() for s in self.catalog.styles}
        wanted = wanted[:NAME_MAX]
        if wanted.lower() not in taken | builtin:
            return wanted
        for n in range(2, self.max_styles + 2):
            suffix = f" ({n})"
            candidate = wanted[:NAME_MAX - len(suffix)] + suffix
            if candidate.lower() not in taken | builtin:
                return candidate
        return wanted  # the create that follows refuses it (the limit)


def _owned(s, user_id: int, style_id) -> SavedStyle:
    """The user's style `style_id` in session `s`; NotFound for a bad id or anyone else's style."""
    sid = _id(style_id)
    row = s.get(SavedStyle, sid) if sid is not None else None
    if row is None or row.user_id != user_id:
        raise NotFound("No such style among your styles.", key="error.style.not_found")
    return row


def _id(value) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None
