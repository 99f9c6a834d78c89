"""Clip counts by source query and clip status, as the database keeps them (``clip_counts``, revision 0011):
read, folded, and recounted from scratch to check them.

The triggers of revision 0011 append a row ``(query, status, +n / -n)`` for every change to a clip's status or
source, every clip inserted or deleted, and every change to a source's query, whoever writes it (ORM, Core,
bulk inserts). Reading sums the rows; past ``FOLD_ROWS`` rows a fold replaces the rows it summed with one row
per (query, status), so a read stays a sum over a few thousand rows however many clips there are.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import Connection, func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from dvmset.tables import Clip, ClipCount, Source

log = logging.getLogger(__name__)
FOLD_ROWS = 10_000  # rows past which a read folds them
_FOLD_LOCK = 4711023  # Postgres advisory lock: one fold at a time (another finds it taken and skips)


def by_query(rows: Iterable[tuple[str | None, str, int]]) -> dict[str, dict[str, int]]:
    """{query: {status: clips}} from (query, status, n) rows; a NULL or empty query is "(url)", zeros left out."""
    out: dict[str, dict[str, int]] = {}
    for query, status, n in rows:
        q = out.setdefault(query or "(url)", {})
        q[status] = q.get(status, 0) + int(n)
    return {k: kept for k, v in out.items() if (kept := {s: n for s, n in v.items() if n})}


def kept_counts(conn: Connection) -> tuple[dict[str, dict[str, int]], int]:
    """The kept counts by query and status, and how many rows hold them (a fold is due past FOLD_ROWS)."""
    rows = conn.execute(select(ClipCount.query, ClipCount.status, func.sum(ClipCount.n), func.count())
                        .group_by(ClipCount.query, ClipCount.status)).all()
    return by_query((q, s, n) for q, s, n, _ in rows), sum(r[3] for r in rows)


def recount_clips(conn: Connection) -> dict[str, dict[str, int]]:
    """The counts by query and status from every clip (what ``kept_counts`` must equal; a full scan)."""
    return by_query(conn.execute(select(Source.query, Clip.status, func.count())
                                 .join(Clip, Clip.source_id == Source.id)
                                 .group_by(Source.query, Clip.status)).all())


def fold(engine: Engine) -> bool:
    """Replace the count rows with their sums by (query, status), in one transaction; exactly the rows summed
    are deleted, so rows appended meanwhile are kept. False when another fold holds it (Postgres) or the
    catalog cannot be written (a read-only SQLite file): the counts stay right, only unfolded."""
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                if not conn.scalar(text(f"SELECT pg_try_advisory_xact_lock({_FOLD_LOCK})")):
                    return False
                # one statement, one snapshot: the rows it deletes are the rows it sums
                conn.execute(text("WITH gone AS (DELETE FROM clip_counts RETURNING query, status, n) "
                                  "INSERT INTO clip_counts (query, status, n) SELECT query, status, sum(n) "
                                  "FROM gone GROUP BY query, status HAVING sum(n) <> 0"))
            else:
                if conn.dialect.name == "sqlite":
                    conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock first: no writer in between
                top = conn.scalar(select(func.max(ClipCount.id)))
                if top is None:
                    return True
                conn.execute(text("INSERT INTO clip_counts (query, status, n) SELECT query, status, sum(n) "
                                  "FROM clip_counts WHERE id <= :top GROUP BY query, status HAVING sum(n) <> 0"),
                             {"top": top})
                conn.execute(text("DELETE FROM clip_counts WHERE id <= :top"), {"top": top})
        return True
    except OperationalError as e:
        log.warning("clip counts not folded (%s); they stay right, only slower to read", e.orig)
        return False
