"""Records dropped by id from the line-per-record files of an export (JSONL, the release CSV, its parquet)
without parsing the rest: the file is read in blocks of whole records, each block searched for the ids (one
C-speed scan per id) and only the lines that contain one parsed; memory stays at a block whatever the file's
size. A takedown removes a few clips from files that list every clip."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from dvmset.io import atomic_path

if TYPE_CHECKING:
    import pyarrow as pa

FEW = 64  # more ids than this: every line is parsed (one scan per id would cost more)
BLOCK = 8 * 2**20  # bytes read at a time (then on to the end of a record)
ROWS = 10_000  # parquet rows per row group written
READ_ROWS = 100_000  # parquet rows read, filtered and written at a time (row groups read together)


class _Unchanged(Exception):
    """Nothing to drop: the temp file is discarded, the file left as it was."""


def lines_containing(data: bytes, keys: Iterable[bytes]) -> list[tuple[int, int]]:
    """(start, end) of each line of ``data`` holding one of ``keys``, end just past its newline, in order. Keys
    that share a long start (the clips of one video: ``{video}-``) are found by one scan for it."""
    keys = sorted(set(keys))
    spans = set()
    for probe, group in _probes(keys):
        at = data.find(probe)
        while at >= 0:
            if any(data.startswith(k, at) for k in group):
                start = data.rfind(b"\n", 0, at) + 1
                end = data.find(b"\n", at)
                end = len(data) if end < 0 else end + 1
                spans.add((start, end))
                at = data.find(probe, end)
            else:
                at = data.find(probe, at + 1)
    return sorted(spans)


def _probes(keys: list[bytes], shortest: int = 8) -> list[tuple[bytes, list[bytes]]]:
    """(what to scan for, the keys it stands for): the keys' common start when it is at least ``shortest``
    bytes, else each key alone."""
    common = os.path.commonprefix(keys) if len(keys) > 1 else b""
    if len(common) >= shortest:
        return [(common, keys)]
    return [(k, [k]) for k in keys]



def _without(data: bytes, spans: list[tuple[int, int]]) -> bytes:
    parts, last = [], 0
    for start, end in spans:
        parts.append(data[last:start])
        last = end
    parts.append(data[last:])
    return b"".join(parts)


def _blocks(src: BinaryIO, quoted: bool) -> Iterator[bytes]:
    """Blocks of whole lines, and with ``quoted`` (CSV) of whole records: a block never ends inside quotes."""
    while block := src.read(BLOCK):
        block += src.readline()
        if quoted:
            while block.count(b'"') % 2 and (more := src.readline()):
                block += more
        yield block


def _filter(path: Path, drops: Callable[[bytes], list[tuple[int, int]]], quoted: bool = False) -> bool:
    """``path`` rewritten (atomically) less the byte ranges ``drops(block)`` names in each block; left as it
    was when none does. Returns whether it changed."""
    dropped = False
    try:
        with open(path, "rb") as src, atomic_path(path) as tmp, open(tmp, "wb") as out:
            for block in _blocks(src, quoted):
                spans = drops(block)
                dropped = dropped or bool(spans)
                out.write(_without(block, spans) if spans else block)
            if not dropped:
                raise _Unchanged
    except _Unchanged:
        return False
    return True


def _every_line(data: bytes) -> list[tuple[int, int]]:
    out, at = [], 0
    for line in data.splitlines(keepends=True):
        out.append((at, at + len(line)))
        at += len(line)
    return out


def jsonl_without(path: Path, gone: set[str], id_of: Callable[[dict], str]) -> bool:
    """The JSONL file without the lines whose record ``id_of(record)`` names a gone clip; only lines holding a
    gone id (as JSON writes it) are parsed. Returns whether it changed (rewritten atomically). For a few ids
    the file is searched a block at a time first and written only when a line goes, the kept bytes copied by
    the kernel (``copy_file_range``): a takedown's cost is the one file it rewrites."""
    if not path.is_file() or not gone:
        return False
    keys = [json.dumps(g)[1:-1].encode("ascii") for g in gone]  # as json.dumps writes it in a string

    def named(block: bytes, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
        return [(s, e) for s, e in spans if block[s:e].strip() and id_of(json.loads(block[s:e])) in gone]

    if len(gone) > FEW:
        return _filter(path, lambda block: named(block, _every_line(block)))
    drop = []
    with open(path, "rb") as src:
        at = 0
        for block in _blocks(src, quoted=False):
            drop += [(at + s, at + e) for s, e in named(block, lines_containing(block, keys))]
            at += len(block)
        if not drop:
            return False
        with atomic_path(path) as tmp, open(tmp, "wb") as out:
            for start, end in _kept_ranges(drop, at):
                _copy_range(src, out, start, end)
    return True


def _copy_range(src: BinaryIO, out: BinaryIO, start: int, end: int) -> None:
    """Bytes ``start:end`` of ``src`` appended to ``out``: in the kernel where it can, else a block at a time."""
    out.flush()
    while start < end:
        try:
            n = os.copy_file_range(src.fileno(), out.fileno(), end - start, start)
        except OSError:  # another file system, an older kernel: through Python
            n = 0
        if n <= 0:
            break
        start += n
    out.seek(0, os.SEEK_END)
    src.seek(start)
    while start < end and (data := src.read(min(BLOCK, end - start))):
        out.write(data)
        start += len(data)


def _kept_ranges(drop: list[tuple[int, int]], size: int) -> Iterator[tuple[int, int]]:
    """The (start, end) byte ranges of a file of ``size`` bytes between the sorted ranges ``drop``."""
    last = 0
    for start, end in drop:
        if start > last:
            yield last, start
        last = max(last, end)
    if last < size:
        yield last, size


def _plain(cid: str) -> bool:
    """Whether a CSV writer leaves the id as it is (no quotes, nothing doubled)."""
    return not any(ch in cid for ch in ',"\r\n') and cid == cid.strip()


def csv_without(path: Path, gone: set[str]) -> bool | None:
    """The CSV file (first column the clip id, as pandas writes it) without the records of the gone clips:
    only lines holding a gone id are looked at, and a record there is told from a quoted field that spans
    lines by the parity of the quotes before it. Returns whether it changed, or None where it cannot
    tell by lines (many ids, or an id the writer quotes): the caller rewrites the file by parsing it."""
    if not path.is_file() or not gone:
        return False
    if len(gone) > FEW or not all(_plain(g) for g in gone):
        return None
    keys = [g.encode("utf-8") for g in gone]

    def drops(block: bytes) -> list[tuple[int, int]]:  # a block starts outside quotes (_blocks)
        drop: list[tuple[int, int]] = []
        quotes, counted_to = 0, 0
        for start, end in lines_containing(block, keys):
            if drop and start < drop[-1][1]:
                continue  # inside the record just dropped
            quotes += block.count(b'"', counted_to, start)
            counted_to = start
            if quotes % 2:
                continue  # inside a quoted field of an earlier record
            if block[start:end].split(b",", 1)[0].decode("utf-8", "replace") not in gone:
                continue
            while block.count(b'"', start, end) % 2 and end < len(block):  # a quoted field runs on
                nxt = block.find(b"\n", end)
                end = len(block) if nxt < 0 else nxt + 1
            drop.append((start, end))
        return drop

    return _filter(path, drops, quoted=True)


def parquet_without(path: Path, gone: set[str], column: str = "clip_id") -> bool:
    """The parquet file without the rows whose ``column`` is a gone id (see :func:`parquet_rewritten_without`);
    only the id column is read when none is there. Returns whether it changed."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if not path.is_file() or not gone:
        return False
    ids = pa.array(sorted(gone), pa.string())
    with pq.ParquetFile(path) as f:  # (ParquetFile, not read_table: the dataset reader starts slower)
        if not pc.any(pc.is_in(f.read(columns=[column])[column], value_set=ids)).as_py():
            return False
    with parquet_rewritten_without(path, gone, column):
        pass
    return True


@contextlib.contextmanager
def parquet_rewritten_without(path: Path, gone: set[str], column: str = "clip_id",
                              collect: Sequence[str] = ()) -> Iterator[pa.Table]:
    """The parquet file written again without the rows whose ``column`` is a gone id, a run of row groups at a
    time (its schema, pandas metadata included, kept), into a temp file that replaces it when the block ends
    (not when it raises); yields the kept rows' ``collect`` columns, gathered in the same pass (a takedown's
    card counts the manifest's rows it writes, without reading the file twice)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    ids = pa.array(sorted(gone), pa.string())
    kept = []
    with pq.ParquetFile(path) as src, atomic_path(path) as tmp, contextlib.ExitStack() as stack:
        out = None
        for groups in _row_group_runs(src.metadata, READ_ROWS):  # (iter_batches kept the file allocated)
            t = src.read_row_groups(groups)
            t = t.filter(pc.invert(pc.is_in(t[column], value_set=ids)))
            if out is None:
                out = stack.enter_context(pq.ParquetWriter(tmp, src.schema_arrow, use_dictionary=_dictionary_columns(t)))
            out.write_table(t, row_group_size=ROWS)
            kept.append(t.select(list(collect)))
        if out is None:  # no row at all: the schema alone
            pq.write_table(src.schema_arrow.empty_table(), tmp)
        stack.close()
        yield pa.concat_tables(kept) if kept else src.schema_arrow.empty_table().select(list(collect))


def _dictionary_columns(t: pa.Table) -> list[str]:
    """The columns worth dictionary-encoding, judged on the first rows: fewer distinct values than half the rows
    (a split, a query, a licence; not an id, a path or a title, where building the dictionary doubles the time
    to write the file, 1.6 s instead of 0.8 s for a manifest of 1.8 M clips, and it comes out larger)."""
    import pyarrow.compute as pc

    return [name for name, col in zip(t.column_names, t.columns, strict=True)
            if 2 * pc.count_distinct(col, mode="all").as_py() < max(len(col), 2)]


def _row_group_runs(meta: object, rows: int) -> Iterator[list[int]]:
    """Consecutive row groups of a parquet file, a run of about ``rows`` rows at a time (an export writes groups
    of a thousand: read one by one, the calls cost more than the rows)."""
    run: list[int] = []
    held = 0
    for g in range(meta.num_row_groups):
        run.append(g)
        held += meta.row_group(g).num_rows
        if held >= rows:
            yield run
            run, held = [], 0
    if run:
        yield run
