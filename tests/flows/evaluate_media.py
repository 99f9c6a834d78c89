"""Synthetic media for the evaluation tests: videos with hard cuts at known times, click tracks on a grid."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

COLOURS = ("red", "blue", "green", "yellow", "magenta", "cyan", "white", "black")


def cut_video(path: Path, cuts: list[float], duration: float, fps: int = 25, size: str = "160x90") -> Path:
    """Solid colour scenes changing at ``cuts`` (s), H.264 at ``fps``; no cuts = a static picture."""
    bounds = [0.0, *cuts, duration]
    args, labels = [], []
    for i, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False)):
        args += ["-f", "lavfi", "-i", f"color=c={COLOURS[i % len(COLOURS)]}:s={size}:r={fps}:d={b - a:.4f}"]
        labels.append(f"[{i}:v]")
    graph = f"{''.join(labels)}concat=n={len(labels)}:v=1:a=0[v]"
    subprocess.run(["ffmpeg", "-nostdin", "-y", "-loglevel", "error", *args, "-filter_complex", graph, "-map", "[v]",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-r", str(fps), str(path)], check=True)
    return path


def clicks(times: list[float] | np.ndarray, duration: float, sr: int = 44100, seed: int = 0) -> np.ndarray:
    """A click track [N]: a 20 ms decaying noise burst at each time, over faint noise."""
    rng = np.random.default_rng(seed)
    y = (0.001 * rng.standard_normal(int(duration * sr))).astype(np.float32)
    n = int(0.02 * sr)
    burst = (rng.standard_normal(n) * np.exp(-np.arange(n) / (0.003 * sr)) * 0.8).astype(np.float32)
    for t in times:
        i = int(round(t * sr))
        seg = y[i: i + n]
        seg += burst[: seg.size]
    return y


def write_clicks(path: Path, times, duration: float, sr: int = 44100, seed: int = 0) -> Path:
    sf.write(path, clicks(times, duration, sr, seed), sr, subtype="FLOAT" if Path(path).suffix == ".wav" else None)
    return path


def grid(start: float, step: float, duration: float) -> np.ndarray:
    return np.arange(start, duration - 1e-9, step)


def calibrated_tiny_cnn14(seed: int = 0) -> dict:
    """A tiny random Cnn14's state dict with BatchNorm statistics measured on a few signals.

    With fresh BatchNorm statistics (mean 0, var 1), the signal vanishes through the untrained
    conv stack and every input gets one embedding. Measured statistics keep inputs apart, so FD and
    KL differ between different music, as they do with trained weights.
    """
    import torch

    from model.metrics.panns import PannsConfig, _build_cnn14

    torch.manual_seed(seed)
    module = _build_cnn14(PannsConfig.tiny())
    t = torch.arange(32000) / 16000.0
    signals = torch.stack([0.1 * torch.randn(32000), 0.3 * torch.sin(2 * torch.pi * 440 * t),
                           0.3 * torch.sin(2 * torch.pi * 3000 * t), torch.from_numpy(clicks(grid(0.25, 0.5, 2.0), 2.0, 16000))])
    for bn in module.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.reset_running_stats()
            bn.momentum = None  # a plain average over the calibration batch
    module.train()
    with torch.no_grad():
        module(signals)
    return module.eval().state_dict()
