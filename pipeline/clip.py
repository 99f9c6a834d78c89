"""60 s clips: pure window planning plus a frame-accurate ffmpeg cut (H.264 25 fps CFR + AAC music).

The clip's music is read as an array (its window only), brought to the loudness target with a
true-peak limiter (``pipeline.loudness.normalize_clip``), encoded, and checked once more on the
encoded file: AAC can push peaks a little over what went in, so a clip that measures above
−1 dBTP or off the target gets its audio redone with the difference taken off.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dvmset.constants import VIDEO_FPS
from dvmset.io import atomic_path
from pipeline.audio import save_audio
from pipeline.errors import StageError
from pipeline.loudness import (
    LIMIT_CEILING_DBTP,
    MAX_CLIP_GAIN_DB,
    TRUE_PEAK_MAX_DBTP,
    ClipLoudness,
    integrated_loudness,
    normalize_clip,
    true_peak_dbtp,
)
from pipeline.media import ffprobe_json, read_audio, run_ffmpeg, run_ffmpeg_frames
from pipeline.probe import MediaInfo, probe, require_streams
from pipeline.qc import ANALYSIS_WIDTH, ClipDecode, analysis_size, score_frames

log = logging.getLogger(__name__)

STAGE = "clip"
_EPS = 1e-6
# Frames of the last source picture repeated when a window ends within a frame or so of the
# source's end (frame-rate conversion can come up one frame short there); more than this is an error.
_PAD_S = 1.0
MAX_AUDIO_RATE = 48_000  # the clip's AAC keeps the music's rate up to this
AAC_ARGS = ["-c:a", "aac", "-b:a", "192k"]
_ENCODED_TP_MARGIN_DB = 0.2  # the encoded clip must measure this far under the promised true peak
_ENCODED_LUFS_TOLERANCE = 0.3  # and this close to the target (the promise is ±0.5 LU)
_AUDIO_REDOS = 2


@dataclass(frozen=True)
class ClipSpan:
    """One window of a source, in seconds on the source's timeline."""

    start_s: float
    duration_s: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.start_s) or self.start_s < 0:
            raise ValueError(f"clip start must be >= 0 s, got {self.start_s}")
        if not math.isfinite(self.duration_s) or self.duration_s <= 0:
            raise ValueError(f"clip duration must be > 0 s, got {self.duration_s}")

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def frames(self, fps: int) -> int:
        """Number of frames this window holds at ``fps`` (the duration must be whole frames)."""
        return _whole_frames(self.duration_s, fps)


def _whole_frames(seconds: float, fps: int) -> int:
    if isinstance(fps, bool) or not isinstance(fps, int) or fps <= 0:
        raise ValueError(f"fps must be a positive integer, got {fps!r}")
    frames = seconds * fps
    if abs(frames - round(frames)) > 1e-6 * max(1.0, frames):
        raise ValueError(f"{seconds} s is not a whole number of frames at {fps} fps")
    return round(frames)


def plan_clips(
    duration_s: float, clip_s: float = 60.0, *, max_clips: int | None = None, fps: int = VIDEO_FPS
) -> list[ClipSpan]:
    """Plan non-overlapping windows of exactly ``clip_s`` seconds inside ``[0, duration_s]`` (pure).

    The windows are consecutive (back to back) and form one block centred in the source: the
    seconds left over are split before and after it, so intros and end cards are trimmed evenly
    rather than all from the end. With ``max_clips`` the block holds at most that many windows,
    still centred. Every start is a whole second (clip ids use whole seconds) and so a whole frame
    at ``fps``; a ``clip_s`` that is not whole seconds is stepped at the next whole second. A source
    shorter than one clip gives ``[]``.
    """
    if not math.isfinite(duration_s) or duration_s < 0:
        raise ValueError(f"source duration must be a finite number >= 0, got {duration_s}")
    if not math.isfinite(clip_s) or clip_s <= 0:
        raise ValueError(f"clip length must be > 0 s, got {clip_s}")
    if max_clips is not None and max_clips < 0:
        raise ValueError(f"max_clips must be >= 0 or None, got {max_clips}")
    clip_frames = _whole_frames(clip_s, fps)
    step_frames = math.ceil(clip_s - _EPS) * fps
    total_frames = math.floor(duration_s * fps + _EPS)
    if total_frames < clip_frames:
        return []
    n = (total_frames - clip_frames) // step_frames + 1
    if max_clips is not None:
        n = min(n, max_clips)
    if n == 0:
        return []
    block_frames = (n - 1) * step_frames + clip_frames
    offset_s = (total_frames - block_frames) // (2 * fps)
    return [ClipSpan(float(offset_s + k * step_frames // fps), clip_frames / fps) for k in range(n)]


def clip_id(video_id: str, start_s: float) -> str:
    """``{video_id}-{start:05d}``: the id of the clip starting ``start_s`` seconds into the source."""
    if start_s < 0:
        raise ValueError(f"clip start must be >= 0 s, got {start_s}")
    return f"{video_id}-{int(start_s):05d}"


def _check_output(path: Path, frames: int, duration_s: float) -> None:
    """Refuse a cut whose frame count or audio length is off (read from the MP4 header, no decode)."""
    data = ffprobe_json(path, stage=STAGE)
    streams = data.get("streams") or []
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if video is None or audio is None:
        raise StageError(STAGE, f"{path.name}: cut is missing its video or audio stream")
    got = int(video.get("nb_frames") or 0)
    if got != frames:
        raise StageError(STAGE, f"cut has {got} video frames, expected {frames}: the source ends early")
    sr = int(audio.get("sample_rate") or 0) or 48000
    a_dur = float(audio.get("duration") or 0.0)
    if abs(a_dur - duration_s) > 1024 / sr + _EPS:
        raise StageError(STAGE, f"cut has {a_dur:.3f} s of audio, expected {duration_s:.3f} s")


def _check_decoded(frames: int, expected_frames: int, audio: np.ndarray, rate: int, duration_s: float) -> None:
    """The same refusal as :func:`_check_output`, from what the cut's own pass decoded (no probe)."""
    if frames != expected_frames:
        raise StageError(STAGE, f"cut has {frames} video frames, expected {expected_frames}: the source ends early")
    a_dur = audio.shape[1] / rate
    if abs(a_dur - duration_s) > 1024 / rate + _EPS:
        raise StageError(STAGE, f"cut has {a_dur:.3f} s of audio, expected {duration_s:.3f} s")


@dataclass(frozen=True)
class Cut:
    """A written clip and what its audio went through (``loudness`` None: audio kept as it was); ``decoded``:
    what the cut's one pass decoded for QC (``qc.qc_clip(decoded=...)``), None unless asked for."""

    path: Path
    loudness: ClipLoudness | None
    decoded: ClipDecode | None = None

    def __fspath__(self) -> str:  # stands for its file wherever a path is expected
        return str(self.path)


def cut_clip(
    video_path: Path,
    music_path: Path | None,
    span: ClipSpan,
    dest: Path,
    *,
    fps: int = VIDEO_FPS,
    crf: int = 23,
    preset: str = "veryfast",
    target_lufs: float | None = -14.0,
    source_info: MediaInfo | None = None,
    music_info: MediaInfo | None = None,
    analyse: bool = False,
) -> Cut:
    """Cut ``span`` from ``video_path`` into ``dest`` (MP4), frame-accurately, by re-encoding.

    Video: H.264 yuv420p, exactly ``fps`` frames per second CFR and ``span.duration_s * fps``
    frames. Audio: stereo AAC of ``music_path`` (a WAV of the processed music on the source's
    timeline) cut to the same window, or of the source's own audio when ``music_path`` is None;
    silence pads it to the exact length if the music ends a hair early. With ``target_lufs`` the
    window is normalised to it with true peak ≤ −1 dBTP, as measured on the encoded file
    (``pipeline.loudness``); None keeps the audio's level. ``+faststart`` so browsers can seek.
    Written atomically; the result is checked (frame count, audio length) before it lands.

    ``source_info``/``music_info`` are the files' probes, made once per source by the caller (None: probed
    here). ``analyse=True`` makes the one decode of the window feed QC too: ffmpeg splits the frames it
    encodes into a second, small raw output that QC scores as they come (cuts, stills), the encoded
    audio decoded for the loudness check is kept, and the result is checked from those instead of a
    probe of the clip; ``Cut.decoded`` carries them to ``qc.qc_clip``. No ffprobe runs then.
    """
    video_path, dest = Path(video_path), Path(dest)
    frames = span.frames(fps)
    info = source_info if source_info is not None else probe(video_path)
    require_streams(info, video_path, video=True, audio=music_path is None)
    if span.end_s > info.duration_s + 1.0 / fps + _EPS:
        raise StageError(
            STAGE,
            f"window {span.start_s:.2f}-{span.end_s:.2f} s exceeds {video_path.name} ({info.duration_s:.2f} s)",
        )
    audio_src, audio_info = video_path, info
    if music_path is not None:
        audio_src = Path(music_path)
        audio_info = music_info if music_info is not None else probe(audio_src)
        require_streams(audio_info, audio_src, video=False, audio=True)
    rate = _audio_rate(audio_info, audio_src)
    window = _read_window(audio_src, span, rate)  # [2, duration * rate]
    loud: ClipLoudness | None = None
    audio = window
    if target_lufs is not None:
        audio, loud = normalize_clip(window, rate, target_lufs)
    start, dur = f"{span.start_s:.6f}", f"{span.duration_s:.6f}"
    picture = (
        f"fps={fps},scale=trunc(iw/2)*2:trunc(ih/2)*2,setsar=1,format=yuv420p,"
        f"tpad=stop_mode=clone:stop_duration={_PAD_S},trim=end_frame={frames}"
    )
    encode = ["-fps_mode", "cfr", "-r", str(fps), "-c:v", "libx264", "-preset", preset, "-crf", str(crf),
              "-g", str(2 * fps), "-pix_fmt", "yuv420p", *AAC_ARGS,
              "-map_metadata", "-1", "-map_chapters", "-1", "-sn", "-dn", "-movflags", "+faststart"]  # fmt: skip
    decoded: ClipDecode | None = None
    with tempfile.TemporaryDirectory(prefix="vidmusician-cut-") as work, atomic_path(dest) as tmp:
        wav_path = save_audio(Path(work) / "audio.wav", audio, rate)
        inputs = ["-ss", start, "-t", dur, "-i", str(video_path), "-i", str(wav_path)]
        if not analyse:
            run_ffmpeg([*inputs, "-map", "0:v:0", "-map", "1:a:0", "-vf", picture, *encode, str(tmp)], stage=STAGE)
        else:
            clip_info = MediaInfo(duration_s=span.duration_s, has_video=True, has_audio=True, fps=float(fps),
                                  width=info.width // 2 * 2 if info.width else None,
                                  height=info.height // 2 * 2 if info.height else None,
                                  audio_sample_rate=rate, audio_channels=2)
            size = analysis_size(clip_info.width, clip_info.height, ANALYSIS_WIDTH)
            graph = f"[0:v:0]{picture},split=2[enc][qc];[qc]scale={size[0]}:{size[1]}:flags=area,format=bgr24[small]"
            args = [*inputs, "-filter_complex", graph, "-map", "[enc]", "-map", "1:a:0", *encode, str(tmp),
                    "-map", "[small]", "-fps_mode", "cfr", "-r", str(fps),  # as the file's: a frame it dups, QC sees
                    "-f", "rawvideo", "-pix_fmt", "bgr24", "pipe:1"]
            counted = [0]

            def small_frames():  # noqa: ANN202 - the pipe's frames, counted on the way to QC
                for frame in run_ffmpeg_frames(args, size=size, stage=STAGE, written=tmp):
                    counted[0] += 1
                    yield frame

            video = score_frames(small_frames(), float(fps), dest.name)
            decoded = ClipDecode(clip_info, None, video)
        heard: np.ndarray | None = None
        measured: tuple[float, float] | None = None
        if target_lufs is not None:
            loud, heard, measured = _settle_encoded_audio(tmp, window, rate, target_lufs, loud, Path(work))
        if decoded is None:
            _check_output(tmp, frames, span.duration_s)
        else:
            if heard is None:
                heard = read_audio(tmp, rate=rate, channels=2, stage=STAGE)  # [2, N] what a player hears
            _check_decoded(counted[0], frames, heard, rate, span.duration_s)
            decoded = ClipDecode(decoded.info, (heard, rate) if heard.shape[1] else None, decoded.video, measured)
    log.debug("cut %s [%s s +%s s] -> %s", video_path.name, start, dur, dest)
    return Cut(dest, loud, decoded)


def _audio_rate(audio_info: MediaInfo, path: Path) -> int:
    if not audio_info.audio_sample_rate:
        raise StageError(STAGE, f"{path.name}: no audio sample rate")
    return min(audio_info.audio_sample_rate, MAX_AUDIO_RATE)


def _read_window(path: Path, span: ClipSpan, rate: int) -> np.ndarray:
    """The span's audio [2, duration * rate] float32, padded with silence where the stream ends early."""
    wav = read_audio(path, rate=rate, channels=2, stage=STAGE, start_s=span.start_s, duration_s=span.duration_s)
    n = round(span.duration_s * rate)
    if wav.shape[1] < n:
        wav = np.pad(wav, ((0, 0), (0, n - wav.shape[1])))
    return np.ascontiguousarray(wav[:, :n])


def _settle_encoded_audio(clip: Path, window: np.ndarray, rate: int, target_lufs: float, loud: ClipLoudness | None,
                          work: Path) -> tuple[ClipLoudness | None, np.ndarray | None, tuple[float, float] | None]:
    """Measure the encoded clip's audio; redo it (ceiling lowered by the overshoot, target offset by
    the miss) until it measures within the promise. A silent window is left as it is (and not decoded).
    Returns the loudness, the clip's final audio as decoded [2, N] and its (true peak dBTP, LUFS) as measured."""
    if loud is None or loud.input_lufs is None:
        return loud, None, None
    ceiling, aim = LIMIT_CEILING_DBTP, target_lufs
    for attempt in range(_AUDIO_REDOS + 1):
        decoded = read_audio(clip, rate=rate, channels=2, stage=STAGE)  # [2, N] what a player hears
        tp, lufs = true_peak_dbtp(decoded, rate), integrated_loudness(decoded, rate)
        over = tp - (TRUE_PEAK_MAX_DBTP - _ENCODED_TP_MARGIN_DB)
        off = target_lufs - lufs
        if (over <= 0 and abs(off) <= _ENCODED_LUFS_TOLERANCE) or loud.gain_db >= MAX_CLIP_GAIN_DB:
            return loud, decoded, (tp, lufs)
        if attempt == _AUDIO_REDOS:
            log.warning("%s: encoded audio measures %.2f LUFS, %.2f dBTP after %d redos", clip.name, lufs, tp,
                        attempt)
            return loud, decoded, (tp, lufs)
        ceiling -= max(over, 0.0) + 0.05 * (over > 0)
        aim += off if abs(off) > _ENCODED_LUFS_TOLERANCE else 0.0
        audio, loud = normalize_clip(window, rate, min(aim, -0.5), ceiling_dbtp=ceiling)
        wav_path = save_audio(work / f"audio-{attempt}.wav", audio, rate)
        redone = work / f"redo-{attempt}.mp4"
        run_ffmpeg(["-i", str(clip), "-i", str(wav_path), "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy",
                    *AAC_ARGS, "-movflags", "+faststart", str(redone)], stage=STAGE)  # fmt: skip
        shutil.move(redone, clip)
        log.debug("%s: audio redone (%.2f dBTP, %.2f LUFS encoded)", clip.name, tp, lufs)
    return loud, None
