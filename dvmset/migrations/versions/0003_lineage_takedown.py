"""Lineage and takedowns: where each clip came from and how it was made, its processed music's checksum
and fingerprint, whether it was rebuilt from a release, and takedown audit records.

Clips made before this revision keep NULL lineage until they are curated again.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)
SOURCE_COLUMNS = (
    ("extractor", sa.String(length=64)),
    ("upload_date", sa.String(length=16)),
    ("taken_down_at", TZ),
    ("takedown_reason", sa.Text()),
)
CLIP_COLUMNS = (
    ("lineage", sa.JSON()),
    ("music_sha256", sa.String(length=64)),
    ("music_fingerprint", sa.Text()),
    ("origin", sa.String(length=32)),
    ("taken_down_at", TZ),
    ("takedown_reason", sa.Text()),
)


def upgrade() -> None:
    with op.batch_alter_table("sources") as batch:
        for name, type_ in SOURCE_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))
    with op.batch_alter_table("clips") as batch:
        for name, type_ in CLIP_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))
    op.create_table(
        "takedowns",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("video_id", sa.String(length=128), nullable=False),
        sa.Column("clip_id", sa.String(length=160), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("clip_ids", sa.JSON(), nullable=True),
        sa.Column("requested_at", TZ, nullable=False),
        sa.Column("finished_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_takedowns_video_id", "takedowns", ["video_id"])


def downgrade() -> None:
    op.drop_index("ix_takedowns_video_id", table_name="takedowns")
    op.drop_table("takedowns")
    with op.batch_alter_table("clips") as batch:
        for name, _ in reversed(CLIP_COLUMNS):
            batch.drop_column(name)
    with op.batch_alter_table("sources") as batch:
        for name, _ in reversed(SOURCE_COLUMNS):
            batch.drop_column(name)
