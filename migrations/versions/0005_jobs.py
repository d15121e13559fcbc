"""jobs: device routing, owning message id, webhooks and their delivery log, the state-machine trigger

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28

The trigger refuses, on Postgres and SQLite alike, any update of a job row whose old state is terminal
and any change of state that the state machine does not allow (the same table as
``app/services/job_states.py``; it is copied here so this migration stays as it was written).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
TERMINAL = "('succeeded', 'failed', 'cancelled')"
ALLOWED = (
    "('queued>running', 'queued>cancelled', 'queued>failed', "
    "'running>succeeded', 'running>failed', 'running>cancelling', 'running>cancelled', 'running>queued', "
    "'cancelling>cancelled', 'cancelling>failed', 'cancelling>succeeded')"
)
TERMINAL_MESSAGE = "job is in a terminal state (succeeded, failed or cancelled); it cannot change"
ILLEGAL_MESSAGE = "illegal job state transition"

PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION tl_jobs_state_guard() RETURNS trigger AS $$
BEGIN
    IF OLD.state IN {TERMINAL} THEN
        RAISE EXCEPTION '{TERMINAL_MESSAGE}: job % is %', OLD.id, OLD.state USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.state <> OLD.state AND (OLD.state || '>' || NEW.state) NOT IN {ALLOWED} THEN
        RAISE EXCEPTION '{ILLEGAL_MESSAGE}: job % from % to %', OLD.id, OLD.state, NEW.state
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;
"""


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("device", sa.String(length=8), nullable=False, server_default="cpu"))
        batch_op.add_column(sa.Column("task_id", sa.String(length=64), nullable=True))

    op.create_table(
        "webhooks",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("webhooks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhooks_project_id"), ["project_id"], unique=False)

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("webhook_id", sa.String(length=32), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=True),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("state IN ('pending', 'delivered', 'failed')", name="ck_webhook_deliveries_state"),
        sa.ForeignKeyConstraint(["webhook_id"], ["webhooks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhook_deliveries_webhook_id"), ["webhook_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_webhook_deliveries_state"), ["state"], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute(
            "CREATE TRIGGER tl_jobs_state_guard BEFORE UPDATE ON jobs "
            "FOR EACH ROW EXECUTE FUNCTION tl_jobs_state_guard()"
        )
    else:
        op.execute(
            f"CREATE TRIGGER tl_jobs_terminal_guard BEFORE UPDATE ON jobs FOR EACH ROW "
            f"WHEN OLD.state IN {TERMINAL} BEGIN SELECT RAISE(ABORT, '{TERMINAL_MESSAGE}'); END"
        )
        op.execute(
            f"CREATE TRIGGER tl_jobs_transition_guard BEFORE UPDATE OF state ON jobs FOR EACH ROW "
            f"WHEN OLD.state NOT IN {TERMINAL} AND NEW.state <> OLD.state "
            f"AND (OLD.state || '>' || NEW.state) NOT IN {ALLOWED} "
            f"BEGIN SELECT RAISE(ABORT, '{ILLEGAL_MESSAGE}'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS tl_jobs_state_guard ON jobs")
        op.execute("DROP FUNCTION IF EXISTS tl_jobs_state_guard()")
    else:
        op.execute("DROP TRIGGER IF EXISTS tl_jobs_terminal_guard")
        op.execute("DROP TRIGGER IF EXISTS tl_jobs_transition_guard")
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_state"))
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_webhook_id"))
    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("webhooks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhooks_project_id"))
    op.drop_table("webhooks")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("task_id")
        batch_op.drop_column("device")
