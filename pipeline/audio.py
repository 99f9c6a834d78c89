"""Audio I/O for the stages: decode any container through an ffmpeg pipe, write float WAV atomically.

Arrays are ``[C, N]`` float32 (channels first, as Demucs and torchaudio use them).
"""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import numpy as np

from dvmset.io import atomic_path
from pipeline.errors import StageError, disk_full, low_on_space
from pipeline.media import read_audio
from pipeline.probe import MediaInfo, probe

log = logging.getLogger(__name__)
STAGE = "audio"


def load_audio(path: Path, sr: int | None = None, channels: int | None = None,
               max_channels: int | None = None, info: MediaInfo | None = None) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of any container to ``([C, N] float32, sr)`` through ffmpeg.

    ``sr`` / ``channels`` resample / remix with ffmpeg (None keeps the stream's own, which costs a
    probe, or ``info`` where the caller probed the file already); ``max_channels`` downmixes only wider
    streams (5.1 -> stereo) and keeps narrower ones.
    A file with no audio stream, or one ffmpeg cannot decode, is a ``StageError("audio", ...)``.
    """
    path = Path(path)
    if sr is not None and sr <= 0:
        raise ValueError(f"sample rate must be positive, got {sr}")
    if channels is not None and channels <= 0:
        raise ValueError(f"channel count must be positive, got {channels}")
    out_sr, out_ch = sr, channels
    if out_sr is None or out_ch is None or max_channels is not None:
        info = info if info is not None else probe(path, stage=STAGE)
        if not info.has_audio or info.audio_sample_rate is None or info.audio_channels is None:
            raise StageError(STAGE, f"{path.name}: no audio stream")
        out_sr = out_sr or info.audio_sample_rate
        out_ch = out_ch or info.audio_channels
    if max_channels is not None:
        out_ch = min(out_ch, max_channels)
    wav = read_audio(path, rate=out_sr, channels=out_ch, stage=STAGE)  # [C, N]
    if wav.shape[1] == 0:
        raise StageError(STAGE, f"{path.name}: the audio stream decodes to no samples")
    log.debug("decoded %s: %d ch, %d Hz, %.2f s", path.name, out_ch, out_sr, wav.shape[1] / out_sr)
    return wav, out_sr


def check_wav(wav: np.ndarray, sr: int) -> None:
    """Raise ValueError unless ``wav`` is a finite ``[C, N]`` float array and ``sr`` positive."""
    if not isinstance(wav, np.ndarray) or wav.ndim != 2:
        raise ValueError(f"audio must be a [C, N] array, got shape {getattr(wav, 'shape', None)}")
    if not np.issubdtype(wav.dtype, np.floating):
        raise ValueError(f"audio must be floating point, got {wav.dtype}")
    if wav.shape[0] == 0 or wav.shape[0] > 64:
        raise ValueError(f"audio must be [C, N] with 1..64 channels, got shape {wav.shape}")
    if sr <= 0:
        raise ValueError(f"sample rate must be positive, got {sr}")
    if not np.isfinite(wav).all():
        raise ValueError("audio holds NaN or infinite samples")


def save_audio(path: Path, wav: np.ndarray, sr: int) -> Path:
    """Write ``[C, N]`` audio as 32-bit float WAV, atomically (a reader never sees half a file).

    Float keeps samples above full scale intact, so a later gain stage can bring them back
    without the clipping a 16/24-bit write would bake in. Written by scipy, not libsndfile, whose float
    WAVs carry a PEAK chunk with the time of writing: the same samples give the same bytes here.
    """
    check_wav(wav, sr)
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            from scipy.io import wavfile

            wavfile.write(tmp, sr, np.ascontiguousarray(wav.T, dtype=np.float32))
    except OSError as err:
        no_room = err.errno in (errno.ENOSPC, errno.EDQUOT) or low_on_space(path.parent, wav.nbytes)
        if no_room:
            raise disk_full(STAGE, path, f"{type(err).__name__}: {err}".rstrip(": ")) from err
        raise StageError(STAGE, f"cannot write {path}: {type(err).__name__}: {err}") from err
    return path
