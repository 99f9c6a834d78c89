"""Synthetic feature tensors whose values name their own time, for the shard and dataset tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from dvmset.records import ClipStatus, SourceStatus
from dvmset.shards import ShardEntry
from dvmset.tables import Clip, Source

CONFIG = json.dumps({"identity": {"clip_model": "tiny"}})


def synthetic(clip_s: int = 6, dim: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """Tensors whose values name their own time: global[t] = t, rhythm[i] = i / 50 = rhythm_global[i] - 1000,
    codes[k, i] = i + 10000 k."""
    rng = np.random.default_rng(seed)
    glob = (np.arange(clip_s)[:, None] + rng.uniform(0, 0.1, (clip_s, dim))).astype(np.float16)
    n = clip_s * 50
    return {"global": glob, "rhythm": np.arange(n, dtype=np.float32) / 50,
            "rhythm_global": np.arange(n, dtype=np.float32) / 50 + 1000,
            "codes": np.stack([np.arange(n) + 10000 * k for k in range(2)]).astype(np.int16)}


def entry(clip_id: str, seed: int = 0, **kw) -> ShardEntry:
    return ShardEntry(clip_id, synthetic(seed=seed), CONFIG, **kw)


def add_clips(catalog, root, clip_file: Path, layout: dict[str, tuple[str, int]],
              status: str = ClipStatus.ACCEPTED) -> list[str]:
    """Insert sources {source_id: (query, n_clips)} with n clips each (files copied from ``clip_file``)."""
    ids = []
    with catalog.session() as s:
        for source_id, (query, n) in layout.items():
            s.add(Source(id=source_id, url=f"https://example.invalid/{source_id}", query=query,
                         status=SourceStatus.DONE, title=f"title {source_id}"))
            s.flush()  # no ORM relationship orders the inserts: sources first for the foreign key
            for k in range(n):
                clip_id = f"{source_id}-{k * 60:05d}"
                dest = root.clip_path(clip_id)
                shutil.copyfile(clip_file, dest)
                s.add(Clip(id=clip_id, source_id=source_id, start_s=k * 60.0, duration_s=4.0,
                           path=str(dest.relative_to(root.path)), status=status))
                ids.append(clip_id)
    return ids
