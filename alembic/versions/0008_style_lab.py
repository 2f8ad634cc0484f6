"""Style lab: saved styles per user, and batches of generations (Compare, Variations)

- `saved_styles`: a user's own styles (name unique per user, case-insensitive via `name_key`),
  with an optional share code.
- `generations.batch_id`: the images of one Compare or Variations request, shown together.

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_str = sqlmodel.sql.sqltypes.AutoString
_when = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "saved_styles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", _str(length=60), nullable=False),
        sa.Column("name_key", _str(length=60), nullable=False),
        sa.Column("template", sa.Text(), nullable=False),
        sa.Column("base_style", _str(length=64), nullable=True),
        sa.Column("aspect_ratio", _str(length=16), nullable=True),
        sa.Column("resolution", _str(length=8), nullable=True),
        sa.Column("share_code", _str(length=32), nullable=True),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("updated_at", _when(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "name_key", name="uq_saved_styles_user_name"),
        sa.UniqueConstraint("share_code"),
    )
    with op.batch_alter_table("saved_styles", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_saved_styles_user_id"), ["user_id"], unique=False)
    with op.batch_alter_table("generations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("batch_id", _str(length=32), nullable=True))
        batch_op.create_index(batch_op.f("ix_generations_batch_id"), ["batch_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("generations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_generations_batch_id"))
        batch_op.drop_column("batch_id")
    with op.batch_alter_table("saved_styles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_saved_styles_user_id"))
    op.drop_table("saved_styles")
