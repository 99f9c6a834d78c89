"""Feature shards: safetensors files of a fixed number of clips plus ``features/index.parquet``.

A shard holds ``{clip_id}/global`` [T, D] fp16, ``{clip_id}/rhythm`` and ``{clip_id}/rhythm_global``
[T*50] fp32 and ``{clip_id}/codes`` [4, T*50] int16, and repeats each clip's index row in its header metadata, so
the index can be rebuilt from the shards (a kill between shard and index write loses nothing).
Everything reads with ``safetensors`` + ``pandas`` alone; writes are atomic. Format 1 shards (no
``rhythm_global``) still read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from safetensors import safe_open
from safetensors.numpy import save_file

from dvmset.constants import TOKEN_RATE_HZ
from dvmset.io import atomic_path, file_lock, remove_partials
from dvmset.layout import check_id

log = logging.getLogger(__name__)

SHARD_FORMAT = "vidmusician-features/2"
TENSOR_NAMES = ("global", "rhythm", "codes", "rhythm_global")  # checksum order: format 1's three first
#: the tensors each readable format holds
FORMAT_TENSORS = {"vidmusician-features/1": TENSOR_NAMES[:3], SHARD_FORMAT: TENSOR_NAMES}
RHYTHM_TENSORS = ("rhythm", "rhythm_global")  # [T*50] each, 50 Hz
INDEX_COLUMNS = ["clip_id", "shard", "split", "query", "source_id", "clip_s", "embed_dim", "sha256", "config"]
INDEX_SCHEMA = pa.schema([(c, pa.int64() if c in ("clip_s", "embed_dim") else pa.string()) for c in INDEX_COLUMNS])
INDEX_BATCH = 65_536  # index rows read, changed and written at once (and the file's row groups)
_DTYPES = {"global": np.float16, "rhythm": np.float32, "rhythm_global": np.float32, "codes": np.int16}


def tensors_sha256(tensors: Mapping[str, np.ndarray]) -> str:
    """A checksum over name, dtype, shape and bytes of the tensors present, in a fixed order."""
    h = hashlib.sha256()
    for name in (n for n in TENSOR_NAMES if n in tensors):
        a = np.ascontiguousarray(tensors[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class ShardEntry:
    """One clip's tensors and the index fields that travel with them."""

    clip_id: str
    tensors: Mapping[str, np.ndarray] = field(repr=False)
    config: str  # the extractor config, JSON
    query: str | None = None
    source_id: str | None = None
    split: str | None = None

    def __post_init__(self) -> None:
        check_id(self.clip_id, "clip id")
        if set(self.tensors) != set(TENSOR_NAMES):
            raise ValueError(f"clip {self.clip_id}: tensors must be exactly {TENSOR_NAMES}, got {sorted(self.tensors)}")
        for name, dtype in _DTYPES.items():
            if self.tensors[name].dtype != dtype:
                raise ValueError(f"clip {self.clip_id}: {name} must be {np.dtype(dtype)}, got {self.tensors[name].dtype}")
        g, c = self.tensors["global"], self.tensors["codes"]
        t = g.shape[0]
        rhythm = {n: self.tensors[n].shape for n in RHYTHM_TENSORS}
        if (g.ndim != 2 or any(shape != (t * TOKEN_RATE_HZ,) for shape in rhythm.values())
                or c.ndim != 2 or c.shape[1] != t * TOKEN_RATE_HZ):
            raise ValueError(
                f"clip {self.clip_id}: misaligned tensors global {g.shape}, {rhythm}, codes {c.shape}: "
                f"need [T, D], [T*{TOKEN_RATE_HZ}], [K, T*{TOKEN_RATE_HZ}]"
            )
        json.loads(self.config)

    def row(self, shard: str) -> dict:
        return {
            "clip_id": self.clip_id, "shard": shard, "split": self.split, "query": self.query,
            "source_id": self.source_id, "clip_s": int(self.tensors["global"].shape[0]),
            "embed_dim": int(self.tensors["global"].shape[1]), "sha256": tensors_sha256(self.tensors),
            "config": self.config,
        }


def write_shard(path: str | Path, entries: Sequence[ShardEntry]) -> list[dict]:
    """Write ``entries`` to one shard atomically; returns their index rows."""
    path = Path(path)
    if not entries:
        raise ValueError("a shard needs at least one clip")
    ids = [e.clip_id for e in entries]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate clip ids in one shard: {sorted({i for i in ids if ids.count(i) > 1})}")
    rows = [e.row(path.name) for e in entries]
    arrays = {f"{e.clip_id}/{n}": np.ascontiguousarray(e.tensors[n]) for e in entries for n in TENSOR_NAMES}
    meta = {"format": SHARD_FORMAT, "clips": json.dumps(rows)}
    with atomic_path(path) as tmp:
        save_file(arrays, str(tmp), metadata=meta)
    return rows


def read_shard_rows(path: str | Path) -> list[dict]:
    """The index rows stored in a shard's header."""
    with safe_open(str(path), framework="np") as f:
        meta = f.metadata() or {}
    if meta.get("format") not in FORMAT_TENSORS:
        raise ValueError(f"{path}: not a feature shard this version reads (format={meta.get('format')!r}; "
                         f"reads {sorted(FORMAT_TENSORS)})")
    rows = json.loads(meta["clips"])
    for r in rows:
        r["shard"] = Path(path).name
    return rows


def runs_of(values: pa.Array) -> list[tuple[int, int]]:
    """The [start, end) of each run of equal values, in order (the index's rows of one shard, in a batch)."""
    cuts = np.flatnonzero(pc.not_equal(values[1:], values[:-1]).to_numpy(zero_copy_only=False)) + 1
    bounds = [0, *cuts.tolist(), len(values)]
    return list(zip(bounds, bounds[1:], strict=False))


def _frame(rows: Iterable[dict]) -> pd.DataFrame:
    df = pd.DataFrame(list(rows), columns=INDEX_COLUMNS)
    return df.astype({"clip_s": "int64", "embed_dim": "int64"})


def _rewrite_without(path: Path, gone: set[str]) -> bool:
    """Write the shard again without the ``gone`` clips, same format and metadata; True if it held any."""
    rows = read_shard_rows(path)
    keep = [r for r in rows if r["clip_id"] not in gone]
    if len(keep) == len(rows):
        return False
    if not keep:
        path.unlink()
        return True
    with safe_open(str(path), framework="np") as f:
        meta = dict(f.metadata() or {})
        arrays = {k: f.get_tensor(k) for k in f.keys() if k.split("/", 1)[0] not in gone}  # noqa: SIM118
    meta["clips"] = json.dumps(keep)
    with atomic_path(path) as tmp:
        save_file(arrays, str(tmp), metadata=meta)
    return True


@dataclass(frozen=True)
class ShardProblem:
    """A shard whose file or one of whose clips cannot be trained on: which, and what is wrong."""

    shard: str
    clip_id: str | None  # None: the file itself cannot be read
    problem: str

    def __str__(self) -> str:
        return f"{self.shard}: {self.problem if self.clip_id is None else f'clip {self.clip_id}: {self.problem}'}"


class CorruptShards(ValueError):
    """Shards that no longer hold what the index says: the message names them and how to re-extract."""

    whole_run = True  # training on them would learn from garbage (pipeline.errors policy)

    def __init__(self, features_dir: Path, problems: Sequence[ShardProblem]) -> None:
        self.problems = list(problems)
        shards = sorted({p.shard for p in self.problems})
        lines = [f"  {p}" for p in self.problems[:10]] + (["  ..."] if len(self.problems) > 10 else [])
        super().__init__(f"{len(shards)} corrupt feature shard(s) in {features_dir}:\n" + "\n".join(lines) + "\n"
                         f"{reextract_hint(features_dir, shards)}")


def reextract_hint(features_dir: Path, shards: Sequence[str]) -> str:
    """What to do about corrupt shards: delete them and extract their clips again."""
    return (f"re-extract: delete {', '.join(str(Path(features_dir) / s) for s in shards)} and run `vidmusician "
            "features` again (the index drops a deleted shard's rows and its clips are extracted anew)")


def check_shards(features_dir: str | Path, clip_ids: Iterable[str] | None = None, *,
                 shards: Iterable[str] | None = None, card: int | None = None) -> list[ShardProblem]:
    """Each shard holding ``clip_ids`` (every indexed clip by default; only those of ``shards`` when given)
    against the index: the file opens, every clip's tensors match its sha256 and are finite, and codes lie in
    ``[0, card)`` when ``card`` is given (the codebook size of the model about to train). Reads every tensor
    once, and the index a batch at a time (what it holds is the wanted clips' ids and checksums)."""
    features_dir = Path(features_dir)
    problems: list[ShardProblem] = []
    for shard, ids, shas in FeatureStore(features_dir).shard_runs(clip_ids, shards):
        path = features_dir / shard
        if not path.is_file():
            problems.append(ShardProblem(shard, None, "the file is missing"))
            continue
        try:
            with safe_open(str(path), framework="np") as f:
                names = FORMAT_TENSORS.get((f.metadata() or {}).get("format"), TENSOR_NAMES)
                for clip_id, sha in zip(ids, shas, strict=True):
                    tensors = {n: f.get_tensor(f"{clip_id}/{n}") for n in names}
                    if (why := _tensor_problem(tensors, sha, card)) is not None:
                        problems.append(ShardProblem(shard, clip_id, why))
        except Exception as err:  # noqa: BLE001 - a truncated or garbled file raises many kinds of errors
            problems.append(ShardProblem(shard, None, f"unreadable, truncated or garbled "
                                                      f"({type(err).__name__}: {str(err)[:200]})"))
    return problems


def _tensor_problem(tensors: Mapping[str, np.ndarray], sha: str, card: int | None) -> str | None:
    if tensors_sha256(tensors) != sha:
        return "its tensors do not match the index's sha256 (changed on disk since extraction)"
    for name, a in tensors.items():
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            return f"{name} holds NaN or infinite values"
    codes = tensors["codes"]
    if codes.size and (int(codes.min()) < 0 or (card is not None and int(codes.max()) >= card)):
        book = f"[0, {card})" if card is not None else "of non-negative indices"
        return f"codes span [{int(codes.min())}, {int(codes.max())}], outside the codebook {book}"
    return None


class StoreBusy(RuntimeError):
    """Another process is writing the feature store; the message says what to do."""

    whole_run = True  # a refused lock stops the run (pipeline.errors policy)


class _Unchanged(Exception):
    """FeatureStore._rewrite changed no row: its new file is dropped."""


class FeatureStore:
    """The ``features/`` directory: shard numbering, the index, crash recovery, split updates.

    Writers (a features run, an export updating splits) hold :meth:`exclusive` so that neither
    rewrites ``index.parquet`` from a copy the other has since changed.
    """

    def __init__(self, features_dir: str | Path) -> None:
        self.dir = Path(features_dir)
        self.index_path = self.dir / "index.parquet"

    @contextlib.contextmanager
    def exclusive(self, who: str) -> Iterator[None]:
        """Be the only writer of this store for the block, or raise :class:`StoreBusy` at once."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(file_lock(self.dir / ".lock", blocking=False))
            except BlockingIOError as err:
                raise StoreBusy(f"another process (a `vidmusician features` run?) is writing {self.dir}; "
                                f"run {who} again when it has finished") from err
            yield

    def shard_path(self, n: int) -> Path:
        return self.dir / f"shard-{n:05d}.safetensors"

    def shard_files(self) -> list[Path]:
        return sorted(self.dir.glob("shard-[0-9][0-9][0-9][0-9][0-9].safetensors"))

    def next_shard_number(self) -> int:
        files = self.shard_files()
        return int(files[-1].stem.split("-")[1]) + 1 if files else 0

    def index(self) -> pd.DataFrame:
        """The whole index as one frame: for a few clips (tests, training's reader, a recovery out of shard order).
        What scans every clip reads :meth:`index_batches` or :meth:`index_column`, a batch or a column at a time."""
        if not self.index_path.exists():
            return _frame([])
        return pd.read_parquet(self.index_path)

    def index_batches(self, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        """The index :data:`INDEX_BATCH` rows at a time, in its order (shard, then clip id)."""
        if self.index_path.exists():
            yield from pq.ParquetFile(self.index_path).iter_batches(batch_size=INDEX_BATCH, columns=columns)

    def index_column(self, column: str) -> pa.ChunkedArray:
        """One column of the whole index, in Arrow (a clip id costs its bytes, not a Python string)."""
        if not self.index_path.exists():
            return pa.chunked_array([], pa.string())
        return pq.read_table(self.index_path, columns=[column]).column(column)

    def _where_in(self, column: str, values: Iterable[str], out: str) -> Iterator[str]:
        """``out`` of the index rows whose ``column`` is one of ``values``, in the index's order, a batch at a time."""
        wanted = pa.array(sorted(set(values)), pa.string())
        for batch in self.index_batches([column, out]):
            yield from batch.column(out).filter(pc.is_in(batch.column(column), value_set=wanted)).to_pylist()

    def shards_of(self, clip_ids: Iterable[str]) -> set[str]:
        """The shards the index says hold these clips."""
        return set(self._where_in("clip_id", clip_ids, "shard"))

    def row(self, clip_id: str) -> dict | None:
        """One clip's index row, or None; reads the index a batch at a time."""
        for batch in self.index_batches():
            hit = batch.filter(pc.equal(batch.column("clip_id"), clip_id))
            if len(hit):
                return hit.to_pylist()[0]
        return None

    def ids_in_shards(self, shards: Iterable[str]) -> list[str]:
        """The clip ids the index puts in these shards, in its order."""
        return list(self._where_in("shard", shards, "clip_id"))

    def shard_runs(self, clip_ids: Iterable[str] | None = None,
                   shards: Iterable[str] | None = None) -> Iterator[tuple[str, list[str], list[str]]]:
        """(shard, its clip ids, their sha256) for each run of one shard's rows in the index's order (the index is
        kept in shard order, so a run is the shard's rows), of the rows whose clip is one of ``clip_ids`` and
        whose shard is one of ``shards`` (None: any). Holds a batch of the index and the run being read."""
        keep = [(c, pa.array(sorted(set(v)), pa.string())) for c, v in (("clip_id", clip_ids), ("shard", shards))
                if v is not None]
        run: tuple[str, list[str], list[str]] | None = None
        for batch in self.index_batches(["shard", "clip_id", "sha256"]):
            for column, wanted in keep:
                batch = batch.filter(pc.is_in(batch.column(column), value_set=wanted))
            if not len(batch):
                continue
            shard = batch.column("shard")
            for a, b in runs_of(shard):
                name = shard[a].as_py()
                ids, shas = batch.column("clip_id")[a:b].to_pylist(), batch.column("sha256")[a:b].to_pylist()
                if run is not None and run[0] == name:  # a shard's rows across two batches
                    run[1].extend(ids)
                    run[2].extend(shas)
                    continue
                if run is not None:
                    yield run
                run = (name, ids, shas)
        if run is not None:
            yield run

    def _save(self, df: pd.DataFrame) -> None:
        df = df.sort_values(["shard", "clip_id"]).reset_index(drop=True)
        with atomic_path(self.index_path) as tmp:
            pq.write_table(pa.Table.from_pandas(df[INDEX_COLUMNS], schema=INDEX_SCHEMA, preserve_index=False), tmp,
                           row_group_size=INDEX_BATCH)

    def _rewrite(self, change: Callable[[pa.RecordBatch], tuple[pa.RecordBatch, int]],
                 tail: pa.Table | None = None) -> int:
        """Stream the index through ``change`` (a batch -> the batch to write, how many rows it changed) into a
        new file that replaces it, followed by ``tail``'s rows; returns the rows changed. Nothing is written when
        no row changed and there is no tail. Holds a batch, whatever the index's size."""
        changed = 0
        try:
            with atomic_path(self.index_path) as tmp, pq.ParquetWriter(tmp, INDEX_SCHEMA) as writer:
                for batch in self.index_batches(INDEX_COLUMNS):
                    new, n = change(batch)
                    changed += n
                    writer.write_batch(new.cast(INDEX_SCHEMA), row_group_size=INDEX_BATCH)  # an older file's nulls
                if tail is not None:
                    writer.write_table(tail.cast(INDEX_SCHEMA), row_group_size=INDEX_BATCH)
                if not changed and tail is None:
                    raise _Unchanged
        except _Unchanged:
            pass
        return changed

    def append(self, rows: Sequence[dict]) -> None:
        """Index a new shard's clips after every indexed one (a new shard's number is the highest)."""
        new = _frame(rows)
        dup, last = self._indexed_among(new.clip_id)
        if dup:
            raise ValueError(f"clips already in the index: {sorted(dup)[:5]}")
        self._add(new, last)

    def recover(self) -> list[str]:
        """Index the shards a crash left out; drop rows whose shard is gone. Returns recovered names. Reads the
        index's shard column, and rewrites the index a batch at a time when something changed."""
        present = {p.name for p in self.shard_files()}
        indexed = set(pc.unique(self.index_column("shard")).to_pylist())
        gone, orphans = indexed - present, sorted(present - indexed)
        if gone:
            log.warning("index rows point at missing shards %s; dropping them", sorted(gone))
        if not orphans and not gone:
            return orphans
        new = _frame(r for name in orphans for r in read_shard_rows(self.dir / name))
        dup, last = self._indexed_among(new.clip_id, without=gone)
        if dup:
            raise ValueError(f"shards {orphans} repeat clips already indexed: {sorted(dup)[:5]}")
        self._add(new, last, without=gone)
        return orphans

    def count(self) -> int:
        """How many clips the index holds (its file's metadata: nothing is read)."""
        return pq.ParquetFile(self.index_path).metadata.num_rows if self.index_path.exists() else 0

    def _indexed_among(self, clip_ids: Iterable[str], without: Collection[str] = ()) -> tuple[list[str], str | None]:
        """Which of ``clip_ids`` the index holds, and its highest shard, leaving out the rows of the ``without``
        shards: one pass over two columns, a batch at a time."""
        wanted, dropped = pa.array(list(clip_ids), pa.string()), pa.array(sorted(without), pa.string())
        dup: list[str] = []
        last = None
        for batch in self.index_batches(["clip_id", "shard"]):
            if without:
                batch = batch.filter(pc.invert(pc.is_in(batch.column(1), value_set=dropped)))
            dup += batch.column(0).filter(pc.is_in(batch.column(0), value_set=wanted)).to_pylist()
            top = pc.max(batch.column(1)).as_py()
            if top is not None and (last is None or top > last):
                last = top
        return dup, last

    def _add(self, new: pd.DataFrame, last: str | None, without: Collection[str] = ()) -> None:
        """Write ``new`` rows into the index, less the rows of the ``without`` shards. ``last``: the highest shard
        kept. New shards after every kept one (a features run's) are written after the streamed index; others
        are sorted in with the whole frame (rare: a crash's leftovers out of order)."""
        new = new.sort_values(["shard", "clip_id"]).reset_index(drop=True)
        if last is not None and len(new) and new.shard.iloc[0] <= last:
            whole = self.index()
            self._save(pd.concat([whole[~whole.shard.isin(without)], new], ignore_index=True))
            return
        dropped = pa.array(sorted(without), pa.string())

        def kept(batch: pa.RecordBatch) -> tuple[pa.RecordBatch, int]:
            hit = pc.is_in(batch.column("shard"), value_set=dropped)
            n = pc.sum(hit).as_py() or 0
            return (batch.filter(pc.invert(hit)) if n else batch), n

        tail = pa.Table.from_pandas(new[INDEX_COLUMNS], schema=INDEX_SCHEMA, preserve_index=False) if len(new) else None
        self._rewrite(kept, tail=tail)

    def remove_clips(self, clip_ids: Iterable[str], *, shards: Iterable[str] | None = None) -> list[str]:
        """Take clips out of the index (first: readers stop serving them) and out of every shard holding
        them, each rewritten atomically without them (deleted when none is left); every other clip's
        tensors are written back byte for byte. Idempotent; the caller holds :meth:`exclusive`.
        ``shards``: the only shard files that can hold them (the caller read them from the index before);
        None reads every shard's header. Returns the names of the shards rewritten or deleted."""
        gone = set(clip_ids)
        remove_partials(self.dir, "shard-*")  # a rewrite killed mid-write left its temp file
        wanted = pa.array(sorted(gone), pa.string())

        def without(batch: pa.RecordBatch) -> tuple[pa.RecordBatch, int]:
            hit = pc.is_in(batch.column("clip_id"), value_set=wanted)
            n = pc.sum(hit).as_py() or 0
            return (batch.filter(pc.invert(hit)) if n else batch), n

        self._rewrite(without)
        files = self.shard_files() if shards is None else \
            [self.dir / n for n in sorted(set(shards)) if (self.dir / n).is_file()]
        return [p.name for p in files if _rewrite_without(p, gone)]

    def set_splits(self, splits: Mapping[str, str] | Callable[[list[str]], Mapping[str, str]], *,
                   exclusive: bool = False) -> int:
        """Write clip splits (from an export) into the index; returns how many rows changed.

        ``splits``: clip id -> split, or a function giving that for a batch of clip ids (an export's plan, which
        holds its splits on disk): the index is rewritten a batch at a time either way.
        ``exclusive``: the mapping is the whole dataset, so clips missing from it (rejected since an
        earlier export) lose their split and no split-filtered reader serves them any more.
        """
        split_of = splits if callable(splits) else lambda ids: {c: splits[c] for c in ids if c in splits}

        def with_splits(batch: pa.RecordBatch) -> tuple[pa.RecordBatch, int]:
            ids, old = batch.column("clip_id").to_pylist(), batch.column("split").to_pylist()
            given = split_of(ids)
            new = [g if (g := given.get(c)) is not None else (None if exclusive else was)
                   for c, was in zip(ids, old, strict=True)]
            n = sum(a != b for a, b in zip(old, new, strict=True))
            if not n:
                return batch, 0
            i = batch.schema.get_field_index("split")
            return batch.set_column(i, "split", pa.array(new, pa.string())), n

        return self._rewrite(with_splits)


class ShardReader:
    """Random access to clips by id through memory-mapped ``safe_open`` handles (opened lazily).

    Picklable for DataLoader workers: each process opens its own handles.
    """

    def __init__(self, features_dir: str | Path, framework: str = "np") -> None:
        self.dir = Path(features_dir)
        self.framework = framework
        self.index = FeatureStore(self.dir).index().set_index("clip_id", drop=False)
        self._handles: dict[str, object] = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_handles": {}}

    def __contains__(self, clip_id: str) -> bool:
        return clip_id in self.index.index

    @property
    def clip_ids(self) -> list[str]:
        return list(self.index.clip_id)

    def _handle(self, clip_id: str):  # noqa: ANN202 - safetensors' handle type is not public
        if clip_id not in self:
            raise KeyError(f"clip {clip_id} has no features in {self.dir}: run `vidmusician features`")
        shard = self.index.at[clip_id, "shard"]
        if shard not in self._handles:
            try:
                handle = safe_open(str(self.dir / shard), framework=self.framework)
            except Exception as err:  # noqa: BLE001 - safetensors raises its own error for a truncated file
                raise ValueError(f"{self.dir / shard}: unreadable, truncated or garbled ({type(err).__name__}: "
                                 f"{str(err)[:200]}); {reextract_hint(self.dir, [shard])}") from err
            fmt = (handle.metadata() or {}).get("format")
            if fmt not in FORMAT_TENSORS:
                raise ValueError(f"{self.dir / shard}: shard format {fmt!r} is not one this version reads "
                                 f"({sorted(FORMAT_TENSORS)})")
            self._handles[shard] = (handle, FORMAT_TENSORS[fmt])
        return self._handles[shard]

    def tensor_names(self, clip_id: str) -> tuple[str, ...]:
        """The tensors stored for a clip (format 1 shards have no ``rhythm_global``)."""
        return self._handle(clip_id)[1]

    def get(self, clip_id: str) -> dict:
        """A clip's tensors: {"global": [T, D], "rhythm", "rhythm_global": [T*50], "codes": [K, T*50]}."""
        f, names = self._handle(clip_id)
        return {n: f.get_tensor(f"{clip_id}/{n}") for n in names}

    def window(self, clip_id: str, start_s: int, window_s: int) -> dict:
        """Aligned slices [start_s, start_s + window_s) of the clip's tensors, read without the rest."""
        clip_s = int(self.index.at[clip_id, "clip_s"]) if clip_id in self else 0
        if not (0 <= start_s and start_s + window_s <= clip_s and window_s > 0):
            raise ValueError(f"clip {clip_id}: window [{start_s}, {start_s + window_s}) s outside [0, {clip_s}] s")
        f, names = self._handle(clip_id)
        a, b = start_s * TOKEN_RATE_HZ, (start_s + window_s) * TOKEN_RATE_HZ
        out = {"global": f.get_slice(f"{clip_id}/global")[start_s : start_s + window_s],
               "codes": f.get_slice(f"{clip_id}/codes")[:, a:b]}
        out.update({n: f.get_slice(f"{clip_id}/{n}")[a:b] for n in RHYTHM_TENSORS if n in names})
        return out

    def verify(self, clip_id: str) -> bool:
        """True when the stored tensors still match the index checksum."""
        tensors = self.get(clip_id)
        if self.framework != "np":
            tensors = {k: v.numpy() for k, v in tensors.items()}
        return tensors_sha256(tensors) == self.index.at[clip_id, "sha256"]

    def close(self) -> None:
        self._handles.clear()
