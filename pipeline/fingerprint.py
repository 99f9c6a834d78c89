"""Chromaprint fingerprints of processed music, for finding one recording under many uploads.

Which chromaprint: the library (``libchromaprint1``, 1.5) through Debian ffmpeg's ``chromaprint``
muxer, raw output, algorithm 1 (TEST2, what ``fpcalc`` uses by default), so no extra tool or
binding is needed; it runs through :func:`pipeline.media.run_ffmpeg` like every ffmpeg call. The
comparison (bit error rate over aligned offsets) is in :mod:`dvmset.music_groups`.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import numpy as np

from dvmset.constants import SAMPLE_RATE_HZ
from dvmset.music_groups import FORMAT, bit_error_rate, encode_fingerprint
from pipeline.errors import StageError
from pipeline.media import read_audio, run_ffmpeg

STAGE = "fingerprint"
__all__ = ["FORMAT", "bit_error_rate", "fingerprint", "music_checksum", "window_music"]


def fingerprint(path: Path, start_s: float | None = None, duration_s: float | None = None) -> np.ndarray:
    """The raw chromaprint fingerprint [items] uint32 of ``path``'s audio (optionally a window of it)."""
    path = Path(path)
    if not path.is_file():
        raise StageError(STAGE, f"{path.name}: file not found at {path}")
    window = ([] if start_s is None else ["-ss", f"{start_s:.6f}"]) + ["-i", path] + (
        [] if duration_s is None else ["-t", f"{duration_s:.6f}"])
    with tempfile.TemporaryDirectory(prefix="vm-fp-") as tmp:
        out = Path(tmp) / "fp.raw"
        try:
            run_ffmpeg([*window, "-vn", "-f", "chromaprint", "-fp_format", "raw", "-algorithm", "1", out],
                       stage=STAGE)
        except StageError as err:
            if "chromaprint" in str(err).lower() and "format" in str(err).lower():
                raise StageError(STAGE, "this ffmpeg has no chromaprint muxer: install Debian's ffmpeg "
                                        "(built with --enable-chromaprint)") from err
            raise
        raw = out.read_bytes()
    if len(raw) % 4:
        raise StageError(STAGE, f"{path.name}: chromaprint wrote {len(raw)} bytes, not whole uint32 items")
    return np.frombuffer(raw, dtype="<u4").astype(np.uint32)


def music_checksum(path: Path, start_s: float, duration_s: float) -> str:
    """sha256 of the window's PCM (32 kHz stereo float32 as ffmpeg decodes it): equal only for identical music."""
    wav = read_audio(Path(path), rate=SAMPLE_RATE_HZ, channels=2, start_s=start_s, duration_s=duration_s,
                     stage=STAGE)  # [2, T] float32
    return hashlib.sha256(np.ascontiguousarray(wav).tobytes()).hexdigest()


def window_music(path: Path, start_s: float, duration_s: float) -> tuple[str, str]:
    """(checksum, encoded fingerprint) of a clip's window of the processed music."""
    return music_checksum(path, start_s, duration_s), encode_fingerprint(fingerprint(path, start_s, duration_s))
