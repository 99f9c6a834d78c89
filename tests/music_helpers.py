"""Music tracks for the fingerprint and duplicate-music tests: a melody of stepped notes over a pulse,
made in numpy and encoded by ffmpeg, different per ``seed``, so two seeds are two different recordings."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from pipeline.media import run_ffmpeg

RATE = 44_100


def melody(seed: int, duration_s: float, step_s: float = 0.5) -> np.ndarray:
    """[2, T] float32: a note per ``step_s`` from a pentatonic scale with its fifth, and a kick per note."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s * RATE)) / RATE
    scale = np.array([220.0, 247.5, 277.2, 330.0, 370.0, 440.0, 495.0, 554.4])
    f = scale[rng.integers(0, len(scale), size=int(duration_s / step_s) + 1)][(t // step_s).astype(int)]
    phase = 2 * np.pi * np.cumsum(f) / RATE
    x = 0.3 * np.sin(phase) + 0.15 * np.sin(1.5 * phase)
    x += 0.2 * np.exp(-20 * np.mod(t, step_s)) * np.sin(2 * np.pi * 80 * t)
    return np.stack([x, x]).astype(np.float32)


def make_track(dest: Path, seed: int, duration_s: float = 30.0, bitrate: str = "192k") -> Path:
    """An AAC (``.m4a``) or any-extension encode of :func:`melody`."""
    pcm = dest.with_suffix(".src.wav")
    with wave.open(str(pcm), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((melody(seed, duration_s).T * 32767).astype("<i2").tobytes())
    run_ffmpeg(["-i", pcm, "-c:a", "aac", "-b:a", bitrate, dest], stage="test")
    pcm.unlink()
    return dest


def put_music_under(video: Path, track: Path, dest: Path, bitrate: str = "192k") -> Path:
    """``video``'s picture with ``track`` as its only audio (re-encoded at ``bitrate``)."""
    run_ffmpeg(["-i", video, "-i", track, "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac",
                "-b:a", bitrate, "-shortest", dest], stage="test")
    return dest
