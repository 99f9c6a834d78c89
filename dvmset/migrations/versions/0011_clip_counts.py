"""Clip counts by source query and clip status kept by the database (issue 23): ``status`` read them by
joining every clip to its source (~2.7 us a clip, ~3.9 s at 1 M clips); now it sums ``clip_counts``.

Design: append-only. Triggers on ``clips`` (after insert; after an update that changes ``status`` or
``source_id``; after delete) and on ``sources`` (after an update that changes ``query``: the source's clips move
to the new query) insert rows ``(query, status, +n / -n)``; they never update a row. ``status`` reads
``sum(n)`` by (query, status) and, past ``dvmset.clip_counts.FOLD_ROWS`` rows, folds them: one statement on
Postgres deletes the rows its snapshot sees and inserts their sums (exactly the rows it summed; a second folder
skips, an advisory lock), under SQLite's write lock on SQLite. Why not one counter row per (query, status),
updated in place: on Postgres every review decision changes a clip's status, and 32 annotators' transactions
would queue on the row lock of the one ("query", "pending_review") counter until each commits (issue 19 took
the decision path off a global lock); inserts of new rows take no lock anyone else waits on.

Concurrency on Postgres (READ COMMITTED): a clip trigger reads its source's query with no lock; a query change
first locks the source's clips (FOR UPDATE), so it waits for status changes in flight and counts them as
committed, and a status change that waits on it reads the new query (each trigger statement takes a new
snapshot). A clip insert locks its source row FOR SHARE so a concurrent query change cannot miss it (inserts
are curation's, not the review's hot path). SQLite has one writer at a time.

The existing clips are counted into the table here.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_SQLITE = [
    """CREATE TRIGGER clip_counts_insert AFTER INSERT ON clips BEGIN
         INSERT INTO clip_counts (query, status, n)
         VALUES ((SELECT query FROM sources WHERE id = NEW.source_id), NEW.status, 1);
       END""",
    """CREATE TRIGGER clip_counts_update AFTER UPDATE OF status, source_id ON clips
       WHEN OLD.status IS NOT NEW.status OR OLD.source_id IS NOT NEW.source_id BEGIN
         INSERT INTO clip_counts (query, status, n)
         VALUES ((SELECT query FROM sources WHERE id = OLD.source_id), OLD.status, -1);
         INSERT INTO clip_counts (query, status, n)
         VALUES ((SELECT query FROM sources WHERE id = NEW.source_id), NEW.status, 1);
       END""",
    """CREATE TRIGGER clip_counts_delete AFTER DELETE ON clips BEGIN
         INSERT INTO clip_counts (query, status, n)
         VALUES ((SELECT query FROM sources WHERE id = OLD.source_id), OLD.status, -1);
       END""",
    """CREATE TRIGGER clip_counts_source_query AFTER UPDATE OF query ON sources
       WHEN OLD.query IS NOT NEW.query BEGIN
         INSERT INTO clip_counts (query, status, n)
         SELECT OLD.query, status, -count(*) FROM clips WHERE source_id = OLD.id GROUP BY status;
         INSERT INTO clip_counts (query, status, n)
         SELECT NEW.query, status, count(*) FROM clips WHERE source_id = NEW.id GROUP BY status;
       END""",
]

_POSTGRES = [
    """CREATE FUNCTION clip_counts_on_clips() RETURNS trigger LANGUAGE plpgsql AS $$
       DECLARE q varchar;
       BEGIN
         IF TG_OP = 'UPDATE' OR TG_OP = 'DELETE' THEN
           SELECT query INTO q FROM sources WHERE id = OLD.source_id;
           INSERT INTO clip_counts (query, status, n) VALUES (q, OLD.status, -1);
         END IF;
         IF TG_OP = 'INSERT' THEN
           SELECT query INTO q FROM sources WHERE id = NEW.source_id FOR SHARE;
           INSERT INTO clip_counts (query, status, n) VALUES (q, NEW.status, 1);
         ELSIF TG_OP = 'UPDATE' THEN
           SELECT query INTO q FROM sources WHERE id = NEW.source_id;
           INSERT INTO clip_counts (query, status, n) VALUES (q, NEW.status, 1);
         END IF;
         RETURN NULL;
       END $$""",
    """CREATE TRIGGER clip_counts_insert AFTER INSERT ON clips
       FOR EACH ROW EXECUTE FUNCTION clip_counts_on_clips()""",
    """CREATE TRIGGER clip_counts_update AFTER UPDATE OF status, source_id ON clips FOR EACH ROW
       WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.source_id IS DISTINCT FROM NEW.source_id)
       EXECUTE FUNCTION clip_counts_on_clips()""",
    """CREATE TRIGGER clip_counts_delete AFTER DELETE ON clips
       FOR EACH ROW EXECUTE FUNCTION clip_counts_on_clips()""",
    """CREATE FUNCTION clip_counts_on_source_query() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         PERFORM 1 FROM clips WHERE source_id = OLD.id FOR UPDATE;
         INSERT INTO clip_counts (query, status, n)
         SELECT OLD.query, status, -count(*) FROM clips WHERE source_id = OLD.id GROUP BY status;
         INSERT INTO clip_counts (query, status, n)
         SELECT NEW.query, status, count(*) FROM clips WHERE source_id = NEW.id GROUP BY status;
         RETURN NULL;
       END $$""",
    """CREATE TRIGGER clip_counts_source_query AFTER UPDATE OF query ON sources FOR EACH ROW
       WHEN (OLD.query IS DISTINCT FROM NEW.query) EXECUTE FUNCTION clip_counts_on_source_query()""",
]


def upgrade() -> None:
    op.create_table(
        "clip_counts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("query", sa.String(length=256), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("INSERT INTO clip_counts (query, status, n) SELECT s.query, c.status, count(*) "
               "FROM clips c JOIN sources s ON s.id = c.source_id GROUP BY s.query, c.status")
    for stmt in _POSTGRES if op.get_bind().dialect.name == "postgresql" else _SQLITE:
        op.execute(stmt)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER clip_counts_source_query ON sources")
        for name in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER clip_counts_{name} ON clips")
        op.execute("DROP FUNCTION clip_counts_on_source_query()")
        op.execute("DROP FUNCTION clip_counts_on_clips()")
    else:
        op.execute("DROP TRIGGER clip_counts_source_query")
        for name in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER clip_counts_{name}")
    op.drop_table("clip_counts")
