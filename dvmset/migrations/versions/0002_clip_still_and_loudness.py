"""Clips: the still-picture seconds and the clip stage's loudness record (gain, limiting, true peak).

``static_ratio`` stays (now ``still_s / duration_s``); clips made before this revision keep NULL in
the new columns until they are curated again.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS = ("still_s", "true_peak_dbtp", "clip_gain_db", "limiting_db")


def upgrade() -> None:
    with op.batch_alter_table("clips") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("clips") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
