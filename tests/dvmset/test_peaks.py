"""The stored waveform-peaks format (dvmset.peaks): pure peaks, downsampling, the file round trip."""

from __future__ import annotations

import numpy as np
import pytest

from dvmset.peaks import STORED_PEAKS, downsample_peaks, peaks_from_samples, read_peaks, write_peaks


def test_peaks_from_samples_pure():
    x = np.zeros(1000)
    x[250] = -4.0
    x[900] = 2.0
    p = peaks_from_samples(x, 10)
    assert p.shape == (10,) and p[2] == pytest.approx(1.0) and p[9] == pytest.approx(0.5) and p[0] == 0
    assert peaks_from_samples(np.zeros(0), 5).tolist() == [0] * 5
    assert len(peaks_from_samples(np.ones(3), 8)) == 8  # more peaks than samples still works


@pytest.mark.parametrize("n", [1, 8, 250, 1000, STORED_PEAKS])
def test_downsampled_stored_peaks_equal_peaks_of_the_samples_when_n_divides(n, tmp_path):
    """Stored [STORED_PEAKS] -> file (float16) -> [n] equals peaks_from_samples(samples, n)."""
    rng = np.random.default_rng(n)
    samples = rng.standard_normal(32_000 * 6).astype(np.float32) * np.linspace(0.1, 1, 32_000 * 6)  # [T]
    path = write_peaks(tmp_path / "c.peaks.npy", peaks_from_samples(samples, STORED_PEAKS))
    stored = read_peaks(path)
    assert stored.shape == (STORED_PEAKS,) and stored.dtype == np.float32
    np.testing.assert_allclose(downsample_peaks(stored, n), peaks_from_samples(samples, n), atol=1e-3)


def test_read_peaks_refuses_what_is_not_a_peaks_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_peaks(tmp_path / "absent.peaks.npy")
    bad = tmp_path / "bad.peaks.npy"
    np.save(bad, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="not a peaks file"):
        read_peaks(bad)
