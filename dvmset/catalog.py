"""Open the catalog: SQLite in WAL mode by default, any SQLAlchemy URL (Postgres) when given."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import create_engine, event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from dvmset.tables import Base, Clip, Source


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001 - DBAPI connection
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


class Catalog:
    """A handle on the catalog database; create one per process and share it."""

    def __init__(self, url: str) -> None:
        self.url = url
        kwargs: dict = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        Base.metadata.create_all(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success and rolled back on error."""
        with self._sessions() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    def counts(self) -> dict:
        """Counts by status for sources and clips, and clip counts by query and status."""
        with self.session() as s:
            sources = dict(s.execute(select(Source.status, func.count()).group_by(Source.status)).all())
            clips = dict(s.execute(select(Clip.status, func.count()).group_by(Clip.status)).all())
            by_query: dict[str, dict[str, int]] = {}
            rows = s.execute(
                select(Source.query, Clip.status, func.count())
                .join(Clip, Clip.source_id == Source.id)
                .group_by(Source.query, Clip.status)
            ).all()
            for query, status, n in rows:
                by_query.setdefault(query or "(url)", {})[status] = n
        return {"sources": sources, "clips": clips, "clips_by_query": by_query}

    def dispose(self) -> None:
        self.engine.dispose()
