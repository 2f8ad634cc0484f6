"""Reference images and edits (issue #11)

- `generations.reference_images`: what the job was made from, in order: for each reference the
  stored variant (`ref0.jpg`, `ref1.png`, … under the generation's own storage key, so it is
  served by the owner-checked image route and deleted and purged with the generation), the
  uploaded file's shown name, its size after cleaning, and where it came from ("upload", or the
  id of the user's own generation it was taken from). NULL for a plain generation.
- `generations.masked`: the job was an edit of a painted region of the first reference.

Revision ID: 0006
Revises: 0005 (the integrator re-chains)
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("generations", sa.Column("reference_images", sa.JSON(), nullable=True))
    op.add_column("generations", sa.Column("masked", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+), as in 0005: no batch rebuild of a table
    # that others reference.
    op.drop_column("generations", "masked")
    op.drop_column("generations", "reference_images")
