"""Synthetic sources made with ffmpeg: scene cuts at known times and music-like audio with a beat.

Used by the demo and the tests, so both exercise the real tools on media whose truth is known.
"""

from __future__ import annotations

from pathlib import Path

from dvmset.io import atomic_path
from pipeline.media import run_ffmpeg


def make_sample_video(
    dest: str | Path,
    duration_s: float = 70.0,
    *,
    size: str = "320x240",
    fps: int = 30,
    cut_every_s: float | None = 4.0,
    bpm: float = 120.0,
    video: bool = True,
    audio: bool = True,
    tone_hz: float = 440.0,
    voice: bool = False,
) -> Path:
    """Write an MP4 (H.264 + AAC) with hard cuts every ``cut_every_s`` seconds and a beat at ``bpm``.

    The video is ffmpeg's moving test pattern; each cut flips the hue by 180 degrees, so the frame
    changes completely at known times. The audio is a chord plus a decaying kick on every beat;
    ``voice=True`` adds a vowel-like formant buzz in the middle third (a stand-in for speech).
    """
    if not video and not audio:
        raise ValueError("a sample needs a video or an audio stream")
    dest = Path(dest)
    args: list = []
    if video:
        args += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={duration_s}"]
    if audio:
        beat = 60.0 / bpm
        expr = (
            f"0.15*sin(2*PI*{tone_hz}*t)+0.1*sin(2*PI*{tone_hz * 1.25}*t)+0.1*sin(2*PI*{tone_hz * 1.5}*t)"
            f"+0.6*exp(-25*mod(t,{beat}))*sin(2*PI*55*t)"
        )
        if voice:
            lo, hi = duration_s / 3, 2 * duration_s / 3
            expr += f"+between(t,{lo},{hi})*0.3*sin(2*PI*700*t)*(0.5+0.5*sin(2*PI*120*t))"
        args += ["-f", "lavfi", "-i", f"aevalsrc='{expr}':s=44100:c=stereo:d={duration_s}"]
    if video:
        vf = "format=yuv420p"
        if cut_every_s:
            vf = f"hue=h='180*mod(floor(t/{cut_every_s}),2)',{vf}"
        args += ["-vf", vf, "-c:v", "libx264", "-preset", "ultrafast", "-g", str(fps)]
    if audio:
        args += ["-c:a", "aac", "-b:a", "128k"]
    with atomic_path(dest) as tmp:
        run_ffmpeg([*args, tmp], stage="synth")
    return dest
