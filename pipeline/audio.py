"""Audio I/O for the stages: decode any container through an ffmpeg pipe, write float WAV atomically.

Arrays are ``[C, N]`` float32 (channels first, as Demucs and torchaudio use them).
"""

from __future__ import annotations

import json
import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from dvmset.io import atomic_path
from pipeline.errors import StageError

log = logging.getLogger(__name__)

_FFMPEG = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error"]


@dataclass(frozen=True)
class StreamInfo:
    """What ffprobe says about a file's first audio and first video stream (None where absent)."""

    audio_sr: int | None
    audio_channels: int | None
    width: int | None
    height: int | None
    fps: float | None
    duration_s: float | None

    @property
    def has_audio(self) -> bool:
        return self.audio_sr is not None

    @property
    def has_video(self) -> bool:
        return self.width is not None


def _tail(stderr: bytes, limit: int = 300) -> str:
    text = stderr.decode("utf-8", "replace").strip()
    return text[-limit:] if text else "no message"


def _rate(text: str | None) -> float | None:
    if not text or text in ("0/0", "N/A"):
        return None
    num, _, den = text.partition("/")
    value = float(num) / float(den or 1)
    return value if value > 0 else None


def probe_streams(path: Path, stage: str = "audio") -> StreamInfo:
    """ffprobe the first audio and video stream; a missing or unreadable file is a StageError."""
    path = Path(path)
    if not path.is_file():
        raise StageError(stage, f"{path.name}: file not found at {path}")
    cmd = [
        "ffprobe", "-v", "error", "-print_format", "json",
        "-show_entries", "stream=codec_type,sample_rate,channels,width,height,avg_frame_rate,r_frame_rate"
        ":format=duration",
        str(path),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        raise StageError(stage, f"{path.name}: ffprobe cannot read it ({_tail(proc.stderr)})")
    meta = json.loads(proc.stdout or b"{}")
    streams = meta.get("streams", [])
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    duration = meta.get("format", {}).get("duration")
    return StreamInfo(
        audio_sr=int(audio["sample_rate"]) if audio and audio.get("sample_rate") else None,
        audio_channels=int(audio["channels"]) if audio and audio.get("channels") else None,
        width=int(video["width"]) if video and video.get("width") else None,
        height=int(video["height"]) if video and video.get("height") else None,
        fps=(_rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate"))) if video else None,
        duration_s=float(duration) if duration not in (None, "N/A") else None,
    )


def load_audio(path: Path, sr: int | None = None, channels: int | None = None,
               max_channels: int | None = None) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of any container to ``([C, N] float32, sr)`` through ffmpeg.

    ``sr`` / ``channels`` resample / remix with ffmpeg (None keeps the stream's own);
    ``max_channels`` downmixes only wider streams (5.1 -> stereo) and keeps narrower ones. A file
    with no audio stream, or one ffmpeg cannot decode, is a ``StageError("audio", ...)``.
    """
    path = Path(path)
    if sr is not None and sr <= 0:
        raise ValueError(f"sample rate must be positive, got {sr}")
    if channels is not None and channels <= 0:
        raise ValueError(f"channel count must be positive, got {channels}")
    info = probe_streams(path)
    if not info.has_audio:
        raise StageError("audio", f"{path.name}: no audio stream")
    out_sr = sr or info.audio_sr
    out_ch = channels or info.audio_channels
    if max_channels is not None and out_ch is not None:
        out_ch = min(out_ch, max_channels)
    assert out_sr is not None and out_ch is not None  # has_audio guarantees both
    cmd = [*_FFMPEG, "-i", str(path), "-map", "0:a:0", "-vn", "-f", "f32le", "-acodec", "pcm_f32le",
           "-ac", str(out_ch), "-ar", str(out_sr), "pipe:1"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        raise StageError("audio", f"{path.name}: ffmpeg cannot decode its audio ({_tail(proc.stderr)})")
    flat = np.frombuffer(proc.stdout, dtype="<f4")
    usable = flat.size - flat.size % out_ch
    wav = flat[:usable].reshape(-1, out_ch).T.astype(np.float32)  # [C, N], a fresh writable copy
    if wav.shape[1] == 0:
        raise StageError("audio", f"{path.name}: the audio stream decodes to no samples")
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
    without the clipping a 16/24-bit write would bake in.
    """
    check_wav(wav, sr)
    path = Path(path)
    with atomic_path(path) as tmp:
        sf.write(tmp, np.ascontiguousarray(wav.T, dtype=np.float32), sr, subtype="FLOAT", format="WAV")
    return path
