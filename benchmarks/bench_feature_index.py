"""What the feature index costs the commands that scan it, whole (as before) and a batch at a time (now), on a
synthetic index of N clips (no catalog, no shards).

    python benchmarks/bench_feature_index.py [--clips 1800000]

Each operation runs in its own process, which reports its time and its peak RSS (``VmHWM``, reset after the
imports through ``/proc/self/clear_refs``; Linux) above the RSS the imports left; the whole-frame baseline is measured in the same run, and the ratio printed:
- status: how many accepted clips the index holds (the catalog's accepted ids arrive in partitions of 50,000;
  here they are the index's own ids). Before: a Python set of the index's ids. Now: one Arrow lookup.
- splits: an export writes every clip's split into the index. Before: a dict of every clip's split, the frame
  mapped and saved. Now: ``FeatureStore.set_splits`` with a batch lookup (the export plan's ``splits_of``).
- stamps: the shard check's hash of each shard's index rows. Before: a groupby and a Python loop per row.
  Now: ``dvmset.shard_checks._row_hashes`` (the same hashes, checked equal).
- check: the rows the shard check reads tensors for, when the last shard is new (a ``status`` after a features
  run). Before: ``check_shards`` read the frame, filtered it by a set of the shard's ids and grouped it. Now:
  ``FeatureStore.shard_runs`` (shards=...) a batch at a time. Only the index part: there are no shard files.
- append: one index write of a new 64-clip shard (``FeatureStore.append``, a streamed rewrite of the index).
  A features run paid it once per shard; it now writes every ``INDEX_EVERY_S`` and at its end. Not a
  before/after pair: the time of one write, from which a run's total follows.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from dvmset.shard_checks import _row_hashes
from dvmset.shards import FeatureStore

PARTITION = 50_000  # what status streams the catalog's accepted ids in


def build(n: int, folder: Path) -> None:
    config = json.dumps({"identity": {"clip_model": "ViT-L-14", "pretrained": "openai", "fps": 2,
                                      "codec": "facebook/encodec_32khz", "token_rate": 50, "sample_rate": 32000,
                                      "format": 2}})
    k = np.arange(n)
    ids = np.char.add(np.char.add("v", np.char.zfill((k // 2).astype(str), 7)), np.where(k % 2, "-00060", "-00000"))
    FeatureStore(folder)._save(pd.DataFrame({
        "clip_id": ids, "shard": np.char.add("shard-", np.char.zfill((k // 256).astype(str), 5)),
        "split": None, "query": np.char.add("q", (k % 1000).astype(str)),
        "source_id": np.char.add("v", (k // 2).astype(str)), "clip_s": 60, "embed_dim": 768,
        "sha256": np.char.zfill(k.astype(str), 64), "config": config}))


def _split(clip_id: str) -> str:
    return "test" if clip_id.endswith("0-00000") else "train"


def _accepted(store: FeatureStore):  # noqa: ANN202 - the catalog's partitions of accepted ids
    ids = store.index_column("clip_id").to_pylist()
    return (ids[i:i + PARTITION] for i in range(0, len(ids), PARTITION))


def run(op: str, folder: Path) -> object:
    store = FeatureStore(folder)
    if op == "status-whole":
        indexed = set(store.index().clip_id)
        return sum(len(indexed.intersection(part)) for part in _accepted(store))
    if op == "status-batches":
        indexed = store.index_column("clip_id")
        ids = pa.chunked_array([pa.array(p, pa.string()) for p in _accepted(store)], pa.string())
        return pc.sum(pc.is_in(ids, value_set=indexed)).as_py()
    if op == "splits-whole":
        df = store.index()
        splits = {c: _split(c) for c in df.clip_id.tolist()}  # what plan.splits_of(every id) returned
        new = df.clip_id.map(splits)
        changed = (new.notna() & (new != df.split)) | (new.isna() & df.split.notna())
        df["split"] = new
        store._save(df)
        return int(changed.sum())
    if op == "splits-batches":
        return store.set_splits(lambda ids: {c: _split(c) for c in ids}, exclusive=True)
    if op == "stamps-whole":
        out = {}
        for shard, rows in store.index().groupby("shard", sort=True):
            h = hashlib.sha256(b"2048\n")
            for clip_id, sha in zip(rows.clip_id, rows.sha256, strict=True):
                h.update(f"{clip_id}\t{sha}\n".encode())
            out[shard] = h.hexdigest()
        return hashlib.sha256(json.dumps(out, sort_keys=True).encode()).hexdigest()
    if op == "stamps-batches":
        out = {s: h.hexdigest() for s, h in _row_hashes(store, 2048).items()}
        return hashlib.sha256(json.dumps(out, sort_keys=True).encode()).hexdigest()
    if op in ("check-whole", "check-batches"):
        last = pc.max(store.index_column("shard")).as_py()
        if op == "check-whole":
            index = store.index()
            index = index[index.clip_id.isin(set(store.ids_in_shards([last])))]
            runs = [(s, list(r.clip_id), list(r.sha256)) for s, r in index.groupby("shard", sort=True)]
        else:
            runs = list(store.shard_runs(shards=[last]))
        return hashlib.sha256(json.dumps(runs).encode()).hexdigest()
    if op == "append":
        rows = [{**store.row(store.index_column("clip_id")[0].as_py()), "clip_id": f"z{k:07d}-00000",
                 "shard": "shard-99999"} for k in range(64)]
        t0 = time.perf_counter()
        store.append(rows)
        return {"append_s": time.perf_counter() - t0, "clips": store.count()}
    raise ValueError(op)


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(op: str, folder: Path) -> None:
    Path("/proc/self/clear_refs").write_text("5")  # the peak RSS starts again from here (Linux)
    base = _status_kb("VmRSS")  # what the imports hold
    t0 = time.perf_counter()
    result = run(op, folder)
    seconds = time.perf_counter() - t0
    peak = _status_kb("VmHWM")
    print(json.dumps({"seconds": seconds, "mb": (peak - base) / 1024, "result": result}))


def measure(op: str, folder: Path) -> dict:
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, __file__, "--child", op, "--folder", str(folder)], capture_output=True,
                         text=True, check=True, cwd=repo, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=1_800_000)
    ap.add_argument("--child")
    ap.add_argument("--folder", type=Path)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.folder)
    with tempfile.TemporaryDirectory(prefix="bench-feature-index-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        build(args.clips, folder)
        print(f"feature index of {args.clips} clips: built in {time.perf_counter() - t0:.1f} s, "
              f"{(folder / 'index.parquet').stat().st_size / 2**20:.0f} MB on disk")
        for name in ("status", "splits", "stamps", "check"):
            whole = measure(f"{name}-whole", folder)
            if name == "splits":
                build(args.clips, folder)  # the same starting index for both
            now = measure(f"{name}-batches", folder)
            assert now["result"] == whole["result"], (name, now["result"], whole["result"])
            print(f"{name:>7}: whole {whole['seconds']:.2f} s, {whole['mb']:.0f} MB; a batch at a time "
                  f"{now['seconds']:.2f} s, {now['mb']:.0f} MB (time {whole['seconds'] / now['seconds']:.2f}x, "
                  f"memory {whole['mb'] / max(now['mb'], 1):.1f}x less); results equal")
        one = measure("append", folder)
        shards = args.clips / 64
        t = one["result"]["append_s"]
        assert one["result"]["clips"] == args.clips + 64
        print(f" append: one index write of a 64-clip shard at {args.clips} clips: {t:.2f} s, {one['mb']:.0f} MB; a "
              f"run that wrote after each shard made ~{shards:.0f} writes, on average of half this index: "
              f"~{shards * t / 2 / 60:.0f} min of index writes in all")
    return None


if __name__ == "__main__":
    main()
