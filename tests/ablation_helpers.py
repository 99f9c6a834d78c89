"""A tiny export for `vidmusician ablate` on the debug backbone: ROOT/features (training_helpers.write_store,
CLIP width 32 = the built-in 'tiny' CLIP, so generation encodes the test videos with it) and
ROOT/exports/tiny (manifest + audio/ links) whose test clips are real little videos with hard cuts and a beat."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from training_helpers import write_store

from pipeline.synth import make_sample_video

TINY_CLIP_D = 32


def tiny_export(root: Path, n_train: int = 4, n_test: int = 2, clip_s: int = 4, n_valid: int = 2) -> Path:
    """An export folder (manifest, test clips' videos) over a tiny feature store; best.pt is chosen on valid."""
    write_store(root / "features", n_train=n_train, n_test=n_test, clip_s=clip_s, dim=TINY_CLIP_D, n_valid=n_valid)
    export = root / "exports" / "tiny"
    (export / "audio").mkdir(parents=True)
    (root / "clips").mkdir()
    rows = []
    for split, n in (("train", n_train), ("test", n_test), ("valid", n_valid)):
        for i in range(n):
            clip_id = f"{split}-{i:02d}"
            clip = root / "clips" / f"{clip_id}.mp4"
            if split == "test":  # only the test clips are decoded (generation and evaluation)
                make_sample_video(clip, float(clip_s), size="64x48", fps=25, cut_every_s=1.0 + 0.5 * i,
                                  bpm=120.0 + 20 * i)
                (export / "audio" / f"{clip_id}.mp4").symlink_to(clip)
            rows.append({"clip_id": clip_id, "split": split, "path": f"clips/{clip_id}.mp4"})
    pd.DataFrame(rows).to_parquet(export / "manifest.parquet", index=False)
    return export


def debug_ablate_args(export: Path, out: Path, *extra: str) -> list[str]:
    """`vidmusician ablate` on the debug backbone: 2 s windows, a few steps per stage, Rhythm only."""
    return ["ablate", "--data", str(export), "--out", str(out), "--backbone", "debug", "--window-s", "2",
            "--batch-size", "2", "--warmup", "2", "--stage1-lr", "1e-3", "--stage2-lr", "1e-4", "--steps", "4",
            "--val-every", "2", "--ckpt-every", "2", "--device", "cpu", "--no-progress", "--workers", "0",
            "--window", "2", "--stride", "1", "--top-k", "50", "--metrics", "rhythm", *extra]
