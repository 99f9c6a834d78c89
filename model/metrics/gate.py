"""The input gate: which clips may be scored, and why the others are left out.

Pure checks on decoded arrays and on the clip ids found in each folder. An item that fails is
listed with its reason and excluded from every metric: never scored blindly, never given a
sentinel value, never replaced by another file (silent generations score well on PANNs FD/KL).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GateConfig:
    silence_dbfs: float = -60.0  # RMS over the whole file below this: silent
    clip_level: float = 0.999  # |sample| at or above this counts as clipped
    max_clipped_share: float = 0.01  # more than this share of clipped samples: refused
    min_duration_s: float = 1.0
    min_sample_rate: int = 16000  # below: too little bandwidth for the 16–48 kHz embedders
    # generated music longer or shorter than its video by more than this: not music for that video
    # (4 s of music scored against a 60 s video's cuts would read as a low Rhythm recall)
    max_video_mismatch_s: float = 1.0
    # generated music silent (every `silence_frame_s` frame's RMS below `silence_dbfs`) for longer than this
    # in one stretch: refused (12 s of music then 48 s of silence passes the whole-file RMS and scores Rhythm 0).
    # None: no limit
    max_silence_s: float | None = 10.0
    silence_frame_s: float = 0.05

    def __post_init__(self) -> None:
        if self.silence_dbfs >= 0 or not 0 < self.clip_level <= 1 or not 0 <= self.max_clipped_share < 1:
            raise ValueError(f"gate thresholds out of range: {self}")
        if self.min_duration_s <= 0 or self.min_sample_rate <= 0 or self.max_video_mismatch_s <= 0:
            raise ValueError(f"min_duration_s, min_sample_rate and max_video_mismatch_s must be positive: {self}")
        if (self.max_silence_s is not None and not self.max_silence_s > 0) or not self.silence_frame_s > 0:
            raise ValueError(f"max_silence_s (None for no limit) and silence_frame_s must be positive: {self}")


@dataclass(frozen=True)
class Exclusion:
    """One clip left out: which folder's file, and a reason a person can act on."""

    clip_id: str
    role: str  # "generated" | "reference" | "video"
    reason: str


def audio_problems(wav: np.ndarray, sr: int, config: GateConfig = GateConfig()) -> list[str]:
    """Reasons ``wav`` [C, N] at ``sr`` Hz may not be scored (empty when it may)."""
    x = np.asarray(wav)
    if x.ndim != 2 or x.shape[1] == 0:
        return ["no audio samples"]
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).sum())
        return [f"{bad} NaN or infinite samples"]
    problems = []
    if sr < config.min_sample_rate:
        problems.append(f"sample rate {sr} Hz below {config.min_sample_rate} Hz")
    duration = x.shape[1] / sr
    if duration < config.min_duration_s:
        problems.append(f"too short: {duration:.2f} s < {config.min_duration_s:g} s")
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    rms_db = 20.0 * math.log10(rms) if rms > 0 else -math.inf
    if rms_db < config.silence_dbfs:
        problems.append(f"silent: RMS {rms_db:.1f} dBFS < {config.silence_dbfs:g} dBFS")
    clipped = float(np.mean(np.abs(x) >= config.clip_level))
    if clipped > config.max_clipped_share:
        problems.append(f"clipped: {100 * clipped:.1f}% of samples at full scale")
    return problems


def longest_silence_s(mono: np.ndarray, sr: int, config: GateConfig = GateConfig()) -> float:
    """Seconds of the longest run of consecutive frames (`silence_frame_s` each, the last one partial) whose
    RMS is below `silence_dbfs`, in ``mono`` [N] at ``sr`` Hz."""
    x = np.asarray(mono, dtype=np.float64).reshape(-1)
    hop = max(1, int(round(config.silence_frame_s * sr)))
    n_frames = -(-x.size // hop)
    if n_frames == 0:
        return 0.0
    padded = np.zeros(n_frames * hop)
    padded[: x.size] = x
    frames = padded.reshape(n_frames, hop)
    lengths = np.full(n_frames, hop)
    lengths[-1] = x.size - (n_frames - 1) * hop
    rms = np.sqrt(np.sum(frames * frames, axis=1) / lengths)  # [n_frames]
    silent = rms < 10.0 ** (config.silence_dbfs / 20.0)
    best = run = 0
    for i, quiet in enumerate(silent):  # in samples, so a partial last frame counts its own length
        run = run + int(lengths[i]) if quiet else 0
        best = max(best, run)
    return best / sr


def silence_problem(mono: np.ndarray, sr: int, config: GateConfig = GateConfig()) -> str | None:
    """The reason generated music may not be scored for a silent stretch longer than `max_silence_s`, or None."""
    if config.max_silence_s is None:
        return None
    longest = longest_silence_s(mono, sr, config)
    if longest <= config.max_silence_s:
        return None
    return (f"silent for {longest:.1f} s in one stretch (below {config.silence_dbfs:g} dBFS; the limit is "
            f"{config.max_silence_s:g} s, --max-silence): generated music must cover the video")


def video_problems(duration_s: float | None, fps: float | None) -> list[str]:
    """Reasons a video may not be scored: no duration or no frame rate known."""
    problems = []
    if duration_s is None or not math.isfinite(duration_s) or duration_s <= 0:
        problems.append("no duration")
    if fps is None or not math.isfinite(fps) or fps <= 0:
        problems.append("no frame rate")
    return problems


def pair_ids(generated: Mapping[str, Sequence[str]], reference: Mapping[str, Sequence[str]],
             videos: Mapping[str, Sequence[str]] | None = None) -> tuple[list[str], list[Exclusion]]:
    """Pair clips by id (file name without extension) across the folders.

    Each mapping is clip id → the file names with that id in one folder. An id found twice in
    one folder (``x.wav`` and ``x.flac``) is ambiguous and excluded, never resolved by picking
    one; an id missing from another folder is unpaired. Returns the sorted ids that pair, and
    the exclusions.
    """
    roles = {"generated": generated, "reference": reference}
    if videos is not None:
        roles["video"] = videos
    excluded: list[Exclusion] = []
    ambiguous: set[str] = set()
    for role, files in roles.items():
        for cid, names in files.items():
            if len(names) > 1:
                ambiguous.add(cid)
                excluded.append(Exclusion(cid, role, f"ambiguous: {len(names)} files share the id ({', '.join(sorted(names))})"))
    all_ids = set().union(*(set(f) for f in roles.values()))
    paired = []
    for cid in sorted(all_ids - ambiguous):
        missing = [role for role, files in roles.items() if cid not in files]
        if missing:
            present = next(role for role in roles if role not in missing)
            excluded.append(Exclusion(cid, present, f"unpaired: no {' and no '.join(missing)} file with this id"))
        else:
            paired.append(cid)
    return paired, sorted(excluded, key=lambda e: (e.clip_id, e.role))


def duration_mismatch(music_s: float, video_s: float, config: GateConfig = GateConfig()) -> str | None:
    """The reason generated music of ``music_s`` may not be scored against a video of ``video_s``, or None."""
    if abs(music_s - video_s) <= config.max_video_mismatch_s:
        return None
    return (f"{music_s:.2f} s of music for a {video_s:.2f} s video (more than {config.max_video_mismatch_s:g} s "
            "apart): generate music for the whole video")
