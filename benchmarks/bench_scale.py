"""How the whole-catalog commands grow with the catalog: status, the agreement report, review progress,
music grouping, export (with the release) and one takedown, at N and 10 N sources.

Run by hand:  python benchmarks/bench_scale.py --sources 1000 [--db URL] [--sizes 1000,10000]
For each size it builds a synthetic catalog through the project's tables with bulk inserts (about three
60 s clips per source; 60 % accepted, 20 % rejected, 20 % pending; one to three decisions from five
annotators on each decided clip; a chromaprint-format fingerprint per clip, 1 % of sources re-uploads
of a shared recording, two per recording; an empty file per clip so the export can link it; with ``--features``,
feature shards of every accepted clip, 64 clips a shard in id order as a features run writes them, and their index,
whose tensors are 1 s long and 4 wide: the index's rows and the shard files are as many as a real run's, their
bytes ~1 KB a clip instead of ~110 KB), then runs
each operation in a fresh Python process (``--op``; ``music_rebuild`` builds the shared-music index of
the bulk-inserted catalog once, as ``vidmusician music-groups --rebuild`` does; ``status_again`` is a second
status; ``agreement_build`` is the first agreement report, which counts every decision into the kept summary
(once, after revision 0010), ``agreement`` a report with one decision made since the last (a page load during
review); ``index_clip`` records one new clip's lineage, matching its fingerprint through the index, as
curation does per clip) and reports its wall and CPU seconds (imports excluded; CPU of this process only, so a
database server's share is in wall alone; on a shared machine CPU is the steadier number) and the
process's peak RSS (``VmHWM``, imports included: a bare process with the imports is ``baseline``). With
``--features`` the first ``status`` checks every shard (reads every tensor, once: ``status_again`` reads the
remembered check), the export writes every clip's split into the index, and the takedown rewrites the shards of
the video's clips.
``--db`` takes a Postgres URL template with ``{db}`` for the database name (a database
``bench_scale_<size>`` per size, made anew by each run and left behind); SQLite files in a temp dir
(removed at the end; ``--keep DIR`` builds in DIR, which must not hold
that size's catalog yet, and leaves it) by default.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import insert

from dvmset.catalog import Catalog
from dvmset.layout import DataRoot
from dvmset.music_groups import encode_fingerprint
from dvmset.shards import INDEX_BATCH, INDEX_SCHEMA, FeatureStore, ShardEntry, write_shard
from dvmset.tables import Annotator, Clip, Decision, Source

OPS = ("baseline", "music_rebuild", "status", "status_again", "agreement_build", "agreement", "progress",
       "music_groups", "index_clip", "export", "takedown")
CLIPS_PER_SOURCE = 3
FP_ITEMS = 480  # ~60 s of chromaprint items
BATCH = 20_000  # rows per bulk insert
CLIPS_PER_SHARD = 64  # a features run's default
FEATURE_CONFIG = json.dumps({"identity": {"format": "vidmusician-features/2", "clip_model": "bench"}})


def _fp(rng: np.random.Generator, song: np.ndarray | None) -> str:
    if song is None:
        return encode_fingerprint(rng.integers(0, 2**32, size=FP_ITEMS, dtype=np.uint64).astype(np.uint32))
    noisy = song.copy()
    flip = rng.random(len(song)) < 0.2
    noisy[flip] ^= np.uint32(1) << rng.integers(0, 32, size=int(flip.sum())).astype(np.uint32)
    return encode_fingerprint(noisy)


class _Features:
    """Feature shards of the accepted clips as they are made (in id order), and their index, a batch at a time."""

    def __init__(self, root: DataRoot, rng: np.random.Generator) -> None:
        self.store, self.rng = FeatureStore(root.features_dir), rng
        self.store.dir.mkdir(parents=True, exist_ok=True)
        self.shard: list[ShardEntry] = []
        self.rows: list[dict] = []
        self.writer = pq.ParquetWriter(self.store.index_path, INDEX_SCHEMA)
        self.n = 0

    def add(self, clip_id: str, source_id: str, query: str) -> None:
        r = self.rng
        tensors = {"global": r.standard_normal((1, 4)).astype(np.float16),
                   "rhythm": r.random(50, dtype=np.float32), "rhythm_global": r.random(50, dtype=np.float32),
                   "codes": r.integers(0, 2048, size=(4, 50)).astype(np.int16)}
        self.shard.append(ShardEntry(clip_id, tensors, FEATURE_CONFIG, query=query, source_id=source_id))
        if len(self.shard) == CLIPS_PER_SHARD:
            self._write_shard()

    def _write_shard(self) -> None:
        if self.shard:
            self.rows += write_shard(self.store.shard_path(self.n), self.shard)
            self.shard, self.n = [], self.n + 1
        if len(self.rows) >= INDEX_BATCH:
            self._flush(INDEX_BATCH)

    def _flush(self, n: int) -> None:
        self.writer.write_table(pa.Table.from_pylist(self.rows[:n], schema=INDEX_SCHEMA), row_group_size=INDEX_BATCH)
        del self.rows[:n]

    def close(self) -> None:
        self._write_shard()
        if self.rows:
            self._flush(len(self.rows))
        self.writer.close()


def build(cat: Catalog, root: DataRoot, n_sources: int, seed: int = 0, indexed: bool = False,
          features: bool = False) -> int:
    """The synthetic catalog (see module doc); returns the number of clips. ``indexed`` marks every clip as in
    the shared-music index (with no links): status then skips the one-off bulk rebuild. ``features``: feature
    shards of the accepted clips and their index (drawn from their own generator, so the catalog is the same)."""
    rng = np.random.default_rng(seed)
    made = _Features(root, np.random.default_rng(seed + 1)) if features else None
    now = dt.datetime.now(dt.UTC)
    songs = [rng.integers(0, 2**32, size=FP_ITEMS, dtype=np.uint64).astype(np.uint32) for _ in range(max(1, n_sources // 200))]
    lineage = {"steps": [{"step": "clip", "tool": "ffmpeg", "version": "7.0", "params": {"fps": 8}},
                         {"step": "loudness", "tool": "pyloudnorm", "version": "0.1", "params": {"target_lufs": -14}}]}
    with cat.engine.begin() as conn:
        ann = [{"name": f"annotator{a}", "token_hash": f"h{a}", "created_at": now} for a in range(5)]
        conn.execute(insert(Annotator.__table__), ann)
    sources, clips, decisions, n_clips = [], [], [], 0

    def flush(force: bool = False) -> None:
        if len(clips) < BATCH and not force:
            return
        with cat.engine.begin() as conn:
            for table, rows in ((Source, sources), (Clip, clips), (Decision, decisions)):
                if rows:
                    conn.execute(insert(table.__table__), rows)
                rows.clear()

    for i in range(n_sources):
        sid = f"v{i:07d}"
        sources.append({"id": sid, "url": f"https://example.invalid/{sid}", "query": f"query {i % 47}",
                        "status": "done", "title": f"video {i}", "license": "cc-by", "duration_s": 200.0,
                        "created_at": now, "updated_at": now})
        song = songs[(i // 100) % len(songs)] if i % 100 == 0 else None  # 1 %: two uploads of each shared song
        for k in range(CLIPS_PER_SOURCE):
            cid, r = f"{sid}-{k * 60:05d}", rng.random()
            status = "accepted" if r < 0.6 else "rejected" if r < 0.8 else "pending_review"
            path = root.clip_path(cid)
            path.touch()
            clips.append({"id": cid, "source_id": sid, "start_s": k * 60.0, "duration_s": 60.0, "status": status,
                          "path": str(path.relative_to(root.path)), "lineage": lineage, "origin": "curated",
                          "music_sha256": f"{n_clips:064x}", "music_indexed": indexed, "music_fingerprint": _fp(rng, song if k == 0 else None),
                          "created_at": now, "updated_at": now})
            n_clips += 1
            if made is not None and status == "accepted":
                made.add(cid, sid, sources[-1]["query"])
            if status != "pending_review":
                for a in rng.choice(5, size=int(rng.integers(1, 4)), replace=False).tolist():
                    verdict = status[:-2] if rng.random() < 0.9 else ("reject" if status == "accepted" else "accept")
                    decisions.append({"clip_id": cid, "annotator_id": a + 1, "verdict": verdict, "reasons": [],
                                      "seconds_spent": 20.0, "created_at": now})
        flush()
    flush(force=True)
    if made is not None:
        made.close()
    return n_clips


def run_op(op: str, root: DataRoot, url: str, video: str = "v0000001") -> dict:
    """One operation in this process: {"op", "seconds", "rss_mb"}; ``video``: the one a takedown removes."""
    from dvmset.agreement_summary import agreement_report
    from dvmset.export import export_dataset
    from dvmset.lineage import record_lineage
    from dvmset.music_index import rebuild_index
    from dvmset.review_stats import progress
    from dvmset.status import shared_music, status_report
    from flows.curation.takedown import run_takedown

    cat = Catalog(url)
    t0, c0 = time.perf_counter(), time.process_time()
    if op in ("status", "status_again"):
        status_report(root, cat)
    elif op == "agreement_build":  # the first report counts every decision into the summary (once, after 0010)
        with cat.session() as s:
            agreement_report(s)
    elif op == "agreement":  # a page load during review: one decision made since the last report
        with cat.session() as s:
            s.add(Decision(clip_id="v0000002-00060", annotator_id=1, verdict="accept", reasons=[], seconds_spent=9.0))
        t0, c0 = time.perf_counter(), time.process_time()
        with cat.session() as s:
            agreement_report(s)
    elif op == "progress":
        with cat.session() as s:
            progress(s)
    elif op == "music_groups":
        shared_music(cat)
    elif op == "music_rebuild":
        rebuild_index(cat)
    elif op == "index_clip":  # a re-upload of the first source's (shared) song, made the way curation makes one
        with cat.session() as s:
            fp = s.get(Clip, "v0000000-00000").music_fingerprint
            s.merge(Source(id="new0000000", url="https://example.invalid/new", status="done", query="query 0"))
            s.flush()
            s.merge(Clip(id="new0000000-00000", source_id="new0000000", start_s=0.0, duration_s=60.0,
                         status="pending_review"))
        t0, c0 = time.perf_counter(), time.process_time()
        record_lineage(cat, "new0000000-00000", [], music_sha256=None, music_fingerprint=fp)
    elif op == "export":
        export_dataset(root, cat, "bench", release=True)
    elif op == "takedown":
        run_takedown(root, cat, video=video, reason="benchmark", wait_s=5.0)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    cat.dispose()
    return {"op": op, "seconds": round(seconds, 2), "cpu_s": round(cpu, 2),
            "rss_mb": round(_peak_kb() / 1024)}


def _peak_kb() -> int:
    """This process's peak RSS in KiB: ``VmHWM``, which starts again at exec. (``ru_maxrss`` keeps the parent's
    peak across fork and exec, so an operation would report at least what the builder held.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # not Linux


def _db_url(template: str | None, base: Path, size: int) -> tuple[str, str | None]:
    if not template:
        return f"sqlite:///{base / f'catalog-{size}.sqlite'}", None
    import psycopg

    name = f"bench_scale_{size}"
    admin = template.replace("postgresql+psycopg", "postgresql").format(db="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return template.format(db=name), name


def measure(size: int, template: str | None, base: Path, ops: tuple[str, ...] = OPS,
            indexed: bool = False, features: bool = False) -> dict[str, dict]:
    root = DataRoot(base / f"root-{size}").ensure()
    url, _ = _db_url(template, base, size)
    cat = Catalog(url)
    t0 = time.perf_counter()
    n_clips = build(cat, root, size, indexed=indexed, features=features)
    cat.dispose()
    shards = len(FeatureStore(root.features_dir).shard_files())
    print(f"# {size} sources, {n_clips} clips{f', {shards} feature shards' if features else ''}: built in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    out = {}
    for op in ops:
        got = subprocess.run([sys.executable, __file__, "--op", op, "--root", str(root.path), "--db", url],
                             capture_output=True, text=True)
        if got.returncode != 0:
            out[op] = {"op": op, "seconds": float("nan"), "cpu_s": float("nan"), "rss_mb": 0, "error": got.stderr.strip().splitlines()[-1]}
        else:
            out[op] = json.loads(got.stdout.strip().splitlines()[-1])
        r = out[op]
        print(f"  {op:13s} {r['seconds']:8.2f} s {r['cpu_s']:8.2f} s CPU {r['rss_mb']:6d} MB {r.get('error', '')}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sources", type=int, default=1000, help="N: measures N and 10 N sources")
    ap.add_argument("--sizes", help="comma-separated source counts instead of N,10N")
    ap.add_argument("--db", help="Postgres URL template with {db}; SQLite when absent")
    ap.add_argument("--ops", help=f"comma-separated operations to time (default all: {','.join(OPS[1:])})")
    ap.add_argument("--mark-indexed", action="store_true",
                    help="build the clips as already in the shared-music index (no links): skips music_rebuild's "
                         "one-off cost in status at sizes where it does not fit in time")
    ap.add_argument("--features", action="store_true",
                    help="also write feature shards of every accepted clip and their index (tiny tensors)")
    ap.add_argument("--keep", metavar="DIR",
                    help="build in DIR and leave it there (catalog-N.sqlite, root-N): a later run of one operation "
                         "reuses it with --op OP --root DIR/root-N --db sqlite:///DIR/catalog-N.sqlite")
    ap.add_argument("--op", choices=OPS, help=argparse.SUPPRESS)
    ap.add_argument("--video", default="v0000001",
                    help="the video --op takedown takes down (another each time on a kept catalog)")
    ap.add_argument("--root", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.op:
        print(json.dumps(run_op(args.op, DataRoot(Path(args.root)), args.db, args.video)))
        return
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else [args.sources, 10 * args.sources]
    ops = ("baseline", *args.ops.split(",")) if args.ops else OPS
    unknown = set(ops) - set(OPS)
    if unknown:
        ap.error(f"unknown operations {sorted(unknown)}: choose from {OPS[1:]}")
    with contextlib.ExitStack() as stack:
        base = Path(args.keep) if args.keep else Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="bench-scale-")))
        base.mkdir(parents=True, exist_ok=True)
        if held := [s for s in sizes if (base / f"root-{s}").exists()]:
            ap.error(f"{base} already holds a catalog of {held} sources: remove it or name another folder")
        results = {size: measure(size, args.db, base, ops, args.mark_indexed, args.features) for size in sizes}
    lo, hi = results[sizes[0]], results[sizes[-1]]
    print(f"\n| operation (wall s / CPU s / peak RSS) | {' | '.join(f'{s} sources' for s in sizes)} "
          f"| growth {sizes[0]} -> {sizes[-1]} (CPU, RSS over baseline) |")
    print(f"|---|{'---|' * len(sizes)}---|")
    base_lo, base_hi = lo["baseline"]["rss_mb"], hi["baseline"]["rss_mb"]
    for op in ops[1:]:
        cells = [f"{results[s][op]['seconds']:.2f} / {results[s][op]['cpu_s']:.2f} s, {results[s][op]['rss_mb']} MB"
                 for s in sizes]
        cpu = hi[op]["cpu_s"] / lo[op]["cpu_s"] if lo[op]["cpu_s"] else float("nan")
        mem = (hi[op]["rss_mb"] - base_hi) / max(lo[op]["rss_mb"] - base_lo, 1)
        print(f"| {op} | {' | '.join(cells)} | {cpu:.1f}x, {mem:.1f}x |")

if __name__ == "__main__":
    main()
