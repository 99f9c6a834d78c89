"""Review settings: the review policy (overlap, lease and skip seconds) and the review server's URL live
in the catalog, so every review server follows one policy and login links name the right port.

A catalog without a row follows the defaults (overlap 1, 600 s leases), as before this revision.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_settings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("overlap", sa.Integer(), nullable=False),
        sa.Column("lease_s", sa.Float(), nullable=False),
        sa.Column("skip_s", sa.Float(), nullable=False),
        sa.Column("server_url", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("review_settings")
