"""Roles, gold clips and adjudication: an annotator is an "annotator" or a "lead"; leads mark gold clips
(a known verdict, mixed into queues at ``review_settings.gold_rate``), annotators' answers on them are
scored apart from the votes, and a lead's verdict settles a clip whose verdicts disagree.

Annotators made before this revision are annotators (not leads); no clip is gold.

Revision ID: 0007
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("annotators") as batch:
        batch.add_column(sa.Column("role", sa.String(length=16), nullable=False, server_default="annotator"))
    with op.batch_alter_table("review_settings") as batch:
        batch.add_column(sa.Column("gold_rate", sa.Float(), nullable=True))
    op.create_table(
        "gold_clips",
        sa.Column("clip_id", sa.String(length=160), sa.ForeignKey("clips.id"), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("added_by", sa.Integer(), sa.ForeignKey("annotators.id"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("clip_id"),
    )
    op.create_table(
        "gold_answers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("clip_id", sa.String(length=160), sa.ForeignKey("clips.id"), nullable=False),
        sa.Column("annotator_id", sa.Integer(), sa.ForeignKey("annotators.id"), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=True),
        sa.Column("seconds_spent", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("undone_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_gold_answers_clip_id", "gold_answers", ["clip_id"])
    op.create_index("ix_gold_answers_annotator_clip", "gold_answers", ["annotator_id", "clip_id"])
    op.create_table(
        "adjudications",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("clip_id", sa.String(length=160), sa.ForeignKey("clips.id"), nullable=False),
        sa.Column("lead_id", sa.Integer(), sa.ForeignKey("annotators.id"), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_adjudications_clip_id", "adjudications", ["clip_id"])


def downgrade() -> None:
    op.drop_index("ix_adjudications_clip_id", table_name="adjudications")
    op.drop_table("adjudications")
    op.drop_index("ix_gold_answers_annotator_clip", table_name="gold_answers")
    op.drop_index("ix_gold_answers_clip_id", table_name="gold_answers")
    op.drop_table("gold_answers")
    op.drop_table("gold_clips")
    with op.batch_alter_table("review_settings") as batch:
        batch.drop_column("gold_rate")
    with op.batch_alter_table("annotators") as batch:
        batch.drop_column("role")
