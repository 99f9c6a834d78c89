"""Training throughput: data loading vs the step rate on the debug model, and one step's peak memory at
MusicGen-small scale with random weights (CPU unless --device cuda).

    python benchmarks/bench_train.py [--clips 32] [--window-s 30] [--batch-size 16] [--steps 3] [--workers 2]
                                     [--small-batch 1] [--skip-small] [--device cpu|cuda] [--precision fp32]
                                     [--threads 1]

Prints ratios measured in this one run. Goal (issue 10): the loader delivers batches at least 20x faster
than the training step consumes them. The peak-memory step runs in a fresh process (its own peak RSS, or
torch.cuda.max_memory_allocated on a GPU).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from dvmset.dataset import FeatureWindows, epoch_batches
from dvmset.shards import FeatureStore, ShardEntry, write_shard
from model.config import VidMusicianConfig
from model.training.config import TrainConfig
from model.training.step import new_state, train_step
from model.vidmusician import VidMusician

IDENTITY = json.dumps({"identity": {"format": "vidmusician-features/2", "clip_model": "tiny", "pretrained": None,
                                    "codec": "tiny", "clip_s": 60, "fps": 25, "token_rate": 50,
                                    "sample_rate": 32000}})


def make_store(directory: Path, clips: int, clip_s: int, dim: int) -> Path:
    rng = np.random.default_rng(0)
    store = FeatureStore(directory)
    entries = []
    for i in range(clips):
        n = clip_s * 50
        t = {"global": rng.standard_normal((clip_s, dim)).astype(np.float16),
             "rhythm": rng.random(n).astype(np.float32), "rhythm_global": rng.random(n).astype(np.float32),
             "codes": rng.integers(0, 2048, (4, n)).astype(np.int16)}
        entries.append(ShardEntry(f"clip-{i:04d}", t, IDENTITY, split="train"))
    for k in range(0, clips, 16):
        store.append(write_shard(store.shard_path(k // 16), entries[k:k + 16]))
    return directory


def loader_rate(ds: FeatureWindows, batch: int, workers: int, n_batches: int) -> float:
    """Batches per second, after the first (worker start-up) batch."""
    batches = (epoch_batches(len(ds), batch, 0, 0) * (n_batches // max(1, len(ds) // batch) + 2))[: n_batches + 1]
    it = iter(DataLoader(ds, batch_sampler=batches, num_workers=workers))
    next(it)
    t0 = time.perf_counter()
    count = sum(1 for _ in it)
    return count / (time.perf_counter() - t0)


def step_rate(ds: FeatureWindows, cfg: TrainConfig, steps: int, device: str) -> float:
    model = VidMusician.from_config(VidMusicianConfig.debug(clip_dim=ds.spec().clip_dim), device=device)
    state = new_state(model, cfg)
    batches = epoch_batches(len(ds), cfg.batch_size, 0, 0)
    loaded = list(DataLoader(ds, batch_sampler=(batches * (steps + 1))[: steps + 1]))
    train_step(state, loaded[0])  # warm-up: allocator, first-call paths
    t0 = time.perf_counter()
    for batch in loaded[1:]:
        train_step(state, batch)
    if device == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - t0)


def small_step_memory(batch: int, window_s: int, device: str, precision: str) -> dict:
    """Run in a child process: build MusicGen-small + T5-base (random), one stage-2 step; memory in GiB."""
    from model.backbone import build_backbone
    from model.semantic import build_t5_encoder

    cfg = VidMusicianConfig.small(clip_dim=768)
    backbone = build_backbone("small", device=device, with_codec=False)
    t5 = build_t5_encoder("t5-base", load_weights=False).to(device)
    model = VidMusician(cfg, backbone, t5).to(device)
    built = _peak(device)
    n = window_s * 50
    g = torch.Generator().manual_seed(0)
    data = {"global": torch.randn(batch, window_s, 768, generator=g), "rhythm": torch.rand(batch, n, generator=g),
            "codes": torch.randint(0, 2048, (batch, 4, n), generator=g)}
    state = new_state(model, TrainConfig(stage=2, batch_size=batch, precision=precision, window_s=window_s,
                                         warmup_steps=0))
    t0 = time.perf_counter()
    train_step(state, data)
    return {"built_gib": built, "peak_gib": _peak(device), "step_s": time.perf_counter() - t0,
            "trainable": model.num_trainable()}


def _peak(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=32)
    ap.add_argument("--window-s", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--small-batch", type=int, default=1)
    ap.add_argument("--skip-small", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: on a shared CPU, spinning OpenMP workers slow tiny models 5x)")
    ap.add_argument("--child-small", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.child_small:
        print(json.dumps(small_step_memory(args.small_batch, args.window_s, args.device, args.precision)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        ds = FeatureWindows(make_store(Path(tmp) / "features", args.clips, 60, 768), window_s=args.window_s)
        n_batches = max(4, 2 * len(ds) // args.batch_size)
        load0 = loader_rate(ds, args.batch_size, 0, n_batches)
        loadw = loader_rate(ds, args.batch_size, args.workers, n_batches)
        cfg = TrainConfig(stage=2, batch_size=args.batch_size, window_s=args.window_s, warmup_steps=0,
                          precision=args.precision)
        steps = step_rate(ds, cfg, args.steps, args.device)
    print(f"debug model, batch {args.batch_size} x {args.window_s} s windows, CLIP D 768, device {args.device}:")
    print(f"  training step          {steps:8.3f} steps/s ({1 / steps:.3f} s/step)")
    print(f"  loader, 0 workers      {load0:8.2f} batches/s  = {load0 / steps:8.1f}x the step rate")
    print(f"  loader, {args.workers} workers      {loadw:8.2f} batches/s  = {loadw / steps:8.1f}x the step rate "
          "(goal >= 20x)")
    if args.skip_small:
        return
    child = subprocess.run([sys.executable, __file__, "--child-small", "--small-batch", str(args.small_batch),
                            "--threads", str(args.threads),
                            "--window-s", str(args.window_s), "--device", args.device, "--precision", args.precision],
                           capture_output=True, text=True, check=True)
    mem = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"MusicGen-small scale (random weights, {mem['trainable']:,} trainable), batch {args.small_batch} x "
          f"{args.window_s} s, stage 2, {args.precision}, {args.device}:")
    print(f"  model built            {mem['built_gib']:8.2f} GiB peak")
    print(f"  one training step      {mem['peak_gib']:8.2f} GiB peak  = {mem['peak_gib'] / mem['built_gib']:.2f}x "
          f"the built model, {mem['step_s']:.1f} s")


if __name__ == "__main__":
    main()
