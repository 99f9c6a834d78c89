"""An export's per-clip working set in a scratch SQLite file beside it, so an export holds a batch, not the
catalog (issue 23: memory bounded by a constant at 1 M clips).

Which clips are accepted, their sources, queries and recorded splits, the music groups' units, the planned
split, whether a clip is exported (it has its file and, once features exist, its features) and which info zip
and release part it goes in: one row per clip or source on disk, read back sorted a batch at a time. The
split is planned one query at a time with :func:`dvmset.export._split_query` (what :func:`plan_split` does for
a list of items, with the same result), so what is held is the largest query's sources. The file is named as
a temp file of the export folder (``.plan.*.part.sqlite``): a killed export's is swept by the next writer.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import pyarrow.parquet as pq
from sqlalchemy import select

from dvmset.batches import batches
from dvmset.catalog import Catalog
from dvmset.info_zips import video_bucket
from dvmset.music_groups import MusicGroup
from dvmset.records import SPLITS, VALID, ClipStatus
from dvmset.tables import Clip, Source

BATCH = 1_000  # rows read from the catalog and written to the plan at once
_SCHEMA = """
CREATE TABLE clips (id TEXT PRIMARY KEY, source TEXT NOT NULL, split TEXT, kept INTEGER NOT NULL DEFAULT 1,
                    zip INTEGER, part INTEGER, shard TEXT) WITHOUT ROWID;
CREATE TABLE sources (id TEXT PRIMARY KEY, query TEXT) WITHOUT ROWID;
CREATE TABLE recorded (source TEXT NOT NULL, split TEXT NOT NULL, PRIMARY KEY (source, split)) WITHOUT ROWID;
CREATE TABLE own (source TEXT PRIMARY KEY, split TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE members (source TEXT PRIMARY KEY, unit TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE units (id TEXT PRIMARY KEY, query TEXT NOT NULL, size INTEGER NOT NULL, fixed TEXT, split TEXT)
    WITHOUT ROWID;
CREATE INDEX units_by_query ON units (query, id);
"""
# the unit a clip's source is split with (its music group's first source, or itself), as a SQL expression of a
# qualified source column (a bare ``source`` would name members.source inside the subquery)
_UNIT = "coalesce((SELECT unit FROM members WHERE members.source = {src}), {src})"


class ExportPlan:
    """The scratch database of one export (see the module); ``with ExportPlan(out) as plan:`` removes it."""

    def __init__(self, folder: Path) -> None:
        fd, name = tempfile.mkstemp(prefix=".plan.", suffix=".part.sqlite", dir=folder)  # a name the sweep knows
        os.close(fd)
        self.path = Path(name)
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.create_function("bucket", 2, video_bucket, deterministic=True)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-16000", "temp_store=FILE"):
            self.db.execute(f"PRAGMA {pragma}")  # scratch: nothing to recover, a page cache of 16 MB at most
        self.db.executescript(_SCHEMA)

    def __enter__(self) -> ExportPlan:
        return self

    def __exit__(self, *_: object) -> None:
        self.db.close()
        self.path.unlink(missing_ok=True)

    def _many(self, sql: str, rows: Iterable[tuple]) -> None:
        self.db.execute("BEGIN")
        self.db.executemany(sql, rows)
        self.db.execute("COMMIT")

    def _one(self, sql: str, *args: object) -> object:
        row = self.db.execute(sql, args).fetchone()
        return None if row is None else row[0]

    # -- what the catalog and earlier exports say -------------------------------------------------------------

    def load_accepted(self, catalog: Catalog) -> int:
        """Every accepted clip's id and source, each source's query and the split earlier exports recorded
        (a re-export keeps it), streamed from the catalog. Returns how many clips."""
        q = (select(Clip.id, Clip.source_id, Source.query, Clip.split).join(Source, Source.id == Clip.source_id)
             .where(Clip.status == ClipStatus.ACCEPTED).execution_options(yield_per=BATCH))
        with catalog.session() as s:
            for chunk in batches(s.execute(q).tuples(), BATCH):
                self.add_clips((c, src) for c, src, _, _ in chunk)
                self._many("INSERT INTO sources VALUES (?, ?) ON CONFLICT DO NOTHING", ((src, qy) for _, src, qy, _ in chunk))
                self._many("INSERT OR IGNORE INTO recorded VALUES (?, ?)",
                           ((src, p) for _, src, _, p in chunk if p in SPLITS))
        both = self._one("SELECT source FROM recorded GROUP BY source HAVING count(*) > 1 ORDER BY source LIMIT 1")
        if both is not None:
            raise ValueError(f"source {both} already has clips in both splits; re-export with keep_existing=False")
        return int(self._one("SELECT count(*) FROM clips"))

    def add_clips(self, pairs: Iterable[tuple[str, str]]) -> None:
        """(clip id, source id) rows."""
        self._many("INSERT INTO clips (id, source) VALUES (?, ?)", pairs)

    def load_own_splits(self, manifest: Path) -> None:
        """{source: split} of this export's manifest when it was exported before: its videos keep their split
        even when another export (``--reshuffle``) has since recorded others in the catalog."""
        if not manifest.is_file():
            return
        for b in pq.ParquetFile(manifest).iter_batches(batch_size=10 * BATCH, columns=["source_id", "split"]):
            d = b.to_pydict()
            self._many("INSERT OR REPLACE INTO own VALUES (?, ?)",
                       ((str(s), p) for s, p in zip(d["source_id"], d["split"], strict=True)
                        if s is not None and p in SPLITS))

    def set_groups(self, groups: Iterable[MusicGroup]) -> None:
        """The sources of one music group are split as one unit, keyed by its first source."""
        self._many("INSERT OR REPLACE INTO members VALUES (?, ?)",
                   ((s, g.sources[0]) for g in groups for s in g.sources))

    # -- the split ---------------------------------------------------------------------------------------------

    def _make_units(self, keep_existing: bool) -> None:
        """Each unit's query (its first source's when that source is exported, else its sources' own, which
        must agree), its number of clips and the split it is fixed to: its own recorded split, else that of
        its first source (by id) that has one; this export's manifest before the catalog's record."""
        query = ("CASE WHEN lead.id IS NOT NULL THEN lead.query ELSE s.query END")
        self.db.execute(f"""CREATE TEMP VIEW clip_units AS
            SELECT c.id AS clip, {_UNIT.format(src='c.source')} AS unit,
                   CASE WHEN coalesce({query}, '') = '' THEN '(url)' ELSE {query} END AS query
            FROM clips c JOIN sources s ON s.id = c.source
            LEFT JOIN sources lead ON lead.id = {_UNIT.format(src='c.source')}""")
        bad = self.db.execute("SELECT unit, min(query), max(query) FROM clip_units GROUP BY unit "
                              "HAVING count(DISTINCT query) > 1 ORDER BY unit LIMIT 1").fetchone()
        if bad is not None:
            raise ValueError(f"source {bad[0]} has clips under two queries: {bad[1]!r}, {bad[2]!r}")
        self.db.execute("BEGIN")
        self.db.execute("INSERT INTO units (id, query, size) SELECT unit, min(query), count(*) FROM clip_units "
                        "GROUP BY unit")
        if keep_existing:
            self.db.execute("CREATE TEMP TABLE fixed_units (unit TEXT PRIMARY KEY, split TEXT NOT NULL) WITHOUT ROWID")
            self.db.execute(f"""INSERT INTO fixed_units
                WITH fixed AS (SELECT source, split FROM own UNION ALL
                               SELECT source, split FROM recorded WHERE source NOT IN (SELECT source FROM own)),
                     ranked AS (SELECT {_UNIT.format(src='f.source')} AS unit, split, source FROM fixed f)
                SELECT unit, split FROM (SELECT unit, split, row_number() OVER (PARTITION BY unit
                                                                            ORDER BY unit != source, source) AS k
                                         FROM ranked) WHERE k = 1""")
            self.db.execute("UPDATE units SET fixed = (SELECT split FROM fixed_units WHERE unit = units.id)")
        self.db.execute("COMMIT")

    def plan(self, split_query: Callable[..., Mapping[str, str]], test_fraction: float, valid_fraction: float,
             seed: int, keep_existing: bool) -> None:
        """Every clip's split: each query's units through ``split_query`` (dvmset.export._split_query), then
        each clip the split of its unit."""
        self._make_units(keep_existing)
        # a unit of no exported clip still counts: its recorded valid split means valid exists (plan_split's lend)
        lend = valid_fraction > 0 and not (keep_existing and self._one(
            f"SELECT EXISTS (SELECT 1 FROM fixed_units WHERE split = '{VALID}')"))
        for (query,) in self.db.execute("SELECT DISTINCT query FROM units ORDER BY query").fetchall():
            rows = self.db.execute("SELECT id, size, fixed FROM units WHERE query = ? ORDER BY id", (query,)).fetchall()
            final = split_query(query, [u for u, _, _ in rows], {u: n for u, n, _ in rows},
                                {u: f for u, _, f in rows if f is not None}, lend, test_fraction, valid_fraction,
                                seed)
            self._many("UPDATE units SET split = ? WHERE id = ?", ((p, u) for u, p in final.items()))
        self.db.execute("BEGIN")
        self.db.execute(f"UPDATE clips SET split = (SELECT split FROM units WHERE units.id = "
                        f"{_UNIT.format(src='clips.source')})")
        self.db.execute("COMMIT")

    def set_splits(self, pairs: Iterable[tuple[str, str]]) -> None:
        """(clip id, split) rows of clips already in the plan (a split planned elsewhere)."""
        self._many("UPDATE clips SET split = ? WHERE id = ?", ((p, c) for c, p in pairs))

    def set_shards(self, pairs: Iterable[tuple[str, str]]) -> bool:
        """(clip id, shard) rows of the feature index (any clips; those not in the plan change nothing), a
        transaction per batch; True when there was any row (features exist, so a clip without one is not
        exported: dvmset.export._drop_without_features)."""
        seen = False
        for chunk in batches(pairs, 50_000):
            seen = True
            self._many("UPDATE clips SET shard = ? WHERE id = ?", ((sh, c) for c, sh in chunk))
        return seen

    def without_shard(self) -> Iterator[str]:
        """The exported clips the feature index does not hold, in id order."""
        yield from (r[0] for r in self.db.execute("SELECT id FROM clips WHERE kept = 1 AND shard IS NULL ORDER BY id"))

    # -- reading it back -----------------------------------------------------------------------------------------

    def ids(self, split: str | None = None, *, kept_only: bool = True, size: int = BATCH) -> Iterator[list[str]]:
        """The clips' ids in id order (of one split; the exported ones only unless ``kept_only`` is False),
        a batch at a time."""
        where = ["kept = 1"] if kept_only else []
        args: tuple = ()
        if split is not None:
            where.append("split = ?")
            args = (split,)
        cur = self.db.execute(f"SELECT id FROM clips {'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY id",
                              args)
        while rows := cur.fetchmany(size):
            yield [r[0] for r in rows]

    def rows(self, size: int = BATCH) -> Iterator[list[tuple[str, str, str, str | None]]]:
        """(clip id, source id, split, feature shard) of the exported clips in id order, a batch at a time."""
        cur = self.db.execute("SELECT id, source, split, shard FROM clips WHERE kept = 1 ORDER BY id")
        while rows := cur.fetchmany(size):
            yield rows

    def splits_of(self, ids: Iterable[str]) -> dict[str, str]:
        """{clip id: split} of these clips (those in the plan), looked up a batch at a time."""
        out: dict[str, str] = {}
        for chunk in batches(ids, BATCH):
            marks = ",".join("?" * len(chunk))
            out.update(self.db.execute(f"SELECT id, split FROM clips WHERE id IN ({marks})", chunk).fetchall())
        return out

    def known(self, ids: list[str]) -> set[str]:
        """Which of these ids are accepted clips of the plan."""
        return set(self.splits_of(ids))

    def drop(self, ids: Iterable[str]) -> None:
        """These clips are not exported (no file, no features)."""
        self._many("UPDATE clips SET kept = 0 WHERE id = ?", ((c,) for c in ids))

    def count(self, what: str = "*") -> int:
        """How many exported clips (``count(DISTINCT source)``: how many sources)."""
        return int(self._one(f"SELECT count({what}) FROM clips WHERE kept = 1"))

    def split_counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT split, count(*) FROM clips WHERE kept = 1 GROUP BY split").fetchall())

    def buckets(self, column: str, count: int) -> Iterator[tuple[int, list[str]]]:
        """(bucket, its exported clip ids in id order) for each of ``count`` buckets of the videos' hash
        (dvmset.info_zips.video_bucket: the info zips' ``zip``, the release's ``part``), empty ones included."""
        self.db.execute("BEGIN")
        self.db.execute(f"UPDATE clips SET {column} = bucket(id, ?) WHERE kept = 1", (count,))
        self.db.execute(f"CREATE INDEX IF NOT EXISTS by_{column} ON clips ({column}, id) WHERE kept = 1")
        self.db.execute("COMMIT")
        cur = self.db.execute(f"SELECT {column}, id FROM clips WHERE kept = 1 ORDER BY {column}, id")
        got = itertools.groupby(iter(lambda: cur.fetchone(), None), key=lambda r: r[0])
        nxt = next(got, None)
        for b in range(count):
            if nxt is not None and nxt[0] == b:
                yield b, [c for _, c in nxt[1]]
                nxt = next(got, None)
            else:
                yield b, []
