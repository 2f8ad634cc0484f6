"""Recovery after a crash: the process start that owns each generation, and a heartbeat per start

`generations.boot_id` names the process start (`boots.id`) that opened the job. Each app process
registers one `boots` row and refreshes its heartbeat from the periodic sweep; the sweep of any
process settles the pending jobs of a start that is gone (see services/maintenance.py) instead of
waiting for their holds to expire. Rows written before this migration have no boot and are left
to the stale-hold sweep, as before.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "boots",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("host", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("heartbeat_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("ended_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("boots", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_boots_host"), ["host"], unique=False)
        batch_op.create_index(batch_op.f("ix_boots_heartbeat_at"), ["heartbeat_at"], unique=False)
    with op.batch_alter_table("generations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("boot_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
        batch_op.create_index(batch_op.f("ix_generations_boot_id"), ["boot_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("generations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_generations_boot_id"))
        batch_op.drop_column("boot_id")
    with op.batch_alter_table("boots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_boots_heartbeat_at"))
        batch_op.drop_index(batch_op.f("ix_boots_host"))
    op.drop_table("boots")
