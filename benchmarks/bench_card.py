"""What a takedown's card and manifest rewrite cost per clip, on synthetic columns of N clips (no catalog).

    python benchmarks/bench_card.py [--clips 1800000] [--seed 0]

Prints, each against its baseline measured in the same run:
- the six QC hints flagged one distinct value at a time (a real hint has about as many distinct values as
  clips) and over the whole column at once (the takedown's ``CardArrow``), with the counts checked equal; then
  the same in the export's scratch-database card (``CardScratch``): one value at a time (before) and
  ``FLAG_CHUNK`` numbers at once (now);
- a manifest-shaped table written to parquet with every column dictionary-encoded (pyarrow's default) and
  with only the few-valued ones (``dvmset.line_filter._dictionary_columns``, what a takedown's rewrite uses):
  time to write and fsync, and the file's size;
- the feature index of N clips read whole as ``FeatureStore.index()`` does: its frame's size in memory (the
  commands that scan every clip now read it a batch at a time: ``bench_feature_index.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dvmset.card import FACT_COLUMNS, QC_HINTS
from dvmset.card_scratch import FLAG_CHUNK, CardArrow, CardScratch, card_scratch
from dvmset.line_filter import _dictionary_columns
from dvmset.shards import FeatureStore


def _timed(fn):  # noqa: ANN001, ANN202 - a thunk; (seconds, its result)
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _one_by_one(card: CardArrow | CardScratch) -> list[tuple[int, int]]:
    """(flagged, known) per QC hint, each distinct value tested once in Python (the card code before)."""
    out = []
    for col, _, _, flag in QC_HINTS:
        flagged = known = 0
        for v, k in card.value_counts("facts", col):
            if v is not None:
                known += k
                flagged += k if flag(v) else 0
        out.append((flagged, known))
    return out


def qc_flags(n: int, rng: np.random.Generator) -> None:
    facts = pa.table({c: rng.normal(0.0, 20.0, n) for c, *_ in QC_HINTS})
    card = CardArrow(pa.table({"clip_id": pa.array(np.arange(n).astype(str))}), facts)

    slow, want = _timed(lambda: _one_by_one(card))
    fast, got = _timed(lambda: [card.flagged(c, f) for c, _, _, f in QC_HINTS])
    assert got == want, (got, want)
    print(f"QC hints, 6 columns x {n} values: one distinct value at a time {slow:.2f} s, the column at once "
          f"{fast:.3f} s ({slow / fast:.0f}x), counts equal")

    with card_scratch(FACT_COLUMNS) as m:  # the export's card: the same facts in its scratch database
        cols = [facts[c].to_numpy() for c, *_ in QC_HINTS]
        m.add_facts((f"v{i}", None, None, None, *(float(c[i]) for c in cols)) for i in range(n))
        slow, old = _timed(lambda: _one_by_one(m))
        fast, now = _timed(lambda: [m.flagged(c, f) for c, _, _, f in QC_HINTS])
    assert old == now == want, (old, now, want)
    print(f"the export's scratch-database card, the same hints: one distinct value at a time {slow:.2f} s, "
          f"{FLAG_CHUNK} numbers at once {fast:.2f} s ({slow / fast:.1f}x), counts equal")


def manifest_write(n: int, rng: np.random.Generator, tmp: Path) -> None:
    ids = np.char.add(np.char.add("v", np.char.zfill((np.arange(n) // 2).astype(str), 7)), "-00060")
    table = pa.table({
        "clip_id": ids, "source_id": np.char.add("v", np.char.zfill((np.arange(n) // 2).astype(str), 7)),
        "query": np.char.add("query ", (np.arange(n) % 1000).astype(str)),
        "split": rng.choice(["train", "valid", "test"], n, p=[0.86, 0.07, 0.07]),
        "path": np.char.add("clips/", np.char.add(ids, ".mp4")), "start_s": np.full(n, 60.0),
        "duration_s": np.full(n, 60.0), "title": np.char.add("video ", np.arange(n).astype(str)),
        "license": rng.choice(["Creative Commons Attribution license (reuse allowed)", "Standard YouTube License"], n),
    })
    chosen = _dictionary_columns(table.slice(0, 100_000))
    sizes = {}

    def write(name: str, **opts: object) -> float:
        path = tmp / f"{name}.parquet"
        t0 = time.perf_counter()
        with pq.ParquetWriter(path, table.schema, **opts) as w:
            w.write_table(table, row_group_size=10_000)
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        sizes[name] = path.stat().st_size / 2**20
        return time.perf_counter() - t0

    every, few = write("every"), write("few", use_dictionary=chosen)
    print(f"manifest of {n} rows: every column dictionary-encoded {every:.2f} s, {sizes['every']:.0f} MB; "
          f"only {', '.join(chosen)} {few:.2f} s, {sizes['few']:.0f} MB ({every / few:.1f}x)")


def feature_index(n: int, tmp: Path) -> None:
    config = json.dumps({"identity": {"clip_model": "ViT-L-14", "pretrained": "openai", "fps": 2,
                                      "codec": "facebook/encodec_32khz", "token_rate": 50, "sample_rate": 32000,
                                      "format": 2}})
    k = np.arange(n)
    pd.DataFrame({"clip_id": np.char.add("v", k.astype(str)), "shard": np.char.add("shard-", (k // 256).astype(str)),
                  "split": np.where(k % 10 == 0, "test", "train"), "query": np.char.add("q", (k % 1000).astype(str)),
                  "source_id": np.char.add("v", (k // 2).astype(str)), "clip_s": 60, "embed_dim": 768,
                  "sha256": np.char.zfill(k.astype(str), 64), "config": config}).to_parquet(tmp / "index.parquet",
                                                                                             index=False)
    seconds, frame = _timed(lambda: FeatureStore(tmp).index())
    print(f"feature index of {n} clips: read whole in {seconds:.2f} s, "
          f"{frame.memory_usage(deep=True).sum() / 2**20:.0f} MB as a frame")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=1_800_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-card-") as tmp:
        qc_flags(args.clips, rng)
        manifest_write(args.clips, rng, Path(tmp))
        feature_index(args.clips, Path(tmp))


if __name__ == "__main__":
    main()
