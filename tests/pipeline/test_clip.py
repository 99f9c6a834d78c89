"""Clip planning invariants (pure) and the frame-accurate cut measured with ffprobe and decoded frames."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline.clip import ClipSpan, clip_id, cut_clip, plan_clips
from pipeline.errors import StageError
from pipeline.media import run_ffmpeg

NTSC = 30000 / 1001
DURATIONS = [
    0.0, 1.0, 59.0, 59.96, 59.99, 59.999999, 60.0, 60.04, 61.0, 90.5, 119.99, 120.0, 120.5,
    179.999, 180.0, 3599.99, 3600.0, 3600.04, 7322.5,
    1798 / NTSC, 1799 / NTSC, 1800 / NTSC, 3597 / NTSC, 107892 / NTSC,  # sources at 29.97 fps
    1439 / 23.976, 1440 / 23.976, 2878 / 24.0,
]  # fmt: skip


@pytest.mark.parametrize("clip_s", [60.0, 30.0, 10.0, 2.4, 0.04])
@pytest.mark.parametrize("duration", DURATIONS)
def test_planned_windows_never_overlap_nor_exceed_the_source(duration, clip_s):
    fps = 25
    spans = plan_clips(duration, clip_s, fps=fps)
    step = math.ceil(clip_s - 1e-9)
    for span in spans:
        assert span.duration_s == clip_s
        assert span.start_s >= 0 and span.end_s <= duration + 1e-9
        assert span.start_s == int(span.start_s), "starts on whole seconds (clip ids use them)"
        assert round(span.start_s * fps) == span.start_s * fps, "starts on whole frames"
        assert round(span.duration_s * fps) == pytest.approx(span.duration_s * fps)
    for a, b in zip(spans, spans[1:], strict=False):
        assert b.start_s >= a.end_s, "no overlap"
        assert b.start_s - a.start_s == step, "back to back, one step apart"
    # as many windows as fit: another one would run past the end
    n_fit = 0 if duration + 1e-9 < clip_s else int((duration + 1e-9 - clip_s) // step) + 1
    assert len(spans) == n_fit
    if spans:  # centred: half the leftover before the block, rounded down to whole seconds
        before, after = spans[0].start_s, duration - spans[-1].end_s
        assert -1e-9 <= after - before < 2.0
    assert len({clip_id("v", s.start_s) for s in spans}) == len(spans), "clip ids are unique"


def test_named_edge_cases():
    assert plan_clips(60.0) == [ClipSpan(0.0, 60.0)]
    assert plan_clips(59.99) == []
    assert plan_clips(119.99) == [ClipSpan(29.0, 60.0)]
    assert plan_clips(120.0) == [ClipSpan(0.0, 60.0), ClipSpan(60.0, 60.0)]
    hour = plan_clips(3600.0)
    assert len(hour) == 60 and hour[0].start_s == 0.0 and hour[-1].end_s == 3600.0
    assert [s.start_s for s in plan_clips(3600.0, max_clips=3)] == [1710.0, 1770.0, 1830.0]
    assert plan_clips(3600.0, max_clips=0) == []
    assert [s.start_s for s in plan_clips(1800 / NTSC)] == [0.0]  # 60.06 s at 29.97 fps


def test_bad_plans_are_refused():
    with pytest.raises(ValueError, match="whole number of frames"):
        plan_clips(600.0, 10.01)
    for kwargs in ({"duration_s": -1.0}, {"duration_s": math.nan}, {"duration_s": 100.0, "clip_s": 0.0},
                   {"duration_s": 100.0, "max_clips": -1}, {"duration_s": 100.0, "fps": 0},
                   {"duration_s": 100.0, "fps": 29.97}):  # fmt: skip
        with pytest.raises(ValueError):
            plan_clips(**kwargs)
    for start, dur in ((-1.0, 60.0), (0.0, 0.0), (0.0, -5.0), (math.inf, 60.0)):
        with pytest.raises(ValueError):
            ClipSpan(start, dur)


def test_clip_id():
    assert clip_id("dQw4w9WgXcQ", 65.0) == "dQw4w9WgXcQ-00065"
    assert clip_id("v", 0) == "v-00000" and clip_id("v", 59.99) == "v-00059"
    with pytest.raises(ValueError):
        clip_id("v", -1)


# -------------------------------------------------------------------------------------- the cut


def _ffprobe(path: Path, *extra: str) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", *extra, "-print_format", "json", "-show_streams", "-show_format", str(path)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout)


def _frames(path: Path) -> np.ndarray:
    """Every decoded frame, shrunk to 32x24 RGB → [n_frames, 2304] float."""
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-vf", "scale=32:24", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    return np.frombuffer(raw, np.uint8).reshape(-1, 24 * 32 * 3).astype(np.float32)


def _top_level_boxes(path: Path) -> list[str]:
    """The MP4's top-level box types in file order."""
    data, pos, out = path.read_bytes(), 0, []
    while pos + 8 <= len(data):
        size, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8].decode("latin-1")
        if size == 1:
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
        out.append(kind)
        if size < 8:
            break
        pos += size
    return out


def _pcm(path: Path, sr: int = 8000) -> np.ndarray:
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-vn", "-ac", "1", "-ar", str(sr), "-f", "f32le", "-"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    return np.frombuffer(raw, np.float32)


@pytest.fixture(scope="module")
def cut60(media_factory, tmp_path_factory):
    """One 60 s clip from a 63 s, 30 fps source (hue flips every 4 s) with a separate music WAV.

    The music is silent until 31.0 s on the source's timeline, then a 1 kHz tone: the clip (start
    1 s) must hear it from 30.0 s, proving the music was taken, and taken from the same window.
    """
    src = media_factory("clip63", duration_s=63.0, size="160x120", fps=30, cut_every_s=4.0, audio=False)
    base = tmp_path_factory.mktemp("cut")
    music = base / "music.wav"
    run_ffmpeg(["-f", "lavfi", "-i", "aevalsrc='gte(t,31)*0.5*sin(2*PI*1000*t)':s=44100:c=stereo:d=63",
                str(music)], stage="test")  # fmt: skip
    spans = plan_clips(63.0, 60.0, fps=25)
    assert spans == [ClipSpan(1.0, 60.0)]
    dest = base / "clips" / f"{clip_id('clip63', spans[0].start_s)}.mp4"
    return cut_clip(src, music, spans[0], dest, fps=25).path


@pytest.mark.slow
def test_cut_clip_is_exactly_60s_1500_frames_with_60s_of_music(cut60):
    data = _ffprobe(cut60, "-count_frames")
    video = next(s for s in data["streams"] if s["codec_type"] == "video")
    audio = next(s for s in data["streams"] if s["codec_type"] == "audio")
    assert int(video["nb_read_frames"]) == 1500
    assert video["codec_name"] == "h264" and video["pix_fmt"] == "yuv420p"
    assert video["r_frame_rate"] == "25/1" and video["avg_frame_rate"] == "25/1"
    assert float(video["duration"]) == pytest.approx(60.0, abs=1 / 25)
    assert audio["codec_name"] == "aac"
    sr = int(audio["sample_rate"])
    assert float(audio["duration"]) == pytest.approx(60.0, abs=1024 / sr)
    assert _top_level_boxes(cut60).index("moov") < _top_level_boxes(cut60).index("mdat"), "+faststart"
    assert not [p for p in cut60.parent.iterdir() if p != cut60], "no temp file left beside the clip"


@pytest.mark.slow
def test_cut_is_frame_accurate(cut60):
    """The source's hue flips at 4, 8, 12 … s; the clip starts at 1 s → flips at frames 75, 175, 275 …"""
    frames = _frames(cut60)
    assert len(frames) == 1500
    jumps = np.abs(np.diff(frames, axis=0)).mean(axis=1)  # [1499]: change from frame i to i+1
    flips = set((np.flatnonzero(jumps > jumps.max() / 2) + 1).tolist())
    assert flips == {int((t - 1.0) * 25) for t in range(4, 61, 4)}


@pytest.mark.slow
def test_cut_takes_the_music_from_the_same_window(cut60):
    sr = 8000
    pcm = _pcm(cut60, sr)
    assert len(pcm) == pytest.approx(60 * sr, abs=1024)
    rms = np.sqrt(np.mean(pcm[: len(pcm) // 100 * 100].reshape(-1, sr // 100) ** 2, axis=1))  # 10 ms frames
    onset = np.flatnonzero(rms > 0.1)[0] / 100
    assert onset == pytest.approx(30.0, abs=0.03)
    spectrum = np.abs(np.fft.rfft(pcm[35 * sr : 36 * sr]))
    assert np.argmax(spectrum) == pytest.approx(1000, abs=2), "the 1 kHz music"


def test_cut_with_source_audio_and_a_short_window(media_factory, tmp_path):
    src = media_factory("short8", duration_s=8.0, size="160x120", fps=30)
    out = cut_clip(src, None, ClipSpan(2.0, 4.0), tmp_path / "c.mp4").path
    data = _ffprobe(out, "-count_frames")
    video = next(s for s in data["streams"] if s["codec_type"] == "video")
    audio = next(s for s in data["streams"] if s["codec_type"] == "audio")
    assert int(video["nb_read_frames"]) == 100
    assert float(audio["duration"]) == pytest.approx(4.0, abs=1024 / int(audio["sample_rate"]))


def test_cut_errors_are_readable(media_factory, odd_media, tmp_path):
    src = media_factory("short8", duration_s=8.0, size="160x120", fps=30)
    with pytest.raises(StageError, match=r"^clip: window 6\.00-10\.00 s exceeds"):
        cut_clip(src, None, ClipSpan(6.0, 4.0), tmp_path / "a.mp4")
    with pytest.raises(StageError, match="video_only.mp4: no audio stream"):
        cut_clip(odd_media["video_only"], None, ClipSpan(0.0, 1.0), tmp_path / "b.mp4")
    with pytest.raises(StageError, match="corrupt.mp4: not a readable media file"):
        cut_clip(src, odd_media["corrupt"], ClipSpan(0.0, 1.0), tmp_path / "c.mp4")
    assert not list(tmp_path.glob("*.mp4")), "a failed cut leaves no file"


def test_cut_real_recording_with_separate_music(shared_media, tmp_path):
    """bikes_cuts_10s.mp4 (25 fps, no audio, hard cuts) + a real MP3 as the music.

    Frame accuracy on real footage: the clip's frame-to-frame changes line up with the source's
    shifted by exactly 50 frames (2.0 s), not by a keyframe-snapped amount.
    """
    src = shared_media / "bikes_cuts_10s.mp4"
    out = cut_clip(src, shared_media / "kick_120bpm.mp3", ClipSpan(2.0, 5.0), tmp_path / "bikes.mp4").path
    clip_jumps = np.abs(np.diff(_frames(out), axis=0)).mean(axis=1)  # [124]
    src_jumps = np.abs(np.diff(_frames(src), axis=0)).mean(axis=1)  # [249]
    assert len(clip_jumps) == 124
    score = {k: np.corrcoef(clip_jumps, src_jumps[k : k + 124])[0, 1] for k in range(40, 61)}
    assert max(score, key=score.get) == 50 and score[50] > 0.9
    audio = next(s for s in _ffprobe(out)["streams"] if s["codec_type"] == "audio")
    assert float(audio["duration"]) == pytest.approx(5.0, abs=1024 / int(audio["sample_rate"]))
