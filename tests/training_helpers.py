"""A tiny feature store for the training tests, written with dvmset.shards like the features stage would.

Each clip's codes use a vocabulary of 8 tokens of its own (drawn per clip), so a model conditioned on the
clip's global features can learn them quickly: an overfit test sees the loss fall far below ln(2048).
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from dvmset.shards import FeatureStore, ShardEntry, write_shard

CLIP_D = 16
REPO = Path(__file__).resolve().parents[1]


def identity(codec: str = "tiny", clip_model: str = "tiny", token_rate: int = 50) -> str:
    return json.dumps({"identity": {"format": "vidmusician-features/2", "clip_model": clip_model, "pretrained": None,
                                    "codec": codec, "clip_s": 4, "fps": 25, "token_rate": token_rate,
                                    "sample_rate": 32000}}, sort_keys=True)


def clip_tensors(clip_s: int, dim: int, rng: np.random.Generator, n_codebooks: int = 4) -> dict[str, np.ndarray]:
    n = clip_s * 50
    vocab = rng.choice(2048, size=8, replace=False)
    return {"global": rng.standard_normal((clip_s, dim)).astype(np.float16),
            "rhythm": rng.random(n).astype(np.float32),
            "rhythm_global": rng.random(n).astype(np.float32),
            "codes": vocab[rng.integers(0, 8, (n_codebooks, n))].astype(np.int16)}


def write_store(features_dir: Path, n_train: int = 6, n_test: int = 2, clip_s: int = 4, dim: int = CLIP_D,
                seed: int = 0, codec: str = "tiny", clips_per_shard: int = 4, n_valid: int = 0) -> Path:
    """features_dir with shards + index.parquet; clips train-00..., test-00..., valid-00... with their split set
    (train validates on the valid ones; none by default)."""
    rng = np.random.default_rng(seed)
    entries = [ShardEntry(f"{split}-{i:02d}", clip_tensors(clip_s, dim, rng), identity(codec), query="q",
                          source_id=f"src-{split}-{i}", split=split)
               for split, n in (("train", n_train), ("test", n_test), ("valid", n_valid)) for i in range(n)]
    store = FeatureStore(features_dir)
    features_dir.mkdir(parents=True, exist_ok=True)
    for k in range(0, len(entries), clips_per_shard):
        rows = write_shard(store.shard_path(k // clips_per_shard), entries[k : k + clips_per_shard])
        store.append(rows)
    return features_dir


def debug_train_args(data: Path, out: Path, *extra: str) -> list[str]:
    """`vidmusician train` arguments for the debug backbone on a write_store() store."""
    return ["train", "--data", str(data), "--out", str(out), "--backbone", "debug", "--window-s", "2",
            "--batch-size", "2", "--warmup", "4", "--stage1-lr", "1e-3", "--stage2-lr", "1e-4", "--device", "cpu",
            "--no-progress", *extra]


def cli_env(threads: int = 1) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(REPO))
    return env


def run_main(args: list[str]) -> int:
    """`vidmusician ARGS` in this process on one torch thread (what cli_env gives a subprocess): the same
    numbers as a CLI process, without another interpreter start."""
    import torch

    from flows.cli import main

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return main(args)
    finally:
        torch.set_num_threads(before)


def run_cli(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=REPO, env=cli_env(), capture_output=True,
                          text=True, timeout=timeout)


@contextlib.contextmanager
def train_log() -> Iterator[list[str]]:
    """The messages the training loop's logger lets through at the level the CLI leaves it (no -v), whatever
    stream an earlier test's CLI handler still points at."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Collect()
    logger = logging.getLogger("flows.training.train")
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)


def csv_rows(path: Path) -> list[dict]:
    """A metrics.csv's rows as dicts (every value text, an empty cell '')."""
    with path.open() as fh:
        return list(csv.DictReader(fh))
