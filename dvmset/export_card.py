"""An export's DATASET.md with what sharing adds to dvmset.card's: the sources that share music (kept in
one split) and the release files. Written by the export and again by a takedown (from export.json)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dvmset.batches import batches
from dvmset.card import CARD_FACTS, FACT_COLUMNS, clip_facts, dataset_card
from dvmset.card_scratch import CardArrow, CardCounts, CardScratch, card_scratch, manifest_batches
from dvmset.catalog import Catalog
from dvmset.constants import TEST_FRACTION
from dvmset.hub_card import hub_metadata
from dvmset.io import atomic_path, atomic_write_text
from dvmset.music_groups import MusicGroup, union_groups
from dvmset.music_index import catch_up, stored_links
from dvmset.records import ClipStatus
from dvmset.release import FILES as RELEASE_FILES
from dvmset.shards import FeatureStore

EXPORT_PARAMS = "export.json"  # test_fraction, valid_fraction, seed, missing: what the card is regenerated with


def groups_section(groups: list[MusicGroup], split_of: dict[str, str]) -> list[str]:
    lines = ["## Shared music", ""]
    if not groups:
        return [*lines, "No two source videos share music (chromaprint fingerprints of the processed music).", ""]
    lines += [f"{len(groups)} groups of source videos carry the same music (chromaprint, bit error rate at "
              "the best alignment); each group is kept in one split.", "",
              "| group | split | sources | clips sharing it |", "|---:|---|---|---|"]
    for n, g in enumerate(groups, 1):
        splits = sorted({split_of[c] for c in g.clips if c in split_of})
        lines.append(f"| {n} | {', '.join(splits) or '-'} | {', '.join(g.sources)} | {', '.join(g.clips)} |")
    return [*lines, ""]


def _card_groups(cat: Catalog, m: CardCounts) -> tuple[list[MusicGroup], dict[str, str]]:
    """The shared-music groups among the manifest's clips (dvmset.music_index's stored links), and the split of each clip in a group: the links are few,
    so only their clips are looked up in the manifest (no set or dict of every clip)."""
    catch_up(cat)
    links = stored_links(cat, [s.value for s in ClipStatus])
    split_of = m.splits_of(c for r in links for c in r[:2])
    groups = union_groups(r for r in links if r[0] in split_of and r[1] in split_of)
    return groups, split_of


def features_made(features_dir: Path, m: CardCounts) -> list[dict]:
    """The identities (CLIP, codec, rates, format) of the features runs that made the export's clips' shards,
    each with its number of clips: the manifest's clips per shard (its ``shard`` column), and each shard's run
    config from the index (one run writes a shard), read a batch of its shard and config columns at a time. A
    shard no longer in the index counts no clip."""
    per_shard = {shard: n for shard, n in m.value_counts("clips", "shard") if shard is not None}
    counts: Counter[str] = Counter()
    for batch in FeatureStore(features_dir).index_batches(["shard", "config"]) if per_shard else ():
        pairs = pa.Table.from_batches([batch]).group_by(["shard", "config"]).aggregate([])
        for shard, raw in zip(pairs["shard"].to_pylist(), pairs["config"].to_pylist(), strict=True):
            counts[raw] += per_shard.pop(shard, 0)  # a shard's rows across two batches: counted once
    return [{**json.loads(raw).get("identity", {}), "clips": n} for raw, n in sorted(counts.items()) if n]


def _gather_facts(out: Path, m: CardScratch, cat: Catalog, reuse: bool) -> dict[str, object]:
    """The manifest's card facts into ``m``: from the kept card_facts.parquet when ``reuse`` and it holds every
    clip, else from the catalog a batch of ids at a time. Returns the dtypes the facts frame has: the kept
    file's, or what pandas infers over every row (so card_facts.parquet is what one whole frame writes)."""
    kept = out / CARD_FACTS
    if reuse and kept.is_file() and m.facts_from_file(kept):
        return pq.read_schema(kept).empty_table().to_pandas().dtypes.to_dict()
    for ids in m.id_batches():
        m.add_facts(clip_facts(cat, ids))
    return pd.DataFrame(m.fact_witness(), columns=list(FACT_COLUMNS)).dtypes.to_dict()


def _facts_table(kept: Path, ids: pa.ChunkedArray, cat: Catalog, reuse: bool) -> pa.Table:
    """The card facts of ``ids`` in that order: from the kept card_facts.parquet when ``reuse`` and it holds
    every one, else from the catalog."""
    if reuse and kept.is_file():
        with pq.ParquetFile(kept) as f:
            facts = f.read()
        if (rows := _kept_rows(facts["clip_id"], ids)) is not None:  # a takedown's: a few rows left out
            return facts.filter(rows)
        at = pc.index_in(ids, value_set=facts["clip_id"])
        if at.null_count == 0:
            return facts.take(at)
    rows = [r for chunk in batches(ids.to_pylist()) for r in clip_facts(cat, chunk)]
    return pa.Table.from_pandas(pd.DataFrame(rows, columns=list(FACT_COLUMNS)), preserve_index=False)


def _kept_rows(full: pa.ChunkedArray, part: pa.ChunkedArray, most: int = 64) -> np.ndarray | None:
    """A mask of ``full`` that leaves ``part``, when ``part`` is ``full`` in the same order with at most ``most``
    values left out (the facts kept beside a manifest a takedown took a video's clips from); else None. Each
    left-out value is found by one vectorised comparison of what follows: no hash of every id."""
    full, part = full.combine_chunks().cast(pa.string()), part.combine_chunks().cast(pa.string())
    n, m = len(full), len(part)
    if not 0 <= n - m <= most:
        return None
    out, i, j = [], 0, 0  # next row of full, of part
    while j < m and n - i > m - j:
        eq = pc.equal(full.slice(i, m - j), part.slice(j))
        first = pc.index(eq, False).as_py() if eq.null_count == 0 else -1
        if first < 0:
            break
        out.append(i + first)
        i, j = i + first + 1, j + first
    if pc.any(pc.not_equal(full.slice(i, m - j), part.slice(j))).as_py():
        return None
    keep = np.ones(n, dtype=bool)
    keep[out] = False
    keep[i + m - j:] = False  # rows of full past the end of part
    return keep


def _write_facts(path: Path, m: CardScratch, dtypes: dict[str, object]) -> None:
    """card_facts.parquet from the facts in ``m``, a batch at a time, every batch with the whole frame's dtypes."""
    empty = pd.DataFrame({c: pd.Series([], dtype=t) for c, t in dtypes.items()})
    schema = pa.Schema.from_pandas(empty, preserve_index=False)
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for rows in m.fact_batches():
            frame = pd.DataFrame(rows, columns=list(FACT_COLUMNS)).astype(dtypes)
            writer.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False))


def write_card(out: Path, manifest: pa.Table | Path, cat: Catalog, *, test_fraction: float = TEST_FRACTION,
               seed: int = 0, missing: int = 0, valid_fraction: float = 0.0, reuse_facts: bool = False,
               **_: object) -> Path:
    """DATASET.md of the export at ``out`` (ROOT/exports/NAME) for ``manifest``: its card columns
    (:data:`~dvmset.card_scratch.MANIFEST_COLUMNS`) as an Arrow table, counted there, or the manifest's parquet
    file, read a batch at a time into a scratch database (memory flat whatever the clip count). ``valid_fraction`` is 0
    for an export.json written before valid splits existed. The per-clip facts the card counts are kept beside
    it (``card_facts.parquet``); ``reuse_facts`` (a takedown: fewer clips, nothing else changed) reads them
    back for the manifest's clips instead of reading every clip's row from the catalog."""
    params = (test_fraction, seed, missing, valid_fraction)
    if isinstance(manifest, pa.Table):  # a takedown's: its few columns counted in Arrow, in C
        facts = _facts_table(out / CARD_FACTS, manifest["clip_id"], cat, reuse_facts)
        with atomic_path(out / CARD_FACTS) as tmp:
            pq.write_table(facts, tmp)
        return _write_card_text(out, CardArrow(manifest, facts), cat, *params)
    with card_scratch(FACT_COLUMNS) as m:
        for batch in manifest_batches(manifest):
            m.add_manifest(batch)
        m.index()
        _write_facts(out / CARD_FACTS, m, _gather_facts(out, m, cat, reuse_facts))
        return _write_card_text(out, m, cat, *params)


def _write_card_text(out: Path, m: CardCounts, cat: Catalog, test_fraction: float, seed: int, missing: int,
                     valid_fraction: float) -> Path:
    """DATASET.md from the counts of the manifest and its facts in ``m``: the hub's YAML block, the card, the
    shared music and the release's files."""
    made = features_made(out.parent.parent / "features", m)
    card = dataset_card(out.name, m, cat, test_fraction, seed, missing, valid_fraction, made)
    extra = groups_section(*_card_groups(cat, m))
    meta = hub_metadata(out.name, m.rows("clips"), dict(m.value_counts("clips", "license")))
    if (out / RELEASE_FILES[0]).exists():
        extra += ["## Release", "",
                  "`release.parquet` / `release.csv`: ids only (video id, URL, window, split, query, verdict and "
                  "agreement, licence, checksum and fingerprint of the processed music), no media; "
                  + ("each a folder of parts (`part-NNNN-of-NNNN`, a video's clips in one part): "
                     "`pd.read_parquet(\"release.parquet\")` reads them all; "
                     if (out / RELEASE_FILES[0]).is_dir() else "")
                  + "`release.json`: the processing parameters. Rebuild with "
                  "`vidmusician curate --from-release release.parquet --root DIR`.", ""]
    return atomic_write_text(out / "DATASET.md", meta  # the hub's YAML block first
                             + card.rstrip("\n") + "\n\n" + "\n".join(extra))
