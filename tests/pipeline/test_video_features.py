"""A video's generation conditions: the features stage's own numbers, cached by content and by CLIP."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.clip_encoder import ClipEncoderSpec, load_clip_encoder
from pipeline.errors import StageError
from pipeline.features import ExtractConfig, video_features
from pipeline.media import run_ffmpeg
from pipeline.video_features import video_conditions


@pytest.fixture(scope="module")
def encoder():
    return load_clip_encoder(ClipEncoderSpec.tiny(), device="cpu")


def _video(dest: Path, duration: float, color: str | None = None) -> Path:
    src = f"color=c={color}:size=64x48:rate=30" if color else "testsrc2=size=64x48:rate=30000/1001"
    run_ffmpeg(["-f", "lavfi", "-i", f"{src}:duration={duration}", "-c:v", "libx264", "-preset", "ultrafast",
                "-pix_fmt", "yuv420p", str(dest)], stage="test")
    return dest


@pytest.mark.slow
def test_conditions_are_the_features_stage_numbers_and_are_cached_by_content(encoder, tmp_path):
    video = _video(tmp_path / "a.mp4", 3.4)
    cache = tmp_path / "cache"
    cond = video_conditions(video, encoder, encoder_key="tiny:None", cache_dir=cache)
    assert cond.duration_s == pytest.approx(3.4, abs=0.04) and cond.global_.shape == (4, 32)
    assert cond.rhythm.shape == (200,) and cond.rhythm.dtype == np.float32
    glob, rhythm, rhythm_global = video_features(video, encoder, ExtractConfig(clip_s=4, max_short_s=1.5))
    assert np.array_equal(cond.global_, glob) and np.array_equal(cond.rhythm, rhythm)
    assert np.array_equal(cond.rhythm_global, rhythm_global)

    (entry,) = cache.iterdir()
    renamed = tmp_path / "renamed.mp4"
    shutil.copy(video, renamed)
    again = video_conditions(renamed, encoder, encoder_key="tiny:None", cache_dir=cache)  # same bytes: a hit
    assert list(cache.iterdir()) == [entry] and np.array_equal(again.rhythm, cond.rhythm)
    video_conditions(video, encoder, encoder_key="ViT-B-32:openai", cache_dir=cache)  # another CLIP: a miss
    other = _video(tmp_path / "b.mp4", 3.4, color="red")
    flat = video_conditions(other, encoder, encoder_key="tiny:None", cache_dir=cache)  # other bytes: a miss
    assert len(list(cache.iterdir())) == 3
    assert np.abs(flat.rhythm).max() < 1e-4  # a still picture has no rhythm, unlike the moving pattern
    assert np.abs(cond.rhythm).max() > 1e-3

    part = video_conditions(video, encoder, encoder_key="tiny:None", cache_dir=cache, duration_s=2.0)
    assert part.global_.shape[0] == 2 and np.array_equal(part.rhythm, cond.rhythm[:100])  # one decode of 2 s


def test_unusable_videos_are_refused_with_the_reason(encoder, tmp_path):
    short = _video(tmp_path / "short.mp4", 0.6)
    with pytest.raises(StageError, match="at least 1 s"):
        video_conditions(short, encoder, encoder_key="tiny:None")
    with pytest.raises(StageError, match="longer than the video"):
        video_conditions(_video(tmp_path / "ok.mp4", 2.0), encoder, encoder_key="tiny:None", duration_s=5.0)
    no_frames = tmp_path / "no_frames.mp4"  # the encoder was given no frame: a file without a picture
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=2", "-frames:v", "0", "-c:v", "libx264",
                str(no_frames)], stage="test")
    with pytest.raises(StageError, match="video-features: no_frames.mp4"):
        video_conditions(no_frames, encoder, encoder_key="tiny:None")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"not a video at all" * 10)
    with pytest.raises(StageError, match="corrupt.mp4"):
        video_conditions(corrupt, encoder, encoder_key="tiny:None")
