"""Fixtures for the features tests: 25 fps clips of chosen length, tiny CLIP / codec, a filled catalog."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipeline.synth import make_sample_video


@pytest.fixture(scope="session")
def clip_factory(tmp_path_factory: pytest.TempPathFactory):
    """make(seconds, cut_every_s=..., size=...) -> a cached H.264 25 fps + AAC clip."""
    base = tmp_path_factory.mktemp("clips25")
    made: dict[tuple, Path] = {}

    def make(seconds: float = 4.0, cut_every_s: float | None = 2.0, size: str = "96x64") -> Path:
        key = (seconds, cut_every_s, size)
        if key not in made:
            dest = base / f"clip-{len(made)}.mp4"
            made[key] = make_sample_video(dest, seconds, size=size, fps=25, cut_every_s=cut_every_s)
        return made[key]

    return make


@pytest.fixture(scope="session")
def static_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s of a still frame, lossless, with a hard cut (a box appears) at exactly 2.0 s = frame 50."""
    dest = tmp_path_factory.mktemp("static") / "static.mp4"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "color=c=0x3366cc:s=96x64:r=25:d=4",
         "-f", "lavfi", "-i", "sine=f=440:d=4:sample_rate=32000",
         "-vf", "drawbox=x=0:y=0:w=48:h=64:color=yellow:t=fill:enable='gte(t,2)'",
         "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p", "-c:a", "aac", str(dest)],
        check=True, capture_output=True,
    )
    return dest


@pytest.fixture(scope="session")
def tiny_encoder():
    from pipeline.clip_encoder import ClipEncoderSpec, load_clip_encoder

    return load_clip_encoder(ClipEncoderSpec.tiny())


@pytest.fixture(scope="session")
def tiny_codec():
    from pipeline.codec import load_codec

    return load_codec("tiny")
