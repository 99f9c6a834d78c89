"""Open the catalog: SQLite in WAL mode by default, any SQLAlchemy URL (Postgres) when given.

The schema is versioned with Alembic (``dvmset/migrations``). Opening a catalog creates a new one at
the newest revision; one made before migrations existed is stamped when its schema matches; any other
version is refused with what to do (``vidmusician db upgrade``), never altered behind the user's back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import Connection, create_engine, event, func, inspect, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from dvmset import clip_counts
from dvmset.tables import Base, Clip, Source


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001 - DBAPI connection
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


class CatalogSchemaError(RuntimeError):
    """The catalog's schema is not the one this version uses; the message says what to do."""

    whole_run = True  # no item can be recorded (pipeline.errors policy)


def _alembic(conn: Connection | None = None):  # noqa: ANN202 - alembic.config.Config
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "dvmset:migrations")
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic()).get_current_head()


def _revision(conn: Connection) -> str | None:
    from alembic.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def _serialise(conn: Connection) -> None:
    """Schema changes one process at a time, in one transaction: Postgres takes an advisory lock; SQLite
    takes the write lock at once (the sqlite3 driver would otherwise open no transaction before DDL, so
    two processes creating a new catalog together would interleave their CREATE TABLEs)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(4711007)"))
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def check_schema(engine: Engine) -> str:
    """Create a new catalog at the head revision, stamp a pre-migration one that matches, refuse the rest."""
    from alembic import command

    head = head_revision()
    with engine.connect() as conn:  # the usual case, read-only: no lock taken
        if _revision(conn) == head:
            return head
    with engine.begin() as conn:
        _serialise(conn)
        current = _revision(conn)  # again, under the lock: another process may have just made it
        if current == head:
            return head
        if current is None and not inspect(conn).has_table("sources"):
            command.upgrade(_alembic(conn), "head")  # a new catalog
            return head
        if current is None:  # made by create_all before migrations existed
            _adopt_unversioned(conn)
            return head
    where = engine.url.render_as_string(hide_password=True)
    if current in _known_revisions():
        raise CatalogSchemaError(f"the catalog at {where} has schema {current}; this version uses {head}: back it "
                                 "up, then run `vidmusician db upgrade` (with the same --root / VIDMUSICIAN_DB)")
    raise CatalogSchemaError(f"the catalog at {where} has schema {current}, which this version does not know "
                             "(made by a newer vidmusician?): upgrade vidmusician")


def _adopt_unversioned(conn: Connection) -> None:
    """Stamp a catalog made before migrations existed, if its tables are exactly this version's."""
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    if diffs:
        where = conn.engine.url.render_as_string(hide_password=True)
        raise CatalogSchemaError(
            f"the catalog at {where} predates schema versions and differs from this version's tables "
            f"({len(diffs)} differences, e.g. {diffs[0]}): back it up, record the revision its tables match "
            "with `vidmusician db stamp REVISION`, then run `vidmusician db upgrade`")
    command.stamp(_alembic(conn), "head")


def schema_state(current: str | None) -> str:
    """What a catalog at schema ``current`` needs from this version, in words (``db current``)."""
    head = head_revision()
    if current == head:
        return "up to date"
    if current is None:
        return "not versioned: `vidmusician db upgrade` creates or adopts it"
    if current not in _known_revisions():
        return ("made by a newer vidmusician: upgrade vidmusician to use it; `db upgrade` cannot take a catalog "
                "back, and this version refuses to write to it")
    return "run `vidmusician db upgrade`"


def _known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {r.revision for r in ScriptDirectory.from_config(_alembic()).walk_revisions()}


def upgrade_schema(url: str, revision: str = "head") -> tuple[str | None, str | None]:
    """Bring the catalog at ``url`` to ``revision``; returns (before, after)."""
    from alembic import command

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            _serialise(conn)
            before = _revision(conn)
            if before is not None and before not in _known_revisions():
                raise CatalogSchemaError(f"the catalog has schema {before}, which this version does not know "
                                         "(made by a newer vidmusician?): upgrade vidmusician")
            if before is None and inspect(conn).has_table("sources"):
                _adopt_unversioned(conn)  # stamps it, or says why not
            else:
                command.upgrade(_alembic(conn), revision)
            return before, _revision(conn)
    finally:
        engine.dispose()


def stamp_schema(url: str, revision: str) -> None:
    """Record that the catalog at ``url`` is at ``revision`` without changing it (for pre-migration catalogs)."""
    from alembic import command

    if revision not in _known_revisions():
        raise CatalogSchemaError(f"no schema revision {revision!r}; this version knows {sorted(_known_revisions())}")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            _serialise(conn)
            if not inspect(conn).has_table("sources"):
                raise CatalogSchemaError("there is no catalog there to stamp (no tables); "
                                         "`vidmusician db upgrade` creates a new one")
            current = _revision(conn)
            if current is not None and current not in _known_revisions():
                raise CatalogSchemaError(f"the catalog records schema {current}, which this version does not know "
                                         "(made by a newer vidmusician?): upgrade vidmusician; nothing was changed")
            if current is not None:
                raise CatalogSchemaError(f"the catalog already records schema {current}: `db stamp` is only for a "
                                         "catalog made before schema versions; run `vidmusician db upgrade` to migrate "
                                         "it; nothing was changed")
            command.stamp(_alembic(conn), revision)
    finally:
        engine.dispose()


POOL_SIZE = 8  # connections kept open
POOL_OVERFLOW = 32  # opened under load beyond those, closed when returned


class Catalog:
    """A handle on the catalog database; create one per process and share it."""

    def __init__(self, url: str) -> None:
        self.url = url
        # a pool as large as a server's worker threads (AnyIO runs sync routes on 40): a busy review server
        # never waits for a connection (with SQLAlchemy's default, 5 + 10, a 16th request at once waits)
        kwargs: dict = {"pool_size": POOL_SIZE, "max_overflow": POOL_OVERFLOW}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            if ":memory:" in url or url.rstrip("/") in ("sqlite:", "sqlite://"):
                kwargs = {"connect_args": kwargs["connect_args"]}  # one connection per thread (SingletonThreadPool)
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        check_schema(self.engine)
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
        """Counts by status for sources and clips, and clip counts by query and status (kept by the database,
        dvmset.clip_counts; folded here when their rows pile up)."""
        with self.engine.connect() as conn:
            sources = dict(conn.execute(select(Source.status, func.count()).group_by(Source.status)).all())
            clips = dict(conn.execute(select(Clip.status, func.count()).group_by(Clip.status)).all())
        return {"sources": sources, "clips": clips, "clips_by_query": self.counts_by_query()}

    def counts_by_query(self) -> dict[str, dict[str, int]]:
        """Clip counts by query and status, as :meth:`counts` gives them, without its counts of every source and
        clip row (a second at a million sources)."""
        with self.engine.connect() as conn:
            by_query, rows = clip_counts.kept_counts(conn)
        if rows > clip_counts.FOLD_ROWS:
            clip_counts.fold(self.engine)
        return by_query

    def dispose(self) -> None:
        self.engine.dispose()
