"""The numbers an export's card counts, from a scratch SQLite file fed a batch of manifest rows at a time:
the card's memory stays the same whatever the number of clips (issue 23). Counts, sums, distinct counts and
medians are queries on the file; Python holds one batch and the small-domain results. A takedown, which holds
the manifest's card columns already, counts the same numbers in Arrow instead (:class:`CardArrow`)."""

from __future__ import annotations

import functools
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dvmset.batches import MAX_BIND, batches

#: the manifest's columns the card reads (kept_s is absent from exports written before excluded spans)
MANIFEST_COLUMNS = ("clip_id", "source_id", "query", "split", "duration_s", "sample_rate", "license",
                    "excluded_spans", "kept_s", "shard")
FLAG_CHUNK = 100_000  # QC-hint values tested at once by CardScratch.flagged
BATCH_ROWS = MAX_BIND  # manifest or facts rows held at once as Python objects: ~5 MB whatever the export holds


def manifest_batches(manifest: Path) -> Iterator[dict[str, list]]:
    """The card's manifest columns, a batch of rows at a time, as Python lists (nulls as None), read a batch at a
    time from the manifest's parquet file."""
    f = pq.ParquetFile(manifest)
    cols = [c for c in MANIFEST_COLUMNS if c in f.schema_arrow.names]
    for batch in f.iter_batches(batch_size=BATCH_ROWS, columns=cols):
        yield batch.to_pydict()


class CardScratch:
    """The manifest's clips (in manifest order) and their card facts in a scratch SQLite database."""

    def __init__(self, db: sqlite3.Connection, fact_columns: Sequence[str]) -> None:
        self.db, self.fact_columns, self.has_kept = db, tuple(fact_columns), False
        db.execute("CREATE TABLE clips (clip_id, source_id, query, split, duration_s, sample_rate, license, "
                   "excluded INTEGER, kept_s, shard)")
        db.execute(f"CREATE TABLE facts ({', '.join(self.fact_columns)})")

    def add_manifest(self, batch: dict[str, list]) -> None:
        """Append one batch of manifest rows."""
        n = len(batch["clip_id"])
        self.has_kept = self.has_kept or "kept_s" in batch
        none = [None] * n
        cols = [batch.get(c, none) for c in ("clip_id", "source_id", "query", "split", "duration_s", "sample_rate",
                                              "license")]
        excluded = [v is not None for v in batch.get("excluded_spans", none)]
        self.db.executemany("INSERT INTO clips VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            zip(*cols, excluded, batch.get("kept_s", none), batch.get("shard", none), strict=True))

    def index(self) -> None:
        """Index the clip ids once the manifest is in: the lookups by id that follow need it."""
        self.db.execute("CREATE INDEX clips_id ON clips (clip_id)")

    def id_batches(self, size: int = MAX_BIND) -> Iterator[list[str]]:
        """The manifest's clip ids in manifest order, in consecutive lists of ``size``."""
        last = 0
        while rows := self.db.execute("SELECT rowid, clip_id FROM clips WHERE rowid > ? ORDER BY rowid LIMIT ?",
                                      (last, size)).fetchall():
            last = rows[-1][0]
            yield [cid for _, cid in rows]

    def add_facts(self, rows: Iterable[tuple]) -> None:
        """Append card facts rows (``fact_columns``), in the order card_facts.parquet lists them."""
        marks = ", ".join("?" * len(self.fact_columns))
        self.db.executemany(f"INSERT INTO facts VALUES ({marks})", rows)

    def facts_from_file(self, path: Path) -> bool:
        """The facts of the manifest's clips, in manifest order, from an earlier card_facts.parquet (a takedown:
        fewer clips, nothing else changed); False, with no facts added, when the file lacks any clip."""
        cols = ", ".join(self.fact_columns)
        self.db.execute(f"CREATE TEMP TABLE kept ({cols})")
        marks = ", ".join("?" * len(self.fact_columns))
        for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=list(self.fact_columns)):
            self.db.executemany(f"INSERT INTO kept VALUES ({marks})", zip(*batch.to_pydict().values(), strict=True))
        self.db.execute("CREATE INDEX kept_id ON kept (clip_id)")
        if self.db.execute("SELECT EXISTS (SELECT 1 FROM clips WHERE clip_id NOT IN (SELECT clip_id FROM kept))"
                           ).fetchone()[0]:
            return False
        picked = ", ".join(f"k.{c}" for c in self.fact_columns)
        self.db.execute(f"INSERT INTO facts SELECT {picked} FROM clips c JOIN kept k ON k.clip_id = c.clip_id "
                        "ORDER BY c.rowid")
        return True

    def fact_batches(self) -> Iterator[list[tuple]]:
        """The facts rows in the order they were added, :data:`BATCH_ROWS` at a time."""
        cur = self.db.execute(f"SELECT {', '.join(self.fact_columns)} FROM facts ORDER BY rowid")
        while rows := cur.fetchmany(BATCH_ROWS):
            yield rows

    def fact_witness(self) -> list[tuple]:
        """One facts row per combination of its columns' SQLite types (NULL included): between them every type
        each column holds, what pandas infers a column's dtype from, so the per-batch frames written take the
        dtypes of one frame of every row."""
        cols = ", ".join(self.fact_columns)
        types = ", ".join(f"typeof({c})" for c in self.fact_columns)
        return [row[len(self.fact_columns):] for row in self.db.execute(
            f"SELECT {types}, {cols} FROM facts GROUP BY {types}")]

    def rows(self, table: str) -> int:
        return self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    def totals(self) -> tuple[int, int, float]:
        """Clips, distinct sources and summed duration (s)."""
        return self.db.execute("SELECT COUNT(*), COUNT(DISTINCT source_id), TOTAL(duration_s) FROM clips").fetchone()

    def split_totals(self) -> dict[str, tuple[int, int, float]]:
        """:meth:`totals` of each split present."""
        return {p: (n, sources, seconds) for p, n, sources, seconds in self.db.execute(
            "SELECT split, COUNT(*), COUNT(DISTINCT source_id), TOTAL(duration_s) FROM clips GROUP BY split")}

    def distinct(self, column: str) -> int:
        """Distinct non-null values of a manifest column (pandas' ``nunique``)."""
        return self.db.execute(f"SELECT COUNT(DISTINCT {column}) FROM clips").fetchone()[0]

    def value_counts(self, table: str, column: str) -> Iterator[tuple[object, int]]:
        """(value, rows) of a column, null included, streamed: for a small domain or a one-pass fold."""
        yield from self.db.execute(f"SELECT {column}, COUNT(*) FROM {table} GROUP BY {column} ORDER BY {column}")

    def median(self, table: str, column: str) -> tuple[float, int]:
        """The median of a column's numeric values (pandas' ``median``: the mean of the two middle values for an
        even count; NaN for none) and how many there are."""
        numeric = f"typeof({column}) IN ('real', 'integer')"
        n = self.db.execute(f"SELECT COUNT(*) FROM {table} WHERE {numeric}").fetchone()[0]
        if not n:
            return float("nan"), 0
        middle = [v for (v,) in self.db.execute(f"SELECT {column} FROM {table} WHERE {numeric} ORDER BY {column} "
                                                 "LIMIT ? OFFSET ?", (2 - n % 2, (n - 1) // 2))]
        return sum(map(float, middle)) / len(middle), n

    def durations(self) -> tuple[float, float, float]:
        """min, median and max clip duration (s)."""
        lo, hi = self.db.execute("SELECT MIN(duration_s), MAX(duration_s) FROM clips").fetchone()
        return lo, self.median("clips", "duration_s")[0], hi

    def kept(self) -> tuple[float, float, float, int] | None:
        """Seconds kept, seconds in all, seconds excluded, clips with excluded spans; None before kept_s."""
        if not self.has_kept:
            return None
        return self.db.execute("SELECT TOTAL(kept_s), TOTAL(duration_s), TOTAL(duration_s - kept_s), "
                               "TOTAL(excluded) FROM clips").fetchone()

    def query_splits(self) -> dict[tuple[str, str], int]:
        """Clips per (query, split); clips without a query (from a URL) under "(url)", as the catalog counts."""
        return {(q, p): n for q, p, n in self.db.execute(
            "SELECT COALESCE(query, '(url)') AS q, split, COUNT(*) FROM clips GROUP BY q, split")}

    def flagged(self, column: str, flag: Callable[[object], bool]) -> tuple[int, int]:
        """Facts rows whose ``column`` value ``flag`` holds for, and rows with a value: the flag tested on
        :data:`FLAG_CHUNK` numbers at once (a QC hint has about as many distinct values as clips; tested one
        value at a time, six hints over 1.8 M clips cost seconds each, benchmarks/bench_card.py)."""
        flagged = known = 0
        cur = self.db.execute(f"SELECT {column} FROM facts WHERE typeof({column}) IN ('real', 'integer')")
        while rows := cur.fetchmany(FLAG_CHUNK):
            numbers = np.fromiter((v for (v,) in rows), dtype=np.float64, count=len(rows))
            known += len(numbers)
            flagged += int(np.count_nonzero(flag(numbers)))
        return flagged, known

    def splits_of(self, clip_ids: Iterable[str]) -> dict[str, str]:
        """The split of each of ``clip_ids`` in the manifest (ids not in it left out)."""
        out: dict[str, str] = {}
        for chunk in batches(sorted(set(clip_ids))):
            marks = ", ".join("?" * len(chunk))
            out.update(self.db.execute(f"SELECT clip_id, split FROM clips WHERE clip_id IN ({marks})", chunk))
        return out


@contextmanager
def card_scratch(fact_columns: Sequence[str]) -> Iterator[CardScratch]:
    """A :class:`CardScratch` in a temporary file, removed on exit."""
    with tempfile.TemporaryDirectory(prefix="dvm-card-") as tmp:
        db = sqlite3.connect(Path(tmp) / "card.sqlite")
        try:
            db.execute("PRAGMA journal_mode = OFF")
            db.execute("PRAGMA synchronous = OFF")
            yield CardScratch(db, fact_columns)
        finally:
            db.close()


def _as_py(v: object) -> object:
    """A value as Python, NaN as None (pandas' null for floats)."""
    return None if v is None or (isinstance(v, float) and v != v) else v


def _numbers(col: pa.ChunkedArray) -> np.ndarray:
    """A column's numeric values, nulls and NaN left out (pandas' ``to_numeric(errors="coerce").dropna()``)."""
    if pa.types.is_null(col.type):  # a column with no value at all
        return np.empty(0)
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        col = pa.chunked_array([pd.to_numeric(pd.Series(col.to_pylist(), dtype=object), errors="coerce")])
    got = col.drop_null().to_numpy().astype("float64")
    return got[~np.isnan(got)]


class CardArrow:
    """:class:`CardScratch`'s queries over the manifest's card columns and its facts held as Arrow tables (a
    takedown reads them whole: one column of a million values is a few MB, counted in C) without copying every
    row into a database first. ``test_card_stream`` checks both give the same card."""

    def __init__(self, m: pa.Table, facts: pa.Table) -> None:
        self.m, self.facts = m, facts
        self.has_kept = "kept_s" in m.column_names

    def _table(self, table: str) -> pa.Table:
        return self.m if table == "clips" else self.facts

    def rows(self, table: str) -> int:
        return self._table(table).num_rows

    def value_counts(self, table: str, column: str) -> Iterator[tuple[object, int]]:
        """(value, rows) of a column, null (None, NaN) as None, each value once; a column an older manifest lacks
        is all None (as the scratch database's is)."""
        if column not in self._table(table).column_names:
            yield None, self.rows(table)
            return
        out: dict[object, int] = {}
        for row in pc.value_counts(self._table(table)[column]).to_pylist():
            key = _as_py(row["values"])
            out[key] = out.get(key, 0) + row["counts"]
        yield from out.items()

    def median(self, table: str, column: str) -> tuple[float, int]:
        numbers = _numbers(self._table(table)[column])
        return (float(np.median(numbers)), len(numbers)) if len(numbers) else (float("nan"), 0)

    def flagged(self, column: str, flag: Callable[[object], bool]) -> tuple[int, int]:
        """The flag tested on the column's numbers at once (a QC hint is a number per clip: as many distinct
        values as clips, which :meth:`CardScratch.flagged` tests one by one)."""
        numbers = _numbers(self.facts[column])
        return int(np.count_nonzero(flag(numbers))), len(numbers)

    def _sum(self, col: pa.ChunkedArray) -> float:
        return float(np.nansum(col.drop_null().to_numpy().astype("float64")))

    @functools.cached_property
    def _sources(self) -> tuple[np.ndarray, int]:
        """Each clip's source as an integer code (-1: none) and how many codes: distinct counts by split are then
        counts of codes present (a hash of every source id once, not once per count)."""
        enc = self.m["source_id"].combine_chunks().dictionary_encode()
        return enc.indices.fill_null(-1).to_numpy(zero_copy_only=False), len(enc.dictionary)

    def _distinct_sources(self, rows: np.ndarray | None = None) -> int:
        codes, n = self._sources
        codes = codes if rows is None else codes[rows]
        return int(np.count_nonzero(np.bincount(codes[codes >= 0], minlength=n))) if n else 0

    def totals(self) -> tuple[int, int, float]:
        return self.m.num_rows, self._distinct_sources(), self._sum(self.m["duration_s"])

    def split_totals(self) -> dict[str, tuple[int, int, float]]:
        split = self.m["split"].combine_chunks().dictionary_encode()
        codes = split.indices.fill_null(-1).to_numpy(zero_copy_only=False)
        seconds = self.m["duration_s"].to_numpy().astype("float64")  # nulls as NaN
        out = {}
        for k, part in [*enumerate(split.dictionary.to_pylist()), (-1, None)]:
            rows = codes == k
            if rows.any():
                out[part] = (int(rows.sum()), self._distinct_sources(rows), float(np.nansum(seconds[rows])))
        return out

    def distinct(self, column: str) -> int:
        return pc.count_distinct(self.m[column]).as_py()

    def durations(self) -> tuple[float, float, float]:
        d = self.m["duration_s"]
        return pc.min(d).as_py(), self.median("clips", "duration_s")[0], pc.max(d).as_py()

    def kept(self) -> tuple[float, float, float, int] | None:
        if not self.has_kept:
            return None
        m = self.m
        kept, total = self._sum(m["kept_s"]), self._sum(m["duration_s"])
        cut = self._sum(pc.subtract(m["duration_s"], m["kept_s"]))
        return kept, total, cut, m.num_rows - m["excluded_spans"].null_count

    def query_splits(self) -> dict[tuple[str, str], int]:
        t = pa.table({"query": pc.fill_null(self.m["query"], "(url)"), "split": self.m["split"]})
        got = t.group_by(["query", "split"]).aggregate([([], "count_all")])
        return dict(zip(zip(got["query"].to_pylist(), got["split"].to_pylist(), strict=True),
                        got["count_all"].to_pylist(), strict=True))

    def splits_of(self, clip_ids: Iterable[str]) -> dict[str, str]:
        want = pa.array(sorted(set(clip_ids)), pa.string())
        hit = self.m.select(["clip_id", "split"]).filter(pc.is_in(self.m["clip_id"], value_set=want))
        return dict(zip(hit["clip_id"].to_pylist(), hit["split"].to_pylist(), strict=True))


CardCounts = CardScratch | CardArrow  # what dvmset.card counts a card from
