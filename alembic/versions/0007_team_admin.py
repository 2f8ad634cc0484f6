"""Team mode and the admin console

- `invites`: sign-up invitations (token hashes; single-use, expiring, optionally bound to an email).
- `fulfillments.amount_cents`, `fulfillments.currency`: what Stripe says was paid, recorded at
  fulfilment (the admin console's revenue).
- The "team" credit kind (MONTHLY_ALLOWANCE_CREDITS) is spent first: `ledger_spend_rank` is
  replaced to match services.ledger.SPEND_ORDER.

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_str = sqlmodel.sql.sqltypes.AutoString
_when = sqlmodel.sql.sqltypes.UTCDateTime

SPEND_RANK = """
CREATE OR REPLACE FUNCTION ledger_spend_rank(kind varchar) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE kind WHEN 'team' THEN 0 WHEN 'subscription' THEN 1 WHEN 'trial' THEN 2 WHEN 'admin' THEN 3
                   WHEN 'pack' THEN 4 ELSE 5 END
$$
"""

OLD_SPEND_RANK = """
CREATE OR REPLACE FUNCTION ledger_spend_rank(kind varchar) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE kind WHEN 'subscription' THEN 0 WHEN 'trial' THEN 1 WHEN 'admin' THEN 2 WHEN 'pack' THEN 3 ELSE 4 END
$$
"""


def upgrade() -> None:
    op.create_table(
        "invites",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", _str(length=64), nullable=False),
        sa.Column("email", _str(length=320), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("expires_at", _when(), nullable=False),
        sa.Column("used_at", _when(), nullable=True),
        sa.Column("used_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["used_by"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("invites", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_invites_token_hash"), ["token_hash"], unique=True)

    # Plain ALTER TABLE ... ADD COLUMN on both databases (no table rebuild on SQLite).
    op.add_column("fulfillments", sa.Column("amount_cents", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("fulfillments", sa.Column("currency", _str(length=8), nullable=True))

    if op.get_bind().dialect.name == "postgresql":
        op.execute(SPEND_RANK)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(OLD_SPEND_RANK)
    op.drop_column("fulfillments", "currency")
    op.drop_column("fulfillments", "amount_cents")
    op.drop_table("invites")
