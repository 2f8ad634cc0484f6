"""The gallery's trash: a deleted image keeps its files for 30 days, then the sweep purges it

`generations.deleted_at` (since 0001) now means "in the trash": Delete sets it and keeps the
files; restore clears it; the sweep (services/maintenance.py) purges rows deleted more than 30
days ago together with their files. This revision indexes the column for that sweep, and forgets
the image key of images deleted before the trash existed: the old Delete removed their files at
once, so the trash must not offer them (the sweep purges those rows after 30 days as well).

Revision ID: 0004
Revises: 0003 (the lead fixes the chain at merge: the OIDC revision 0005 also starts from 0003)
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("generations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_generations_deleted_at"), ["deleted_at"], unique=False)
    generations = sa.table("generations", sa.column("deleted_at"), sa.column("image_key"), sa.column("status"))
    op.execute(generations.update()
               .where(generations.c.deleted_at.is_not(None), generations.c.status != "pending")
               .values(image_key=None))


def downgrade() -> None:
    with op.batch_alter_table("generations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_generations_deleted_at"))
