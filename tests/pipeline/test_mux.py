"""Muxing generated music: the picture copied packet for packet, the audio fitted to the video's exact duration."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import StageError
from pipeline.media import ffprobe_json, run_ffmpeg
from pipeline.mux import mux_audio, video_track

FPS = 30000 / 1001


def _make_video(dest: Path, duration: float = 7.3, extra_audio: int = 2) -> Path:
    """H.264 at 29.97 fps (B-frames on) with `extra_audio` tone tracks at 440, 880, ... Hz."""
    args = ["-f", "lavfi", "-i", f"testsrc2=size=96x64:rate=30000/1001:duration={duration}"]
    for i in range(extra_audio):
        args += ["-f", "lavfi", "-i", f"sine=frequency={440 * (i + 1)}:sample_rate=44100:duration={duration}"]
    args += ["-map", "0:v"] + [x for i in range(extra_audio) for x in ("-map", f"{i + 1}:a")]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-pix_fmt", "yuv420p", "-c:a", "aac", str(dest)]
    run_ffmpeg(args, stage="test")
    return dest


def _make_wav(dest: Path, seconds: float, freq: float = 1000.0) -> Path:
    run_ffmpeg(["-f", "lavfi", "-i", f"sine=frequency={freq}:sample_rate=32000:duration={seconds}",
                "-ac", "1", "-c:a", "pcm_s16le", str(dest)], stage="test")
    return dest


def _video_packets(path: Path) -> list[tuple[str, ...]]:
    """(pts, duration, size, md5) of every packet of the first video stream, read without decoding."""
    out = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(path), "-map", "0:v:0", "-c", "copy",
                          "-f", "framemd5", "-"], capture_output=True, text=True, check=True).stdout
    rows = [ln.split(",") for ln in out.splitlines() if ln and not ln.startswith("#")]
    return [tuple(c.strip() for c in r[2:]) for r in rows]  # drop stream index and dts


def _streams(path: Path) -> list[dict]:
    return ffprobe_json(path, stage="test")["streams"]


def _dominant_hz(path: Path) -> float:
    pcm = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(path), "-map", "0:a:0", "-ac", "1",
                          "-ar", "16000", "-f", "f32le", "-"], capture_output=True, check=True).stdout
    wav = np.frombuffer(pcm, np.float32)[16000:32000]  # one second from the middle of the first seconds
    spec = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    return float(np.argmax(spec)) * 16000 / len(wav)


@pytest.fixture(scope="module")
def video_7_3(tmp_path_factory) -> Path:
    return _make_video(tmp_path_factory.mktemp("mux") / "in.mp4")


@pytest.mark.parametrize("audio_s", [5.0, 7.3, 9.0])
def test_picture_copied_audio_fitted_and_other_tracks_dropped(video_7_3, tmp_path, audio_s):
    wav = _make_wav(tmp_path / "music.wav", audio_s)
    out = mux_audio(video_7_3, wav, tmp_path / "out.mp4")

    assert _video_packets(out) == _video_packets(video_7_3)  # every packet, byte for byte, same timing
    streams_in, streams_out = _streams(video_7_3), _streams(out)
    assert [s["codec_type"] for s in streams_in] == ["video", "audio", "audio"]
    assert [s["codec_type"] for s in streams_out] == ["video", "audio"]  # both original tracks dropped
    v_in = video_track(ffprobe_json(video_7_3, stage="test"))
    v_out, a_out = float(streams_out[0]["duration"]), float(streams_out[1]["duration"])
    assert abs(v_in.duration_s - 7.3) < 1.5 / FPS
    assert abs(v_out - v_in.duration_s) <= 1 / FPS  # duration within one frame of the input's
    assert abs(a_out - v_out) <= 1 / FPS  # the audio lasts as long as the picture: padded or cut
    assert abs(_dominant_hz(out) - 1000.0) < 5.0  # the sound is ours, not the input's 440/880 Hz tracks


def test_padding_is_silence_and_nothing_is_written_on_failure(video_7_3, tmp_path):
    wav = _make_wav(tmp_path / "short.wav", 3.0)
    out = mux_audio(video_7_3, wav, tmp_path / "out.mp4")
    pcm = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(out), "-map", "0:a:0", "-ac", "1",
                          "-ar", "16000", "-f", "f32le", "-"], capture_output=True, check=True).stdout
    wav_out = np.frombuffer(pcm, np.float32)
    assert np.abs(wav_out[16000:int(2.8 * 16000)]).max() > 0.1  # the music
    assert np.abs(wav_out[int(3.3 * 16000):]).max() < 1e-3  # then silence up to the end of the picture

    audio_only = tmp_path / "audio_only.m4a"
    run_ffmpeg(["-f", "lavfi", "-i", "sine=duration=2", "-c:a", "aac", str(audio_only)], stage="test")
    with pytest.raises(StageError, match="no video stream"):
        mux_audio(audio_only, wav, tmp_path / "bad.mp4")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    with pytest.raises(StageError, match="corrupt.mp4"):
        mux_audio(corrupt, wav, tmp_path / "bad.mp4")
    assert not (tmp_path / "bad.mp4").exists()
    assert not list(tmp_path.glob(".bad*"))  # no partial file left behind


def test_matroska_duration_tag_is_read():
    probe = {"streams": [{"index": 0, "codec_type": "video", "codec_name": "vp9",
                          "tags": {"DURATION": "00:01:02.500000000"}}], "format": {"duration": "70.0"}}
    assert video_track(probe).duration_s == pytest.approx(62.5)
    cover = {"streams": [{"index": 0, "codec_type": "video", "disposition": {"attached_pic": 1}}]}
    with pytest.raises(StageError, match="no video stream"):
        video_track(cover)
