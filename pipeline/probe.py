"""What a media file holds: duration, streams, frame rate — and clear errors when it holds nothing."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from pipeline.errors import StageError
from pipeline.media import ffprobe_json

STAGE = "probe"


@dataclass(frozen=True)
class MediaInfo:
    duration_s: float
    has_video: bool
    has_audio: bool
    fps: float | None
    width: int | None
    height: int | None
    audio_sample_rate: int | None
    audio_channels: int | None

    def __post_init__(self) -> None:
        if not math.isfinite(self.duration_s) or self.duration_s <= 0:
            raise ValueError(f"duration_s must be a positive number, got {self.duration_s}")
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"fps must be positive when known, got {self.fps}")


def parse_rate(value: str | None) -> float | None:
    """ffprobe's ``"30000/1001"`` → 29.97…; ``"0/0"``, empty or malformed → None."""
    if not value:
        return None
    try:
        rate = Fraction(value)
    except (ValueError, ZeroDivisionError):
        return None
    return float(rate) if rate > 0 else None


def _float(value: object) -> float | None:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def info_from_ffprobe(data: dict, name: str = "file", *, stage: str = STAGE) -> MediaInfo:
    """Pure: turn ffprobe's JSON into a :class:`MediaInfo`; ``StageError`` when it has no usable content.

    Cover art (an attached picture in an audio file) does not count as a video stream.
    """
    streams = data.get("streams") or []
    video = next(
        (
            s
            for s in streams
            if s.get("codec_type") == "video" and not (s.get("disposition") or {}).get("attached_pic")
        ),
        None,
    )
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if video is None and audio is None:
        raise StageError(stage, f"{name}: no audio or video stream")
    duration = _float((data.get("format") or {}).get("duration"))
    if duration is None or duration <= 0:
        known = [d for s in (video, audio) if s is not None and (d := _float(s.get("duration"))) is not None]
        duration = max(known, default=None)
    if duration is None or duration <= 0:
        raise StageError(stage, f"{name}: zero-length media (no duration found)")
    fps = None
    if video is not None:
        fps = parse_rate(video.get("avg_frame_rate")) or parse_rate(video.get("r_frame_rate"))
    return MediaInfo(
        duration_s=duration,
        has_video=video is not None,
        has_audio=audio is not None,
        fps=fps,
        width=_int(video.get("width")) if video else None,
        height=_int(video.get("height")) if video else None,
        audio_sample_rate=_int(audio.get("sample_rate")) if audio else None,
        audio_channels=_int(audio.get("channels")) if audio else None,
    )


def probe(path: Path, *, stage: str = STAGE) -> MediaInfo:
    """Probe ``path`` with ffprobe; zero-length, corrupt or unreadable files raise ``StageError(stage, ...)``."""
    path = Path(path)
    return info_from_ffprobe(ffprobe_json(path, stage=stage), path.name, stage=stage)


def audio_rate(path: Path) -> int | None:
    """A file's audio sample rate (the export's AudioMeta lines); None where ffprobe cannot tell."""
    try:
        return probe(path, stage="export").audio_sample_rate
    except StageError:
        return None


def require_streams(info: MediaInfo, path: Path, *, video: bool = True, audio: bool = True) -> None:
    """Raise ``StageError("probe", "<name>: no audio stream")`` (or video) when a needed stream is missing."""
    name = Path(path).name
    if video and not info.has_video:
        raise StageError(STAGE, f"{name}: no video stream")
    if audio and not info.has_audio:
        raise StageError(STAGE, f"{name}: no audio stream")
