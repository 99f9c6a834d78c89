"""The ffmpeg gateway: raw audio and frames through pipes, readable errors, timeouts, a missing tool."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import StageError
from pipeline.media import ffprobe_json, iter_frames, read_audio, read_frames, run_ffmpeg


@pytest.fixture(scope="module")
def grey_steps(tmp_path_factory: pytest.TempPathFactory):
    """2 s at 10 fps, 64x48: frame k is a flat grey of level 40+8*k (lossless), with a 1 kHz tone."""
    dest = tmp_path_factory.mktemp("media") / "steps.mkv"
    run_ffmpeg(["-f", "lavfi", "-i", "color=c=black:size=64x48:rate=10:duration=2",
                "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000:duration=2",
                "-vf", "geq=lum='40+8*N':cb=128:cr=128", "-c:v", "ffv1", "-pix_fmt", "yuv444p",
                "-c:a", "pcm_s16le", "-shortest", dest], stage="test")  # fmt: skip
    return dest


def test_read_audio_resamples_remixes_and_reads_a_span(grey_steps) -> None:
    wav = read_audio(grey_steps, rate=16000, channels=2, stage="t")
    assert wav.dtype == np.float32 and wav.shape == (2, 32000) and wav.flags.writeable
    np.testing.assert_array_equal(wav[0], wav[1])  # mono upmixed: both channels equal
    part = read_audio(grey_steps, rate=16000, channels=1, stage="t", start_s=0.5, duration_s=1.0)
    assert part.shape[0] == 1 and abs(part.shape[1] - 16000) <= 8  # the resampler may add a few samples
    spectrum = np.abs(np.fft.rfft(part[0]))
    assert np.fft.rfftfreq(part.shape[1], 1 / 16000)[spectrum.argmax()] == pytest.approx(1000, abs=2)


def test_read_audio_without_an_audio_stream_is_an_error_not_an_empty_array(odd_media) -> None:
    with pytest.raises(StageError) as err:
        read_audio(odd_media["video_only"], rate=16000, channels=1, stage="feat")
    assert str(err.value) == "feat: video_only.mp4: no audio stream" and err.value.permanent


@pytest.mark.parametrize("kind", ["corrupt", "empty"])
def test_read_audio_of_unreadable_files_names_the_file(odd_media, kind) -> None:
    with pytest.raises(StageError, match=odd_media[kind].name):
        read_audio(odd_media[kind], rate=16000, channels=1, stage="t")


def test_frames_come_in_order_with_their_content(grey_steps) -> None:
    frames = list(iter_frames(grey_steps, size=(32, 24), stage="t", pix_fmt="gray"))
    assert len(frames) == 20 and frames[0].shape == (24, 32)
    levels = [int(np.median(f)) for f in frames]
    assert np.diff(levels).min() >= 5, levels  # each frame once, in order
    rgb = read_frames(grey_steps, size=(16, 16), stage="t", fps=5, cover=True)
    assert rgb.shape == (10, 16, 16, 3)  # resampled to 5 fps, covered and cropped to a square


def test_batches_are_fresh_arrays_and_the_last_is_short(grey_steps) -> None:
    batches = list(iter_frames(grey_steps, size=(8, 8), stage="t", batch_size=6, max_frames=15))
    assert [b.shape[0] for b in batches] == [6, 6, 3]
    assert len({id(b.base) for b in batches}) == 3 and all(b.flags.writeable for b in batches)


def test_stopping_early_ends_the_decoder(grey_steps) -> None:
    it = iter_frames(grey_steps, size=(8, 8), stage="t")
    next(it)
    it.close()  # no error, no zombie: the finally clause killed and reaped ffmpeg


def test_frames_of_a_file_without_video(odd_media) -> None:
    with pytest.raises(StageError, match="audio_only.m4a: no video stream"):
        list(iter_frames(odd_media["audio_only"], size=(8, 8), stage="t"))


def test_a_timeout_is_a_retryable_stage_error(grey_steps) -> None:
    with pytest.raises(StageError, match="longer than") as err:
        run_ffmpeg(["-re", "-i", grey_steps, "-f", "null", "-"], stage="t", timeout_s=0.3)  # -re: real time, 2 s
    assert not err.value.permanent
    with pytest.raises(StageError, match="longer than"):
        list(iter_frames(grey_steps, size=(8, 8), stage="t", timeout_s=1e-3))


def test_a_missing_ffmpeg_says_what_to_install(grey_steps, monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    for call in (lambda: run_ffmpeg(["-version"], stage="t"), lambda: ffprobe_json(grey_steps, stage="t"),
                 lambda: read_audio(grey_steps, rate=8000, channels=1, stage="t"),
                 lambda: next(iter_frames(grey_steps, size=(8, 8), stage="t"))):
        with pytest.raises(StageError, match="install Debian's ffmpeg package"):
            call()
