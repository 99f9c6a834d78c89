"""Audio I/O: any container decodes to [C, N] float32 with the right rate, channels and content."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline.audio import load_audio, save_audio
from pipeline.errors import StageError
from pipeline.probe import probe

# Left 440 Hz, right 660 Hz, 1.5 s: channel order and pitch are checkable after any codec.
TONE = "aevalsrc='0.5*sin(2*PI*440*t)|0.5*sin(2*PI*660*t)':s=44100:d=1.5"
CODECS = {"wav": ["-c:a", "pcm_s16le"], "flac": ["-c:a", "flac"], "mp3": ["-c:a", "libmp3lame", "-b:a", "192k"],
          "ogg": ["-c:a", "libvorbis"], "m4a": ["-c:a", "aac", "-b:a", "192k"]}  # fmt: skip


def _dominant_hz(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / sr)[spectrum.argmax()])


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("tones")
    out = {}
    for ext, codec in CODECS.items():
        dest = base / f"tone.{ext}"
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", TONE, *codec, str(dest)],
                       check=True)  # fmt: skip
        out[ext] = dest
    return out


@pytest.mark.parametrize("ext", list(CODECS))
def test_every_container_decodes_to_channels_first_float32(tones: dict[str, Path], ext: str) -> None:
    wav, sr = load_audio(tones[ext])
    assert sr == 44100 and wav.dtype == np.float32 and wav.shape[0] == 2
    assert abs(wav.shape[1] - int(1.5 * sr)) < 0.05 * sr  # lossy codecs may pad a frame
    middle = wav[:, sr // 4 : sr]
    assert _dominant_hz(middle[0], sr) == pytest.approx(440, abs=3)  # left stays left
    assert _dominant_hz(middle[1], sr) == pytest.approx(660, abs=3)
    assert np.abs(middle).max() == pytest.approx(0.5, abs=0.05)
    assert wav.flags.writeable


def test_resample_and_downmix_through_ffmpeg(tones: dict[str, Path]) -> None:
    wav, sr = load_audio(tones["flac"], sr=16000, channels=1)
    assert sr == 16000 and wav.shape == (1, 24000)
    spectrum = np.abs(np.fft.rfft(wav[0]))
    freqs = np.fft.rfftfreq(wav.shape[1], 1 / sr)
    top_two = sorted(freqs[np.argsort(spectrum)[-2:]])
    assert top_two == pytest.approx([440, 660], abs=3)  # both channels are in the mono mix


def test_audio_of_a_video_container(media_factory) -> None:
    clip = media_factory("short", duration_s=2.0, cut_every_s=None)
    wav, sr = load_audio(clip)
    assert sr == 44100 and wav.shape[0] == 2 and abs(wav.shape[1] / sr - 2.0) < 0.05


def test_no_audio_stream_is_a_stage_error(odd_media: dict[str, Path]) -> None:
    with pytest.raises(StageError) as err:
        load_audio(odd_media["video_only"])
    assert err.value.stage == "audio" and str(err.value) == "audio: video_only.mp4: no audio stream"


@pytest.mark.parametrize("kind", ["corrupt", "empty"])
def test_unreadable_files_are_stage_errors(odd_media: dict[str, Path], kind: str) -> None:
    with pytest.raises(StageError) as err:
        load_audio(odd_media[kind])
    assert err.value.stage == "audio" and odd_media[kind].name in str(err.value)


def test_missing_file_is_a_stage_error(tmp_path: Path) -> None:
    with pytest.raises(StageError, match="not found"):
        load_audio(tmp_path / "nope.wav")


def test_probe_reports_both_streams(media_factory) -> None:
    info = probe(media_factory("short", duration_s=2.0, cut_every_s=None))
    assert (info.audio_sample_rate, info.audio_channels, info.width, info.height) == (44100, 2, 320, 240)
    assert info.fps == pytest.approx(30.0) and info.duration_s == pytest.approx(2.0, abs=0.1)


def test_save_round_trip_is_exact_and_keeps_overs(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    wav = (rng.standard_normal((2, 4800)) * 0.8).astype(np.float32)
    wav[0, 10] = 1.7  # above full scale: a float WAV must not clip it
    dest = save_audio(tmp_path / "out" / "x.wav", wav, 48000)
    back, sr = load_audio(dest)
    assert sr == 48000 and back.shape == wav.shape
    np.testing.assert_array_equal(back, wav)
    assert [p.name for p in dest.parent.iterdir()] == ["x.wav"]  # no temp file left behind


@pytest.mark.parametrize("bad", [np.zeros(100, np.float32), np.full((1, 10), np.nan, np.float32),
                                 np.zeros((1, 10), np.int16)])  # fmt: skip
def test_save_rejects_bad_arrays_and_writes_nothing(tmp_path: Path, bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        save_audio(tmp_path / "bad.wav", bad, 44100)
    assert list(tmp_path.iterdir()) == []


def test_max_channels_downmixes_only_wider_streams(tmp_path: Path) -> None:
    """A 5.1 source (what loudness and the separator cannot take) comes in as stereo; mono stays mono."""
    six = tmp_path / "six.wav"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1",
                    "-af", "pan=5.1|c0=c0|c1=c0|c2=c0|c3=c0|c4=c0|c5=c0", "-ar", "22050", str(six)], check=True)
    assert probe(six).audio_channels == 6
    wav, sr = load_audio(six, max_channels=2)
    assert wav.shape[0] == 2 and sr == 22050 and abs(_dominant_hz(wav[0], sr) - 440) < 5
    mono = tmp_path / "mono.wav"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(six), "-ac", "1", str(mono)], check=True)
    assert load_audio(mono, max_channels=2)[0].shape[0] == 1


def test_the_same_samples_give_the_same_bytes(tmp_path: Path) -> None:
    """A seed's generated .wav is reproducible byte for byte (libsndfile's float WAV stamped the time)."""
    import time

    wav = np.random.default_rng(0).uniform(-1.5, 1.5, (2, 32_000)).astype(np.float32)
    save_audio(tmp_path / "a.wav", wav, 32_000)
    time.sleep(1.1)  # the PEAK chunk's timestamp has one-second resolution
    save_audio(tmp_path / "b.wav", wav, 32_000)
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    back, sr = sf.read(tmp_path / "b.wav", dtype="float32", always_2d=True)
    assert sr == 32_000 and np.array_equal(back.T, wav)
    assert sf.info(tmp_path / "b.wav").subtype == "FLOAT"
