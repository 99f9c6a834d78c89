"""Review v2, the annotator's side: spans excluded on an accept and the listening time on each decision,
and when each lease was handed out (listening time is measured from it; an undo right after a skip
finds the skip by it).

Rows written before this revision have no spans (the whole clip counts), no listening time and no
hand-out time (a lease without one is treated as handed out when it is next renewed).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("spans", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("listened_s", sa.Float(), nullable=True))
    with op.batch_alter_table("leases") as batch:
        batch.add_column(sa.Column("handed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("leases") as batch:
        batch.drop_column("handed_at")
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("listened_s")
        batch.drop_column("spans")
