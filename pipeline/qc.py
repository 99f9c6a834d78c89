"""Automatic hints per clip for the annotators (not verdicts): silence, static images, cuts, loudness.

**[paper]** rejection criteria: >5 s of non-music content, persistent noise, static images,
mismatched background music. The scores are pure functions on arrays; ``qc_clip`` decodes the
clip's audio once and its downscaled frames once (ffmpeg pipes) and feeds both to them.
"""

from __future__ import annotations

import logging
import math
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.audio import StreamInfo, check_wav, load_audio, probe_streams
from pipeline.errors import StageError

log = logging.getLogger(__name__)

ANALYSIS_WIDTH = 160  # frames are scaled to this width (at most) for the cut and motion scores
STATIC_DIFF = 1.0  # mean |Δgrey| (0–255) below which two consecutive frames count as the same picture
CUT_THRESHOLD = 27.0  # PySceneDetect ContentDetector's default HSV score threshold
LRA_MIN_S = 1.5  # shortest audio with a loudness range (EBU Tech 3342 short-term blocks are 3 s)
MIN_SCENE_S = 0.6  # shortest scene ContentDetector may emit (its default 15 frames at 25 fps)


@dataclass(frozen=True)
class QCReport:
    """Hints for one clip. Ratios are in [0, 1]; loudness fields are None for silent audio."""

    silence_ratio: float
    static_ratio: float
    scene_cuts: int
    loudness_lufs: float | None
    loudness_range_lu: float | None
    vocal_energy: float | None
    cut_times_s: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        for name in ("silence_ratio", "static_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"QCReport.{name} must be in [0, 1], got {value}")
        if self.scene_cuts < 0 or (self.cut_times_s and self.scene_cuts != len(self.cut_times_s)):
            raise ValueError(f"scene_cuts={self.scene_cuts} disagrees with {len(self.cut_times_s)} cut times")
        for name in ("loudness_lufs", "loudness_range_lu", "vocal_energy"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"QCReport.{name} must be finite or None, got {value}")


# ------------------------------------------------------------------------------------ pure scores


def silence_ratio(wav: np.ndarray, sr: int, threshold_db: float = -50.0, window_s: float = 0.1) -> float:
    """Fraction of ``window_s`` windows of ``wav`` [C, N] whose RMS (all channels) is below ``threshold_db`` dBFS."""
    check_wav(wav, sr)
    if window_s <= 0:
        raise ValueError(f"window_s must be positive, got {window_s}")
    if wav.shape[1] == 0:
        raise ValueError("silence_ratio needs at least one sample")
    win = max(1, round(window_s * sr))
    n_windows = max(1, wav.shape[1] // win)
    frames = wav[:, : n_windows * win] if wav.shape[1] >= win else wav
    power = np.square(frames, dtype=np.float64).reshape(wav.shape[0], n_windows, -1).mean(axis=(0, 2))  # [W]
    threshold_power = 10.0 ** (threshold_db / 10.0)
    return float(np.mean(power < threshold_power))


def frame_diffs(frames: np.ndarray) -> np.ndarray:
    """Mean absolute difference between consecutive grey frames [T, H, W] → [T-1] (0–255 scale)."""
    if frames.ndim != 3:
        raise ValueError(f"frames must be [T, H, W] grey images, got shape {frames.shape}")
    return np.abs(np.diff(frames.astype(np.int16), axis=0)).mean(axis=(1, 2)).astype(np.float64)


def static_ratio(frame_diffs: np.ndarray, threshold: float = STATIC_DIFF) -> float:
    """Fraction of frame-to-frame steps whose mean |Δgrey| is below ``threshold`` (1.0 for < 2 frames)."""
    diffs = np.asarray(frame_diffs, dtype=np.float64)
    if diffs.ndim != 1:
        raise ValueError(f"frame_diffs must be 1-D, got shape {diffs.shape}")
    if diffs.size == 0:
        return 1.0
    return float(np.mean(diffs < threshold))


def detect_cuts(frames_bgr: Iterable[np.ndarray], fps: float, *, threshold: float = CUT_THRESHOLD,
                min_scene_s: float = MIN_SCENE_S) -> list[float]:
    """Times (s) where a new scene starts, by PySceneDetect's ContentDetector fed frame by frame."""
    from scenedetect import ContentDetector, FrameTimecode

    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    detector = ContentDetector(threshold=threshold, min_scene_len=max(1, round(min_scene_s * fps)))
    cuts: list[FrameTimecode] = []
    last: FrameTimecode | None = None
    for index, frame in enumerate(frames_bgr):
        last = FrameTimecode(index, fps)
        cuts += detector.process_frame(last, frame)
    if last is not None:
        cuts += detector.post_process(last)
    return [round(float(c.seconds), 4) for c in cuts]


# ------------------------------------------------------------------------------------- decoding


def _analysis_size(info: StreamInfo, width: int) -> tuple[int, int]:
    assert info.width is not None and info.height is not None
    w = min(width, info.width)
    w -= w % 2
    h = max(2, round(info.height * w / info.width / 2) * 2)
    return w, h


def iter_frames(path: Path, info: StreamInfo, width: int = ANALYSIS_WIDTH) -> Iterator[np.ndarray]:
    """Yield the video's frames as small BGR images [H, W, 3] uint8, streamed from one ffmpeg decode."""
    w, h = _analysis_size(info, width)
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(path), "-map", "0:v:0",
           "-an", "-vf", f"scale={w}:{h}:flags=area", "-pix_fmt", "bgr24", "-f", "rawvideo", "pipe:1"]  # fmt: skip
    size = w * h * 3
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        while chunk := proc.stdout.read(size):
            if len(chunk) < size:
                break
            yield np.frombuffer(chunk, dtype=np.uint8).reshape(h, w, 3)
        err = proc.stderr.read()
        if proc.wait() != 0:
            raise StageError("qc", f"{path.name}: ffmpeg cannot decode its video ({err.decode(errors='replace')[-300:]})")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def video_scores(path: Path, info: StreamInfo) -> tuple[np.ndarray, list[float]]:
    """One decode: per-step grey differences [T-1] and cut times (s)."""
    import cv2

    if info.fps is None:
        raise StageError("qc", f"{path.name}: the video stream has no frame rate")
    diffs: list[float] = []
    prev: np.ndarray | None = None

    def frames() -> Iterator[np.ndarray]:
        nonlocal prev
        for frame in iter_frames(path, info):
            grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.int16)  # [H, W]
            if prev is not None:
                diffs.append(float(np.abs(grey - prev).mean()))
            prev = grey
            yield frame

    cuts = detect_cuts(frames(), info.fps)
    return np.asarray(diffs, dtype=np.float64), cuts


def _audio_scores(wav: np.ndarray, sr: int) -> tuple[float, float | None, float | None]:
    import pyloudnorm

    silence = silence_ratio(wav, sr)
    if wav.shape[0] > 5 or wav.shape[1] < int(0.4 * sr):
        return silence, None, None
    meter = pyloudnorm.Meter(sr)
    data = wav.T.astype(np.float64)  # [N, C]
    lufs = float(meter.integrated_loudness(data))
    if not math.isfinite(lufs):
        return silence, None, None
    if wav.shape[1] < int(LRA_MIN_S * sr):
        return silence, lufs, None  # pyloudnorm's 3 s short-term blocks need this much (plus its 1.5 s pad)
    lra = float(meter.loudness_range(data))
    return silence, lufs, lra if math.isfinite(lra) else None


def vocal_share(energy_per_s: np.ndarray, start_s: float, end_s: float) -> float:
    """E(vocals) / E(mix) over the whole seconds [start_s, end_s) touches, from the separator's
    per-second energies [2, seconds] (``Separation.energy_per_s``); 0 for silence."""
    a, b = max(0, int(np.floor(start_s))), int(np.ceil(end_s))
    vocal, mix = float(energy_per_s[0, a:b].sum()), float(energy_per_s[1, a:b].sum())
    return vocal / mix if mix > 1e-12 else 0.0


def qc_clip(clip_path: Path, *, vocal_energy: float | None = None) -> QCReport:
    """Score one clip: audio decoded once (silence, loudness, loudness range), frames decoded once.

    A clip without video is a StageError; a clip without audio scores as all silence.
    """
    clip_path = Path(clip_path)
    info = probe_streams(clip_path, stage="qc")
    if not info.has_video:
        raise StageError("qc", f"{clip_path.name}: no video stream")
    if info.has_audio:
        wav, sr = load_audio(clip_path)
        silence, lufs, lra = _audio_scores(wav, sr)
    else:
        silence, lufs, lra = 1.0, None, None
    diffs, cuts = video_scores(clip_path, info)
    report = QCReport(
        silence_ratio=silence, static_ratio=static_ratio(diffs), scene_cuts=len(cuts), loudness_lufs=lufs,
        loudness_range_lu=lra, vocal_energy=vocal_energy, cut_times_s=tuple(cuts),
    )  # fmt: skip
    log.debug("qc %s: %s", clip_path.name, report)
    return report
