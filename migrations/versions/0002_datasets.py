"""datasets: validation bookkeeping, soft delete, per-project hash unique among live datasets

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

LIVE = sa.text("deleted_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("upload_key", sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column("validation_attempts", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("validation_requested_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("validation_started_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("validated_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.drop_constraint("uq_datasets_project_hash", type_="unique")
        batch_op.create_index("ix_datasets_state", ["state"], unique=False)
    op.create_index(
        "uq_datasets_project_hash_live",
        "datasets",
        ["project_id", "content_hash"],
        unique=True,
        postgresql_where=LIVE,
        sqlite_where=LIVE,
    )


def downgrade() -> None:
    op.drop_index("uq_datasets_project_hash_live", table_name="datasets")
    op.execute("DELETE FROM datasets WHERE deleted_at IS NOT NULL")
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.drop_index("ix_datasets_state")
        batch_op.create_unique_constraint("uq_datasets_project_hash", ["project_id", "content_hash"])
        for column in (
            "deleted_at",
            "validated_at",
            "validation_started_at",
            "validation_requested_at",
            "validation_attempts",
            "upload_key",
        ):
            batch_op.drop_column(column)
