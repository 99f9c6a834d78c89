"""Demucs separation through the real apply_model, on tiny random HTDemucs and a model with known stems."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pipeline.audio import load_audio
from pipeline.separate import (
    SeparatorConfig,
    WeightsUnavailable,
    load_separator,
    save_separator_repo,
    separate,
    separate_file,
    tiny_htdemucs,
)


class KnownStems(torch.nn.Module):
    """Each stem is a fixed fraction of the (normalised) mix, so the music is predictable exactly."""

    def __init__(self, fractions: dict[str, float], samplerate: int = 44100, segment: float = 1.0) -> None:
        super().__init__()
        self.sources = list(fractions)
        self.register_buffer("fractions", torch.tensor(list(fractions.values())))
        self.samplerate, self.audio_channels, self.segment = samplerate, 2, segment

    def forward(self, mix: torch.Tensor) -> torch.Tensor:  # [B, C, T] -> [B, S, C, T]
        return self.fractions[None, :, None, None] * mix[:, None]


def _tones(sr: int, channels: int, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    chans = [0.3 * np.sin(2 * np.pi * 220 * (k + 1) * t) + 0.1 * np.sin(2 * np.pi * 1000 * t) for k in range(channels)]
    return np.stack(chans).astype(np.float32)  # [C, N]


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    return tiny_htdemucs(44100, segment_s=2.0)


@pytest.mark.parametrize(("sr", "channels"), [(44100, 2), (22050, 1), (48000, 2)])
def test_music_is_the_sum_of_non_vocal_stems(sr: int, channels: int) -> None:
    # vocals first, to prove the stem is found by name; chunks of 0.5 s over 2 s, shifts on.
    model = KnownStems({"vocals": 0.4, "drums": 0.1, "bass": 0.2, "other": 0.3})
    cfg = SeparatorConfig(segment_s=0.5, shifts=1, threads=1)
    wav = _tones(sr, channels)
    result = separate(model, wav, sr, cfg)
    assert result.music.shape == wav.shape and result.music.dtype == np.float32
    expected = 0.6 * wav  # mix - vocals, at the input's rate and channel count
    edge = sr // 10  # resampling has no future/past samples at the very ends
    tol = 1e-5 if sr == model.samplerate else 2e-3
    np.testing.assert_allclose(result.music[:, edge:-edge], expected[:, edge:-edge], atol=tol)
    assert result.vocal_energy == pytest.approx(0.16, rel=1e-3)
    per_s = result.energy_per_s  # [2, seconds]: vocals then mix, each second at the model's rate
    assert per_s.shape == (2, 2)
    assert per_s[0].sum() / per_s[1].sum() == pytest.approx(result.vocal_energy, rel=1e-9)
    np.testing.assert_allclose(per_s[0] / per_s[1], 0.16, rtol=1e-3)  # 0.4² in every second


def test_silent_input_gives_silent_music_and_zero_vocal_energy() -> None:
    model = KnownStems({"drums": 0.5, "vocals": 0.5})
    result = separate(model, np.zeros((2, 44100), np.float32), 44100, SeparatorConfig(threads=1))
    assert result.vocal_energy == 0.0 and np.abs(result.music).max() < 1e-6


@pytest.mark.parametrize(("sr", "channels", "segment_s"), [(22050, 1, None), (48000, 2, 1.0)])
def test_random_htdemucs_keeps_rate_channels_and_length(tiny, sr: int, channels: int, segment_s) -> None:
    wav = _tones(sr, channels, seconds=2.5)  # longer than the model's 2 s segment: chunked
    result = separate(tiny, wav, sr, SeparatorConfig(shifts=1, segment_s=segment_s, threads=1))
    assert result.music.shape == wav.shape and result.music.dtype == np.float32
    assert np.isfinite(result.music).all() and np.abs(result.music).max() > 0
    assert result.vocal_energy > 0


def test_htdemucs_mono_is_the_mean_of_duplicated_stereo(tiny) -> None:
    mono = _tones(22050, 1, seconds=1.5)
    cfg = SeparatorConfig(shifts=0, threads=1)
    from_mono = separate(tiny, mono, 22050, cfg)
    from_stereo = separate(tiny, np.repeat(mono, 2, axis=0), 22050, cfg)
    np.testing.assert_allclose(from_mono.music[0], from_stereo.music.mean(0), atol=1e-6)
    assert from_mono.vocal_energy == pytest.approx(from_stereo.vocal_energy)


def test_htdemucs_normalisation_is_undone(tiny) -> None:
    """Demucs sees mean/std-normalised input, so a louder mix gives proportionally louder music."""
    wav = _tones(44100, 2, seconds=1.5)
    cfg = SeparatorConfig(shifts=1, seed=3, threads=1)
    quiet, loud = separate(tiny, wav, 44100, cfg), separate(tiny, 8 * wav, 44100, cfg)
    np.testing.assert_allclose(loud.music, 8 * quiet.music, rtol=1e-3, atol=1e-5)
    assert loud.vocal_energy == pytest.approx(quiet.vocal_energy, rel=1e-4)
    again = separate(tiny, wav, 44100, cfg)  # seeded shifts: a re-run writes the same music
    np.testing.assert_array_equal(again.music, quiet.music)


def test_bad_inputs_are_refused_with_reasons(tiny) -> None:
    with pytest.raises(ValueError, match="exceeds"):
        separate(tiny, _tones(44100, 2), 44100, SeparatorConfig(segment_s=5.0))
    with pytest.raises(ValueError, match="3 channels"):
        separate(tiny, _tones(44100, 3), 44100, SeparatorConfig())
    with pytest.raises(ValueError, match="vocals"):
        separate(KnownStems({"drums": 1.0}), _tones(44100, 2), 44100, SeparatorConfig())
    for bad in [dict(shifts=-1), dict(overlap=1.0), dict(segment_s=0.0), dict(device="gpu0"), dict(threads=0)]:
        with pytest.raises(ValueError):
            SeparatorConfig(**bad)


def test_separate_file_writes_music_beside_the_source_format(tiny, media_factory, tmp_path: Path) -> None:
    src = media_factory("short", duration_s=2.0, cut_every_s=None)
    dest = tmp_path / "music.wav"
    result = separate_file(tiny, src, dest, SeparatorConfig.debug())
    music, sr = load_audio(dest)
    source, source_sr = load_audio(src)
    assert sr == source_sr and music.shape == source.shape
    np.testing.assert_allclose(music, result.music, atol=1e-7)


# ------------------------------------------------------------------------------------------ loading


@pytest.fixture
def no_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "hf"


def test_offline_without_weights_fails_fast_with_how_to(no_caches: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(WeightsUnavailable) as err:
        load_separator(SeparatorConfig(name="htdemucs"), hf_cache_dir=no_caches)
    assert time.monotonic() - start < 5
    text = str(err.value)
    for must in ["955717e8-8726e21a.th", "torch", "checkpoints", "--demucs-repo", "htdemucs.yaml", "HF_HUB_OFFLINE"]:
        assert must in text


def test_downloads_off_never_touch_the_network(no_caches: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("socket.getaddrinfo", lambda *a, **k: pytest.fail("looked up a host"))
    with pytest.raises(WeightsUnavailable, match="downloads are off"):
        load_separator(SeparatorConfig(allow_download=False), hf_cache_dir=no_caches)


def test_local_repo_dir_loads_through_get_model(tiny, tmp_path: Path) -> None:
    repo = save_separator_repo(tiny, tmp_path / "repo", "tinymucs")
    assert (repo / "tinymucs.yaml").is_file() and len(list(repo.glob("*-*.th"))) == 1
    loaded = load_separator(SeparatorConfig(name="tinymucs", repo=repo))
    assert type(loaded).__name__ == "BagOfModels" and loaded.sources == tiny.sources
    wav, cfg = _tones(44100, 2, seconds=1.0), SeparatorConfig(shifts=0, threads=1)
    np.testing.assert_allclose(separate(loaded, wav, 44100, cfg).music, separate(tiny, wav, 44100, cfg).music,
                               atol=1e-6)  # fmt: skip


def test_local_repo_errors_say_what_is_missing(tiny, tmp_path: Path) -> None:
    repo = save_separator_repo(tiny, tmp_path / "repo", "tinymucs")
    with pytest.raises(WeightsUnavailable, match="neither htdemucs.yaml"):
        load_separator(SeparatorConfig(name="htdemucs", repo=repo))
    with pytest.raises(WeightsUnavailable, match="not a directory"):
        load_separator(SeparatorConfig(name="htdemucs", repo=tmp_path / "absent"))
    weights = next(repo.glob("*.th"))
    weights.write_bytes(weights.read_bytes()[:-10] + b"tampered!!")
    with pytest.raises(WeightsUnavailable, match="checksum"):
        load_separator(SeparatorConfig(name="tinymucs", repo=repo))


def test_real_name_loads_offline_from_the_hugging_face_cache(tiny, no_caches: Path) -> None:
    """A cache laid out as huggingface_hub leaves it (demucs 4.1's own format) is used, no network."""
    from safetensors.torch import save_file

    snapshot = no_caches / "models--adefossez--HTDemucs" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (no_caches / "models--adefossez--HTDemucs" / "refs").mkdir()
    (no_caches / "models--adefossez--HTDemucs" / "refs" / "main").write_text("0123abcd")
    (snapshot / "htdemucs.yaml").write_text(yaml.safe_dump({"models": ["955717e8"]}))
    args, kwargs = tiny._init_args_kwargs
    meta = {"klass": "demucs.htdemucs.HTDemucs", "args": json.dumps(list(args)), "kwargs": json.dumps(kwargs)}
    save_file({k: v.contiguous() for k, v in tiny.state_dict().items()}, snapshot / "955717e8.safetensors", meta)
    loaded = load_separator(SeparatorConfig(name="htdemucs"), hf_cache_dir=no_caches)
    assert loaded.samplerate == 44100 and list(loaded.sources) == list(tiny.sources)
    state = loaded.models[0].state_dict()
    assert all(torch.equal(state[k], v) for k, v in tiny.state_dict().items())


def test_debug_preset_is_a_tiny_htdemucs() -> None:
    model = load_separator(SeparatorConfig.debug())
    assert type(model).__name__ == "HTDemucs" and "vocals" in model.sources
    assert sum(p.numel() for p in model.parameters()) < 200_000
