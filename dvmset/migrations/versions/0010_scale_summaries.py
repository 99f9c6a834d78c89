"""Catalog summaries read instead of recomputed (issue 23): a covering index on clips (source, status) so
``status``'s counts by query and status read no clip row; the agreement summary (dvmset.agreement_summary):
``agreement_verdicts`` (the live verdicts it counted), ``agreement_counts`` (its counters) and
``decisions.summarised``. Existing decisions start unsummarised: the first agreement report counts them once.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_clips_source_status", "clips", ["source_id", "status"])
    op.create_table(
        "agreement_verdicts",
        sa.Column("clip_id", sa.String(length=160), nullable=False),
        sa.Column("annotator_id", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.Column("seconds_spent", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("clip_id", "annotator_id"),
    )
    op.create_index("ix_agreement_verdicts_annotator_seconds", "agreement_verdicts", ["annotator_id", "seconds_spent"])
    op.create_table(
        "agreement_counts",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("total", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("summarised", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.create_index("ix_decisions_summarised", ["summarised"])


def downgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.drop_index("ix_decisions_summarised")
        batch.drop_column("summarised")
    op.drop_table("agreement_counts")
    op.drop_index("ix_agreement_verdicts_annotator_seconds", "agreement_verdicts")
    op.drop_table("agreement_verdicts")
    op.drop_index("ix_clips_source_status", "clips")
