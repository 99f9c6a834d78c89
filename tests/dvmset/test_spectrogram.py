"""The spectrogram and per-second timeline hints curation stores beside a clip for the review page."""

from __future__ import annotations

import numpy as np
import pytest

from dvmset.peaks import (
    SPEC_BANDS,
    SPEC_FPS,
    hints_path,
    read_hints,
    read_spectrogram,
    spectrogram_from_samples,
    spectrogram_path,
    stretches,
    write_hints,
    write_spectrogram,
)


def test_a_tone_lands_in_its_band_and_silence_stays_dark():
    sr = 48000
    t = np.arange(4 * sr) / sr
    x = np.where(t < 2, np.sin(2 * np.pi * 440 * t), 0.0) + np.where(t >= 3, np.sin(2 * np.pi * 3000 * t), 0.0)
    spec = spectrogram_from_samples(np.stack([x, x]), sr)  # stereo in, one picture out
    assert spec.shape == (SPEC_BANDS, 4 * SPEC_FPS) and spec.dtype == np.uint8
    edges = np.geomspace(40, 16000, SPEC_BANDS + 1)
    band_440, band_3k = np.searchsorted(edges, 440) - 1, np.searchsorted(edges, 3000) - 1
    assert spec[:, 10].argmax() == band_440  # 1.0 s: the 440 Hz tone
    assert spec[:, 35].argmax() == band_3k  # 3.5 s: the 3 kHz tone
    assert spec[:, 25].max() == 0  # 2.5 s: silence, 80 dB or more below the loudest cell
    assert spectrogram_from_samples(np.zeros(sr), sr).max() == 0


def test_stretches_and_the_files_round_trip(tmp_path):
    assert stretches(np.array([0, 1, 1, 0, 0, 1, 1, 1, 1], bool), 2.0) == [[0.5, 1.5], [2.5, 4.5]]
    assert stretches(np.array([1, 1, 0, 1], bool), 2.0, min_s=1.0) == [[0.0, 1.0]]
    peaks = tmp_path / "v-00000.peaks.npy"
    assert spectrogram_path(peaks).name == "v-00000.spec.npy" and hints_path(peaks).name == "v-00000.hints.json"
    spec = np.arange(SPEC_BANDS * 3, dtype=np.uint8).reshape(SPEC_BANDS, 3)
    np.testing.assert_array_equal(read_spectrogram(write_spectrogram(spectrogram_path(peaks), spec)), spec)
    hints = {"seconds": 60.0, "cuts": [4.0], "still": [[10.0, 22.5]], "silence": [], "vocals": [0.0] * 60}
    assert read_hints(write_hints(hints_path(peaks), hints)) == hints
    with pytest.raises(ValueError, match="missing"):
        write_hints(hints_path(peaks), {"seconds": 1.0})
