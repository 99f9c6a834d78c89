"""Put generated music under a video without touching the picture.

The first video stream is copied packet for packet (no re-encode); the new audio is padded with silence
or cut to the video stream's exact duration by ffmpeg's ``apad``/``atrim`` filters (never ``-shortest``,
which would cut the picture to the audio); every other stream of the input (its own audio tracks,
subtitles, data) is dropped. The plan (`mux_args`) is pure; `mux_audio` runs it through ffmpeg.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from dvmset.io import atomic_path
from pipeline.errors import StageError
from pipeline.media import ffprobe_json, run_ffmpeg

log = logging.getLogger(__name__)
STAGE = "mux"
_HMS = re.compile(r"^(\d+):(\d{2}):(\d{2}(?:\.\d+)?)$")


@dataclass(frozen=True)
class VideoTrack:
    """What the mux needs to know of the picture: its stream index, start and exact duration."""

    index: int
    start_s: float
    duration_s: float
    codec: str

    def __post_init__(self) -> None:
        if not self.duration_s > 0:
            raise ValueError(f"video duration must be positive, got {self.duration_s}")


def _seconds(value: object) -> float | None:
    """ffprobe's "7.307000" or a Matroska DURATION tag "00:00:07.307000000" -> seconds; None if absent."""
    if value in (None, "", "N/A"):
        return None
    text = str(value)
    match = _HMS.match(text)
    try:
        if match:
            h, m, s = match.groups()
            return int(h) * 3600 + int(m) * 60 + float(s)
        return float(text)
    except ValueError:
        return None


def video_track(probe: dict, name: str = "video", *, stage: str = STAGE) -> VideoTrack:
    """Pure: the first real video stream of ffprobe's JSON (cover art excluded) and its duration."""
    for stream in probe.get("streams") or []:
        if stream.get("codec_type") != "video" or (stream.get("disposition") or {}).get("attached_pic"):
            continue
        duration = _seconds(stream.get("duration")) or _seconds((stream.get("tags") or {}).get("DURATION"))
        if duration is None:
            duration = _seconds((probe.get("format") or {}).get("duration"))
        if not duration or duration <= 0:
            raise StageError(stage, f"{name}: the video stream has no duration (no frames?)")
        return VideoTrack(int(stream["index"]), _seconds(stream.get("start_time")) or 0.0, duration,
                          str(stream.get("codec_name", "?")))
    raise StageError(stage, f"{name}: no video stream (no picture to put the music under)")


def mux_args(video: Path, audio: Path, out: Path, track: VideoTrack, audio_bitrate: str = "192k",
             sample_rate: int = 48_000) -> list[str]:
    """Pure: ffmpeg arguments that copy `track` of `video` and add `audio` fitted to its exact duration."""
    dur = f"{track.duration_s:.6f}"
    args = ["-i", str(video)]
    if track.start_s > 0:  # the music starts with the first picture, wherever the container puts it
        args += ["-itsoffset", f"{track.start_s:.6f}"]
    args += [
        "-i", str(audio),
        "-map", f"0:{track.index}", "-map", "1:a:0",
        "-c:v", "copy",
        "-af", f"aresample={sample_rate},apad=whole_dur={dur},atrim=duration={dur}",
        "-c:a", "aac", "-b:a", audio_bitrate, "-ar", str(sample_rate),
        "-map_metadata", "-1", "-map_chapters", "-1",
        "-movflags", "+faststart",
        str(out),
    ]
    return args


def mux_audio(video: str | Path, audio: str | Path, out: str | Path, *, audio_bitrate: str = "192k",
              timeout_s: float | None = 600.0) -> Path:
    """Write `out` (MP4): `video`'s picture untouched, `audio` as its only sound, lasting as long as the picture."""
    video, audio, out = Path(video), Path(audio), Path(out)
    track = video_track(ffprobe_json(video, stage=STAGE), video.name)
    ffprobe_json(audio, stage=STAGE)  # a clear error for a missing or unreadable audio file
    if out.suffix.lower() not in (".mp4", ".mov", ".m4v", ".mkv"):
        raise ValueError(f"{out.name}: write the muxed video as .mp4, .mov, .m4v or .mkv")
    with atomic_path(out) as tmp:
        run_ffmpeg(mux_args(video, audio, tmp, track, audio_bitrate), stage=STAGE, timeout_s=timeout_s)
    log.info("muxed %s under %s (%s copied, %.3f s) -> %s", audio.name, video.name, track.codec,
             track.duration_s, out)
    return out
