"""The shared-music index kept in the catalog: each clip's sampled fingerprint values (``music_buckets``),
the same-music pairs found through them (``music_links``), and ``clips.music_indexed``, so ``status`` and
``export`` read the groups instead of regrouping every fingerprint (dvmset.music_index).

An existing catalog starts with every clip unindexed; the first ``status`` (or
``vidmusician music-groups --rebuild``) builds the index once.

Revision ID: 0009
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "music_buckets",
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("clip_id", sa.String(length=160), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "clip_id"),
    )
    op.create_index("ix_music_buckets_clip_id", "music_buckets", ["clip_id"])
    op.create_table(
        "music_links",
        sa.Column("clip_a", sa.String(length=160), nullable=False),
        sa.Column("clip_b", sa.String(length=160), nullable=False),
        sa.Column("source_a", sa.String(length=128), nullable=False),
        sa.Column("source_b", sa.String(length=128), nullable=False),
        sa.Column("ber", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("clip_a", "clip_b"),
    )
    op.create_index("ix_music_links_clip_b", "music_links", ["clip_b"])
    with op.batch_alter_table("clips") as batch:
        batch.add_column(sa.Column("music_indexed", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.create_index("ix_clips_music_indexed", ["music_indexed"])


def downgrade() -> None:
    with op.batch_alter_table("clips") as batch:
        batch.drop_index("ix_clips_music_indexed")
        batch.drop_column("music_indexed")
    op.drop_index("ix_music_links_clip_b", "music_links")
    op.drop_table("music_links")
    op.drop_index("ix_music_buckets_clip_id", "music_buckets")
    op.drop_table("music_buckets")
