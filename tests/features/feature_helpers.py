"""Synthetic feature tensors whose values name their own time, for the shard and dataset tests."""

from __future__ import annotations

import json

import numpy as np

from dvmset.shards import ShardEntry

CONFIG = json.dumps({"identity": {"clip_model": "tiny"}})


def synthetic(clip_s: int = 6, dim: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """Tensors whose values name their own time: global[t] = t, rhythm[i] = codes[:, i] = i."""
    rng = np.random.default_rng(seed)
    glob = (np.arange(clip_s)[:, None] + rng.uniform(0, 0.1, (clip_s, dim))).astype(np.float16)
    n = clip_s * 50
    return {"global": glob, "rhythm": np.arange(n, dtype=np.float32) / 50,
            "codes": np.stack([np.arange(n) + 10000 * k for k in range(2)]).astype(np.int16)}


def entry(clip_id: str, seed: int = 0, **kw) -> ShardEntry:
    return ShardEntry(clip_id, synthetic(seed=seed), CONFIG, **kw)
