"""Automatic hints per clip for the annotators (not verdicts): silence, still pictures, cuts, loudness.

**[paper]** rejection criteria: >5 s of non-music content, persistent noise, static images,
mismatched background music. The scores are pure functions on arrays; ``qc_clip`` probes the clip
once, decodes its audio once (silence, loudness, true peak, and the waveform peaks the review tool
draws) and its downscaled frames once (cuts and still pictures), all through ``pipeline.media``;
or, in curation, takes all of that from the clip stage's own pass (``ClipDecode``: ffmpeg's one decode
of the window feeds the encoder and, split off and scaled down, ``score_frames``), decoding nothing.

A still picture is measured over a second, not from frame to frame: at 25 fps consecutive frames
of moving footage often differ by less than a grey level (a slow pan, people walking before a
fixed camera), while a held still differs by codec noise only, however far apart its frames are.
So a stretch is still when frames ``STILL_LAG_S`` apart, and every step between them, change fewer
than ``STILL_MAX_CHANGED`` of their pixels by more than ``STILL_PIXEL_DELTA`` grey levels (measured:
held stills 0 %, a fixed camera with people walking ≥ 16 %, a 1 px/frame pan ≥ 17 %, bike footage
≥ 37 %, at 1 s and 160 px wide).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dvmset.peaks import (
    SPEC_BANDS,
    STORED_PEAKS,
    hints_path,
    peaks_from_samples,
    spectrogram_from_samples,
    spectrogram_path,
    stretches,
    write_hints,
    write_peaks,
    write_spectrogram,
)
from pipeline.audio import check_wav
from pipeline.errors import StageError
from pipeline.loudness import ClipLoudness, true_peak_dbtp
from pipeline.media import iter_frames, read_audio
from pipeline.probe import MediaInfo, probe

log = logging.getLogger(__name__)

STAGE = "qc"
ANALYSIS_WIDTH = 160  # frames are scaled to this width (at most) for the cut and still scores
STILL_LAG_S = 1.0  # frames this far apart are compared to find still pictures
STILL_PIXEL_DELTA = 12  # grey levels (0–255): a pixel changed by more than this is not codec noise
STILL_MAX_CHANGED = 0.02  # two frames show the same picture when fewer of their pixels changed
CUT_THRESHOLD = 27.0  # PySceneDetect ContentDetector's default HSV score threshold
LRA_MIN_S = 1.5  # shortest audio with a loudness range (EBU Tech 3342 short-term blocks are 3 s)
MIN_SCENE_S = 0.6  # shortest scene ContentDetector may emit (its default 15 frames at 25 fps)


@dataclass(frozen=True)
class QCReport:
    """Hints for one clip. Ratios are in [0, 1]; loudness fields are None for silent audio.

    ``still_s`` is how many seconds show a still picture; ``static_ratio`` is that share of the
    clip. ``clip_gain_db``/``limiting_db`` are what the clip stage did to the audio (None: not
    normalised there); ``true_peak_dbtp`` is measured on the clip as encoded.
    """

    silence_ratio: float
    static_ratio: float
    scene_cuts: int
    loudness_lufs: float | None
    loudness_range_lu: float | None
    vocal_energy: float | None
    cut_times_s: tuple[float, ...] = ()
    still_s: float = 0.0
    true_peak_dbtp: float | None = None
    clip_gain_db: float | None = None
    limiting_db: float | None = None

    def __post_init__(self) -> None:
        for name in ("silence_ratio", "static_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"QCReport.{name} must be in [0, 1], got {value}")
        if self.scene_cuts < 0 or (self.cut_times_s and self.scene_cuts != len(self.cut_times_s)):
            raise ValueError(f"scene_cuts={self.scene_cuts} disagrees with {len(self.cut_times_s)} cut times")
        if not math.isfinite(self.still_s) or self.still_s < 0:
            raise ValueError(f"QCReport.still_s must be >= 0 seconds, got {self.still_s}")
        for name in ("loudness_lufs", "loudness_range_lu", "vocal_energy", "true_peak_dbtp", "clip_gain_db",
                     "limiting_db"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"QCReport.{name} must be finite or None, got {value}")


# ------------------------------------------------------------------------------------ pure scores


def silence_ratio(wav: np.ndarray, sr: int, threshold_db: float = -50.0, window_s: float = 0.1) -> float:
    """Fraction of ``window_s`` windows of ``wav`` [C, N] whose RMS (all channels) is below ``threshold_db`` dBFS."""
    return float(np.mean(silent_windows(wav, sr, threshold_db, window_s)))


def silent_windows(wav: np.ndarray, sr: int, threshold_db: float = -50.0, window_s: float = 0.1) -> np.ndarray:
    """[W] bool: the ``window_s`` windows of ``wav`` [C, N] whose RMS (all channels) is below ``threshold_db`` dBFS."""
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
    return power < threshold_power


def changed_fraction(a: np.ndarray, b: np.ndarray, delta: int = STILL_PIXEL_DELTA) -> float:
    """Share of pixels of two grey frames [H, W] that differ by more than ``delta`` grey levels."""
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"need two grey frames [H, W] of one size, got {a.shape} and {b.shape}")
    return float(np.count_nonzero(np.abs(a.astype(np.int16) - b.astype(np.int16)) > delta)) / a.size


def still_mask(pair_changed: np.ndarray, step_changed: np.ndarray, lag: int,
               max_changed: float = STILL_MAX_CHANGED) -> np.ndarray:
    """Which of T frames belong to a still stretch [T] bool (pure).

    ``step_changed`` [T-1]: changed share from frame t to t+1; ``pair_changed`` [T-lag]: from t to
    t+lag. Frames t..t+lag are still when that pair and every step between them changed less than
    ``max_changed``. One frame alone is a still picture.
    """
    steps = np.asarray(step_changed, dtype=np.float64)
    pairs = np.asarray(pair_changed, dtype=np.float64)
    n = steps.size + 1
    if n == 1:
        return np.ones(1, dtype=bool)
    if lag < 1 or pairs.size != n - lag:
        raise ValueError(f"{pairs.size} pairs at lag {lag} do not fit {n} frames")
    moving_steps = np.concatenate([[0], np.cumsum(steps >= max_changed)])  # [T]
    quiet_between = moving_steps[lag:] - moving_steps[:-lag] == 0  # [T-lag]: no moving step in t..t+lag
    starts = np.flatnonzero((pairs < max_changed) & quiet_between)
    cover = np.zeros(n + 1, dtype=np.int64)  # +1 at a still span's first frame, -1 past its last
    np.add.at(cover, starts, 1)
    np.add.at(cover, starts + lag + 1, -1)
    return np.cumsum(cover[:n]) > 0


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


def vocal_share(energy_per_s: np.ndarray, start_s: float, end_s: float) -> float:
    """E(vocals) / E(mix) over the whole seconds [start_s, end_s) touches, from the separator's
    per-second energies [2, seconds] (``Separation.energy_per_s``); 0 for silence."""
    a, b = max(0, int(np.floor(start_s))), int(np.ceil(end_s))
    vocal, mix = float(energy_per_s[0, a:b].sum()), float(energy_per_s[1, a:b].sum())
    return vocal / mix if mix > 1e-12 else 0.0


def waveform_peaks(wav: np.ndarray) -> np.ndarray:
    """[C, N] audio → the [STORED_PEAKS] waveform peaks of its mono mix that the review tool draws."""
    return peaks_from_samples(np.asarray(wav, dtype=np.float32).mean(axis=0), STORED_PEAKS)


# ------------------------------------------------------------------------------------- decoding


@dataclass(frozen=True)
class VideoScores:
    cut_times_s: tuple[float, ...]
    still: np.ndarray  # [T] bool: frames inside a still stretch
    fps: float

    @property
    def still_s(self) -> float:
        return float(np.count_nonzero(self.still)) / self.fps

    @property
    def static_ratio(self) -> float:
        return float(np.mean(self.still)) if self.still.size else 0.0


def analysis_size(width: int | None, height: int | None, max_width: int = ANALYSIS_WIDTH) -> tuple[int, int]:
    """(w, h) the frames are scored at: at most ``max_width`` wide, even, the picture's aspect kept."""
    if width is None or height is None:
        raise StageError(STAGE, "the video stream has no picture size")
    w = min(max_width, width)
    w -= w % 2
    h = max(2, round(height * w / width / 2) * 2)
    return w, h


def _analysis_size(info: MediaInfo, width: int) -> tuple[int, int]:
    return analysis_size(info.width, info.height, width)


def score_frames(frames_bgr: Iterable[np.ndarray], fps: float, name: str = "clip", *,
                 lag_s: float = STILL_LAG_S) -> VideoScores:
    """Cut times (s) and the still-picture mask of small BGR frames [H, W, 3] at ``fps``, read once as they come
    (from a decode of the clip file, or from the cut's own decode: ``pipeline.clip``)."""
    import cv2

    lag = max(1, round(lag_s * fps))
    recent: deque[np.ndarray] = deque(maxlen=lag + 1)  # the last lag+1 grey frames [H, W]
    steps: list[float] = []
    pairs: list[float] = []

    def frames() -> Iterator[np.ndarray]:
        for frame in frames_bgr:
            recent.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
            if len(recent) > 1:
                steps.append(changed_fraction(recent[-2], recent[-1]))
            if len(recent) == lag + 1:
                pairs.append(changed_fraction(recent[0], recent[-1]))
            yield frame

    cuts = detect_cuts(frames(), fps)
    n = len(steps) + 1 if steps or recent else 0
    if n == 0:
        raise StageError(STAGE, f"{name}: the video stream decodes to no frames")
    if n <= lag:  # shorter than the lag: compare its first and last frames
        lag = n - 1
        pairs = [changed_fraction(recent[0], recent[-1])] if lag else []
    still = still_mask(np.asarray(pairs), np.asarray(steps), max(lag, 1)) if n > 1 else np.ones(1, bool)
    return VideoScores(tuple(cuts), still, float(fps))


def video_scores(path: Path, info: MediaInfo, *, lag_s: float = STILL_LAG_S) -> VideoScores:
    """One decode of the clip file's small BGR frames: cut times (s) and the still-picture mask."""
    if info.fps is None:
        raise StageError(STAGE, f"{path.name}: the video stream has no frame rate")
    frames = iter_frames(path, size=_analysis_size(info, ANALYSIS_WIDTH), stage=STAGE, pix_fmt="bgr24",
                         scale_flags="area")
    return score_frames(frames, info.fps, path.name, lag_s=lag_s)


@dataclass(frozen=True)
class ClipDecode:
    """What the clip stage already decoded while it cut the clip (``pipeline.clip.cut_clip(analyse=True)``), so
    QC decodes nothing again: the clip's stream facts, its audio as encoded [C, N] at its rate (None: no audio)
    and the scores of the frames the encoder was fed; ``measured``: that audio's (true peak dBTP, integrated
    LUFS) where the clip stage measured them (its loudness check), so QC does not measure them again."""

    info: MediaInfo
    audio: tuple[np.ndarray, int] | None
    video: VideoScores
    measured: tuple[float, float] | None = None


def _audio_scores(wav: np.ndarray, sr: int, lufs: float | None = None) -> tuple[float, float | None, float | None]:
    """Silence ratio, integrated loudness and loudness range; ``lufs``: the loudness already measured on ``wav``."""
    import pyloudnorm

    silence = silence_ratio(wav, sr)
    if wav.shape[0] > 5 or wav.shape[1] < int(0.4 * sr):
        return silence, None, None
    meter = pyloudnorm.Meter(sr)
    data = wav.T.astype(np.float64)  # [N, C]
    lufs = float(meter.integrated_loudness(data)) if lufs is None else lufs
    if not math.isfinite(lufs):
        return silence, None, None
    if wav.shape[1] < int(LRA_MIN_S * sr):
        return silence, lufs, None  # pyloudnorm's 3 s short-term blocks need this much (plus its 1.5 s pad)
    lra = float(meter.loudness_range(data))
    return silence, lufs, lra if math.isfinite(lra) else None


def read_clip_audio(path: Path, info: MediaInfo) -> tuple[np.ndarray, int] | None:
    """The clip's audio [C, N] at its own rate and channels (known from ``info``), or None without audio."""
    if not info.has_audio or not info.audio_sample_rate or not info.audio_channels:
        return None
    wav = read_audio(path, rate=info.audio_sample_rate, channels=info.audio_channels, stage=STAGE)
    return (wav, info.audio_sample_rate) if wav.shape[1] else None


def clip_waveform_peaks(path: Path) -> np.ndarray:
    """[STORED_PEAKS] waveform peaks of a clip file (for clips QC stored none for); zeros without audio."""
    audio = read_clip_audio(Path(path), probe(Path(path), stage=STAGE))
    return waveform_peaks(audio[0]) if audio is not None else np.zeros(STORED_PEAKS, np.float32)


SILENCE_WINDOW_S = 0.1  # silence_ratio's windows
HINT_MIN_S = 1.0  # still and silent stretches shorter than this are not drawn on the review timeline


def timeline_hints(duration_s: float, video: VideoScores, silent: np.ndarray | None,
                   vocals_per_s: Sequence[float] | None) -> dict:
    """The per-second QC hints the review page draws under the waveform (dvmset.peaks.write_hints):
    scene cuts, still stretches, silent stretches (0.1 s windows) and the residual-vocal share per second."""
    return {"seconds": round(float(duration_s), 2), "cuts": [round(float(t), 2) for t in video.cut_times_s],
            "still": stretches(video.still, video.fps, HINT_MIN_S),
            "silence": stretches(silent, 1 / SILENCE_WINDOW_S, HINT_MIN_S) if silent is not None else [[0.0, duration_s]],
            "vocals": [round(float(v), 3) for v in vocals_per_s] if vocals_per_s is not None else None}


def qc_clip(clip_path: Path, *, vocal_energy: float | None = None, loudness: ClipLoudness | None = None,
            peaks_path: Path | None = None, vocals_per_s: Sequence[float] | None = None,
            decoded: ClipDecode | None = None) -> QCReport:
    """Score one clip: one probe, its audio decoded once, its frames decoded once; with ``decoded`` (what the
    cut decoded in its own pass: ``Cut.decoded``) no probe and no decode at all.

    ``loudness`` is what the clip stage did to the audio (``Cut.loudness``), copied into the report;
    ``peaks_path`` (e.g. ``DataRoot.peaks_path(clip_id)``) receives the waveform peaks for the review
    tool (all zeros for a clip without audio), and beside it the spectrogram and the per-second timeline
    hints (``vocals_per_s``: the residual-vocal share of each second, from the separator). A clip without video is a StageError; a clip without
    audio scores as all silence.
    """
    clip_path = Path(clip_path)
    info = probe(clip_path, stage=STAGE) if decoded is None else decoded.info
    if not info.has_video:
        raise StageError(STAGE, f"{clip_path.name}: no video stream")
    audio = read_clip_audio(clip_path, info) if decoded is None else decoded.audio
    peak: float | None = None
    if audio is not None:
        wav, sr = audio
        measured = decoded.measured if decoded is not None else None
        silence, lufs, lra = _audio_scores(wav, sr, measured[1] if measured else None)
        tp = measured[0] if measured else true_peak_dbtp(wav, sr)
        peak = tp if math.isfinite(tp) else None
        peaks = waveform_peaks(wav)
    else:
        silence, lufs, lra = 1.0, None, None
        peaks = np.zeros(STORED_PEAKS, np.float32)
    video = video_scores(clip_path, info) if decoded is None else decoded.video
    if peaks_path is not None:
        write_peaks(peaks_path, peaks)
        spec = spectrogram_from_samples(*audio) if audio is not None else np.zeros((SPEC_BANDS, 1), np.uint8)
        write_spectrogram(spectrogram_path(peaks_path), spec)  # beside the peaks, for the review tool
        silent = silent_windows(*audio, window_s=SILENCE_WINDOW_S) if audio is not None else None
        write_hints(hints_path(peaks_path), timeline_hints(info.duration_s, video, silent, vocals_per_s))
    report = QCReport(
        silence_ratio=silence, static_ratio=video.static_ratio, scene_cuts=len(video.cut_times_s),
        loudness_lufs=lufs, loudness_range_lu=lra, vocal_energy=vocal_energy, cut_times_s=video.cut_times_s,
        still_s=round(video.still_s, 3), true_peak_dbtp=peak,
        clip_gain_db=loudness.gain_db if loudness is not None else None,
        limiting_db=loudness.limiting_db if loudness is not None else None,
    )  # fmt: skip
    log.debug("qc %s: %s", clip_path.name, report)
    return report
