"""The shard check that ``status`` runs, remembered per shard: a shard found sound is not read again until
its file or its index rows change, so ``status`` costs nothing per unchanged clip (dvmset.shards.check_shards
reads every tensor: ~1 ms per clip, minutes at 360 K clips).

What is remembered (``features/checked.json``): for each sound shard, its size, mtime (ns) and a hash of its
index rows (clip ids and sha256) and of the codebook checked against. A shard rewritten, truncated, replaced or
re-indexed is read again; a change that keeps the size and the mtime (bit rot under a preserved mtime) is
not seen here; ``train`` still checks every shard it reads in full.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pandas as pd

from dvmset.io import atomic_path
from dvmset.shards import FeatureStore, ShardProblem, check_shards

log = logging.getLogger(__name__)

CHECKED_NAME = "checked.json"


def _stamp(path: Path, rows: pd.DataFrame, card: int | None) -> list | None:
    """What must be unchanged for a remembered check to hold; None when the file is missing."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    h = hashlib.sha256(f"{card}\n".encode())
    for clip_id, sha in zip(rows.clip_id, rows.sha256, strict=True):
        h.update(f"{clip_id}\t{sha}\n".encode())
    return [st.st_size, st.st_mtime_ns, h.hexdigest()]


def _load(path: Path) -> dict:
    try:
        got = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return got if isinstance(got, dict) else {}


def check_changed_shards(features_dir: str | Path, *, card: int | None = None) -> list[ShardProblem]:
    """:func:`dvmset.shards.check_shards` of the shards not known sound: those whose file or index rows
    changed since they were last found sound; remembers the sound ones. Returns every problem found."""
    features_dir = Path(features_dir)
    index = FeatureStore(features_dir).index()
    memo_path = features_dir / CHECKED_NAME
    memo = _load(memo_path)
    stamps = {str(shard): _stamp(features_dir / str(shard), rows, card)
              for shard, rows in index.groupby("shard", sort=True)}
    todo = [shard for shard, stamp in stamps.items() if stamp is None or memo.get(shard) != stamp]
    problems = check_shards(features_dir, index[index.shard.isin(todo)].clip_id, card=card) if todo else []
    bad = {p.shard for p in problems}
    fresh = {shard: stamp for shard, stamp in stamps.items()
             if stamp is not None and shard not in bad and (shard in todo or memo.get(shard) == stamp)}
    if fresh != memo and features_dir.is_dir():
        try:
            with atomic_path(memo_path) as tmp:
                tmp.write_text(json.dumps(fresh, sort_keys=True))
        except OSError as err:  # a read-only store: check again next time
            log.warning("could not remember the shard check in %s: %s", memo_path, err)
    return problems
