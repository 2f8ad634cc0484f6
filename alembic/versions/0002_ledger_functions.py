"""PostgreSQL: the ledger's reserve and capture as one function call each

The hot path of the ledger (a hold per generation, its capture once the image is stored) runs
as one PL/pgSQL function per operation on PostgreSQL: one round trip instead of about six, in
its own transaction or inside the caller's. They follow services/ledger/ step for step:
lock the user's row, book due expiries in spend order, debit the buckets in spend order with a
conditional UPDATE, insert the hold and its ledger entry; capture settles a pending hold with
one conditional UPDATE and books the charge. SQLite keeps the Python implementation; the same
tests (concurrency, the Hypothesis state machine, reconcile) run against both.

A later migration that changes credit_grants, holds or ledger_entries must keep these
functions in step (CREATE OR REPLACE them in that migration).

Revision ID: 0002
Revises: 0001
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Both functions answer one row: outcome, available (set only when the credits are short), then
# the hold's columns in table order (services.ledger reads them with one helper).

# Spend order (services.ledger.SPEND_ORDER): the soonest-expiring kind first.
SPEND_RANK = """
CREATE OR REPLACE FUNCTION ledger_spend_rank(kind varchar) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE kind WHEN 'subscription' THEN 0 WHEN 'trial' THEN 1 WHEN 'admin' THEN 2 WHEN 'pack' THEN 3 ELSE 4 END
$$
"""

RESERVE = """
CREATE OR REPLACE FUNCTION ledger_reserve(
    p_user integer, p_amount integer, p_job varchar, p_now timestamptz, p_expires timestamptz,
    OUT outcome text, OUT available integer, OUT hold_id integer, OUT hold_user integer,
    OUT hold_job varchar, OUT hold_amount integer, OUT hold_status varchar, OUT hold_split json,
    OUT hold_created timestamptz, OUT hold_expires timestamptz, OUT hold_settled timestamptz,
    OUT hold_reason varchar)
LANGUAGE plpgsql AS $$
DECLARE
  h holds;
  b record;
  bal integer := 0;
  live_ids integer[] := '{}';
  live_left integer[] := '{}';
  expired_total integer := 0;
  left_ integer;
  n integer;
  parts jsonb := '{}';
  i integer;
BEGIN
  PERFORM 1 FROM users WHERE id = p_user FOR NO KEY UPDATE;
  IF NOT FOUND THEN outcome := 'no_user'; RETURN; END IF;
  SELECT * INTO h FROM holds WHERE job_id = p_job;
  IF NOT FOUND THEN
    FOR b IN SELECT id, remaining, expires_at FROM credit_grants
             WHERE user_id = p_user AND remaining > 0 ORDER BY ledger_spend_rank(kind), id LOOP
      bal := bal + b.remaining;
      IF b.expires_at IS NOT NULL AND b.expires_at <= p_now THEN
        expired_total := expired_total + b.remaining;
      ELSE
        live_ids := live_ids || b.id;
        live_left := live_left || b.remaining;
      END IF;
    END LOOP;
    IF bal - expired_total < p_amount THEN
      outcome := 'insufficient'; available := bal - expired_total; RETURN;
    END IF;
    IF expired_total > 0 THEN  -- book due expiries, in spend order, before the hold
      FOR b IN SELECT id, remaining FROM credit_grants
               WHERE user_id = p_user AND remaining > 0 AND expires_at <= p_now
               ORDER BY ledger_spend_rank(kind), id LOOP
        bal := bal - b.remaining;
        INSERT INTO ledger_entries (user_id, kind, delta, held_delta, balance_after, grant_id, created_at)
        VALUES (p_user, 'expiry', -b.remaining, 0, bal, b.id, p_now);
        UPDATE credit_grants SET remaining = 0 WHERE id = b.id;
      END LOOP;
    END IF;
    left_ := p_amount;
    FOR i IN 1 .. coalesce(array_length(live_ids, 1), 0) LOOP
      EXIT WHEN left_ <= 0;
      n := least(live_left[i], left_);
      UPDATE credit_grants SET remaining = remaining - n WHERE id = live_ids[i] AND remaining >= n;
      IF NOT FOUND THEN
        RAISE EXCEPTION 'credits changed during a reservation' USING ERRCODE = 'serialization_failure';
      END IF;
      parts := parts || jsonb_build_object(live_ids[i]::text, n);
      left_ := left_ - n;
    END LOOP;
    INSERT INTO holds (user_id, job_id, amount, status, split, created_at, expires_at)
    VALUES (p_user, p_job, p_amount, 'pending', parts::json, p_now, p_expires)
    RETURNING * INTO h;
    INSERT INTO ledger_entries (user_id, kind, delta, held_delta, balance_after, hold_id, idempotency_key, created_at)
    VALUES (p_user, 'hold', 0, p_amount, bal - p_amount, h.id, 'hold:' || p_job, p_now);
    outcome := 'held';
  ELSE
    outcome := 'existing';
  END IF;
  available := NULL;
  hold_id := h.id; hold_user := h.user_id; hold_job := h.job_id; hold_amount := h.amount;
  hold_status := h.status; hold_split := h.split; hold_created := h.created_at;
  hold_expires := h.expires_at; hold_settled := h.settled_at; hold_reason := h.reason;
END
$$
"""

CAPTURE = """
CREATE OR REPLACE FUNCTION ledger_capture(
    p_hold integer, p_now timestamptz,
    OUT outcome text, OUT available integer, OUT hold_id integer, OUT hold_user integer,
    OUT hold_job varchar, OUT hold_amount integer, OUT hold_status varchar, OUT hold_split json,
    OUT hold_created timestamptz, OUT hold_expires timestamptz, OUT hold_settled timestamptz,
    OUT hold_reason varchar)
LANGUAGE plpgsql AS $$
DECLARE
  h holds;
BEGIN
  PERFORM 1 FROM holds JOIN users ON users.id = holds.user_id WHERE holds.id = p_hold
    FOR NO KEY UPDATE OF users;
  IF NOT FOUND THEN outcome := 'not_found'; RETURN; END IF;
  UPDATE holds SET status = 'captured', reason = NULL, settled_at = p_now
  WHERE id = p_hold AND status = 'pending' RETURNING * INTO h;
  IF FOUND THEN
    INSERT INTO ledger_entries (user_id, kind, delta, held_delta, balance_after, hold_id, idempotency_key, created_at)
    VALUES (h.user_id, 'capture', -h.amount, -h.amount,
            coalesce((SELECT balance_after FROM ledger_entries WHERE user_id = h.user_id ORDER BY id DESC LIMIT 1), 0),
            h.id, 'settle:' || h.job_id, p_now);
    outcome := 'captured';
  ELSE
    SELECT * INTO h FROM holds WHERE id = p_hold;
    outcome := 'unchanged';
  END IF;
  hold_id := h.id; hold_user := h.user_id; hold_job := h.job_id; hold_amount := h.amount;
  hold_status := h.status; hold_split := h.split; hold_created := h.created_at;
  hold_expires := h.expires_at; hold_settled := h.settled_at; hold_reason := h.reason;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for statement in (SPEND_RANK, RESERVE, CAPTURE):
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION IF EXISTS ledger_capture(integer, timestamptz)")
    op.execute("DROP FUNCTION IF EXISTS ledger_reserve(integer, integer, varchar, timestamptz, timestamptz)")
    op.execute("DROP FUNCTION IF EXISTS ledger_spend_rank(varchar)")
