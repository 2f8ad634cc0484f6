"""Sign-in with OpenID Connect providers, email verification, one trial per person, device labels

- `user_identities`: provider accounts (issuer + subject) linked to users.
- `oidc_logins`: sign-ins in progress (state, nonce, PKCE verifier kept server-side).
- `email_verifications`: mailed verification links (token hashes).
- `trial_claims`: the normalised emails and provider subjects that have had the free trial; no
  foreign key, so a claim outlives the account. Backfilled from the trial grants already made.
- `users.email_verified_at`, `user_sessions.device`.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_str = sqlmodel.sql.sqltypes.AutoString
_when = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "user_identities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("provider", _str(length=64), nullable=False),
        sa.Column("issuer", _str(length=255), nullable=False),
        sa.Column("subject", _str(length=255), nullable=False),
        sa.Column("email", _str(length=320), nullable=True),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("last_used_at", _when(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("issuer", "subject", name="uq_user_identities_issuer_subject"),
    )
    with op.batch_alter_table("user_identities", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_identities_user_id"), ["user_id"], unique=False)

    op.create_table(
        "oidc_logins",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("state_hash", _str(length=64), nullable=False),
        sa.Column("browser_hash", _str(length=64), nullable=False),
        sa.Column("provider", _str(length=64), nullable=False),
        sa.Column("nonce", _str(length=128), nullable=False),
        sa.Column("code_verifier", _str(length=128), nullable=False),
        sa.Column("next_url", _str(length=2000), nullable=False),
        sa.Column("link_user_id", sa.Integer(), nullable=True),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("expires_at", _when(), nullable=False),
        sa.Column("used_at", _when(), nullable=True),
        sa.ForeignKeyConstraint(["link_user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("oidc_logins", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oidc_logins_state_hash"), ["state_hash"], unique=True)
        batch_op.create_index(batch_op.f("ix_oidc_logins_created_at"), ["created_at"], unique=False)

    op.create_table(
        "email_verifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("email", _str(length=320), nullable=False),
        sa.Column("token_hash", _str(length=64), nullable=False),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("expires_at", _when(), nullable=False),
        sa.Column("used_at", _when(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("email_verifications", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_email_verifications_user_id"), ["user_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_email_verifications_token_hash"), ["token_hash"], unique=True)

    op.create_table(
        "trial_claims",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("claim_key", _str(length=600), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("created_at", _when(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("trial_claims", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_trial_claims_claim_key"), ["claim_key"], unique=True)

    # Plain ALTER TABLE ... ADD COLUMN on both databases (no table rebuild on SQLite).
    op.add_column("users", sa.Column("email_verified_at", _when(), nullable=True))
    op.add_column("user_sessions", sa.Column("device", _str(length=100), nullable=True))

    _backfill_trial_claims()


def _backfill_trial_claims() -> None:
    """Accounts that already had their trial: their normalised email is claimed."""
    from services.accounts.trials import email_claim_key

    conn = op.get_bind()
    rows = conn.execute(sa.text(
        "SELECT u.id, u.email, g.created_at FROM users u JOIN credit_grants g "
        "ON g.user_id = u.id AND g.source_ref = 'trial:' || CAST(u.id AS VARCHAR(20)) ORDER BY u.id")).all()
    seen: set[str] = set()
    for user_id, email, created_at in rows:
        key = email_claim_key(email)
        if key in seen:
            continue
        seen.add(key)
        conn.execute(sa.text("INSERT INTO trial_claims (claim_key, user_id, created_at) VALUES (:k, :u, :t)"),
                     {"k": key, "u": user_id, "t": created_at})


def downgrade() -> None:
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+): a batch rebuild of `users` would drop the
    # table, and with foreign keys on, SQLite would cascade that to every row that references it.
    op.drop_column("user_sessions", "device")
    op.drop_column("users", "email_verified_at")
    op.drop_table("trial_claims")
    op.drop_table("email_verifications")
    op.drop_table("oidc_logins")
    op.drop_table("user_identities")
