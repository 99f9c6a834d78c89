"""By-hand benchmark of the model on CPU: teacher-forced forward+backward and streaming generation.

    python benchmarks/bench_model.py [--scale debug|small] [--seconds 30] [--batch 2] [--threads 1]

`small` builds MusicGen-small's architecture with random weights (no download) and a random t5-base.
"""

from __future__ import annotations

import argparse
import time

import torch

from model.backbone import build_backbone
from model.config import VidMusicianConfig
from model.generation import SamplingParams
from model.semantic import build_t5_encoder
from model.vidmusician import VidMusician


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", default="debug", choices=["debug", "small"])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--gen-seconds", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    clip_dim = 16 if args.scale == "debug" else 768
    config = VidMusicianConfig.debug(clip_dim) if args.scale == "debug" else VidMusicianConfig.small(clip_dim)
    t0 = time.perf_counter()
    backbone = build_backbone(args.scale)
    model = VidMusician(config, backbone, build_t5_encoder(config.semantic.t5, load_weights=False))
    print(f"build {time.perf_counter() - t0:.2f}s; trainable {model.num_trainable():,}")
    B, T = args.batch, int(args.seconds * 50)
    feats = torch.randn(B, max(1, int(args.seconds)), clip_dim)
    rhythm, codes = torch.rand(B, T), torch.randint(0, 2048, (B, 4, T))
    model.train()
    for i in range(3):
        t0 = time.perf_counter()
        loss, _ = model.loss(feats, rhythm, codes)
        loss.backward()
        print(f"fwd+bwd {i}: {time.perf_counter() - t0:.3f}s (B={B}, {args.seconds:g}s window, loss {loss.item():.3f})")
    model.eval()
    t0 = time.perf_counter()
    model.generate_codes(feats[:1], rhythm[:1], args.gen_seconds, SamplingParams(), seed=0)
    dt = time.perf_counter() - t0
    steps = int(args.gen_seconds * 50) + 3
    print(f"generate {args.gen_seconds:g}s (CFG batch 2): {dt:.2f}s, {steps / dt:.1f} steps/s")


if __name__ == "__main__":
    main()
