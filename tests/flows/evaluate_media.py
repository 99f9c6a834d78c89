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
