"""The evaluation's inputs: clip files by id, the input gate, and each clip's features.

A clip id is a file name without its extension. An audio role (generated, reference) reads
audio files (.wav .flac .mp3 .ogg .opus .m4a .aac); an id with none falls back to a video
container's audio stream (a curated clip's .mp4). Two audio files with one id in one folder are
ambiguous and left out. The videos role reads video containers only.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.metrics.audio import resample, to_mono
from model.metrics.gate import (
    Exclusion,
    GateConfig,
    audio_problems,
    duration_mismatch,
    silence_problem,
    video_problems,
)
from model.metrics.scores import ClipFeatures
from pipeline.errors import StageError

log = logging.getLogger(__name__)

AUDIO_EXTS = frozenset({".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac"})
VIDEO_EXTS = frozenset({".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v"})
STAGE = "evaluate"


def list_clips(folder: Path, role: str) -> dict[str, list[Path]]:
    """Clip id → the files that carry it for ``role`` ("generated", "reference" or "video")."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--{'videos' if role == 'video' else role}: {folder} is not a folder")
    audio: dict[str, list[Path]] = defaultdict(list)
    video: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        ext = path.suffix.lower()
        if ext in AUDIO_EXTS:
            audio[path.stem].append(path)
        elif ext in VIDEO_EXTS:
            video[path.stem].append(path)
    if role == "video":
        return dict(video)
    return {cid: audio.get(cid) or video[cid] for cid in sorted(set(audio) | set(video))}


@dataclass(frozen=True)
class Decoded:
    mono: np.ndarray  # [N] float32, the mean of the channels
    sr: int

    def at(self, rate: int) -> np.ndarray:
        return resample(self.mono, self.sr, rate)


def decode_audio(path: Path, gate: GateConfig) -> tuple[Decoded | None, list[str]]:
    """Decode at the file's own rate and channels; the gate's reasons when it may not be scored."""
    from pipeline.media import read_audio
    from pipeline.probe import probe

    try:
        info = probe(path, stage=STAGE)
        if not info.has_audio or not info.audio_sample_rate or not info.audio_channels:
            return None, ["no audio stream"]
        wav = read_audio(path, rate=info.audio_sample_rate, channels=info.audio_channels, stage=STAGE)  # [C, N]
    except StageError as err:
        return None, [str(err.args[0])]
    problems = audio_problems(wav, info.audio_sample_rate, gate)
    if problems:
        return None, problems
    return Decoded(to_mono(wav), info.audio_sample_rate), []


def probe_video(path: Path) -> tuple[float, float, int, int] | list[str]:
    """(duration s, fps, width, height), or the gate's reasons."""
    from pipeline.probe import probe

    try:
        info = probe(path, stage=STAGE)
    except StageError as err:
        return [str(err.args[0])]
    if not info.has_video:
        return ["no video stream"]
    problems = video_problems(info.duration_s, info.fps)
    if problems or info.width is None or info.height is None:
        return problems or ["no picture size"]
    return info.duration_s, float(info.fps), info.width, info.height  # type: ignore[arg-type]


def imagebind_clips(path: Path, duration_s: float, fps: float, size: tuple[int, int], config) -> list[np.ndarray]:
    """The frames ImageBind samples, decoded at the video's own size: clips of [T, H, W, 3] uint8 RGB."""
    from model.metrics.imagebind import video_frame_indices
    from pipeline.media import iter_frames

    n_est = max(1, round(duration_s * fps))
    wanted = video_frame_indices(duration_s, fps, n_est, config)
    needed = {i for clip in wanted for i in clip}
    frames: dict[int, np.ndarray] = {}
    last: np.ndarray | None = None
    for index, frame in enumerate(iter_frames(path, size=size, stage=STAGE, pix_fmt="rgb24")):
        last = frame
        if index in needed:
            frames[index] = frame.copy()
        if index >= max(needed):
            break
    if last is None:
        raise StageError(STAGE, f"{path.name}: no frames decoded")
    # A stream shorter than its stated duration: ImageBind's reader clamps to the last frame too.
    return [np.stack([frames.get(i, last) for i in clip]) for clip in wanted]


def gate_and_extract(ids: list[str], files: dict[str, dict[str, list[Path]]], gate: GateConfig,
                     extract_audio: Callable[[str, str, Decoded, ClipFeatures], None],
                     extract_video: Callable[[Path, tuple[float, float, int, int], ClipFeatures], None] | None,
                     on_item: Callable[[str], None] | None = None) -> tuple[list[ClipFeatures], list[Exclusion]]:
    """Decode each paired clip once per role, gate it, and let the extractors fill its features.

    A clip any of whose files fails the gate is excluded from every metric, with the reasons (among
    them generated music whose duration is not its video's, within the gate's tolerance); so is one
    whose extraction raises a ``StageError`` (role "clip"). Other errors stop the run.
    """
    kept: list[ClipFeatures] = []
    excluded: list[Exclusion] = []
    for cid in ids:
        feats = ClipFeatures(cid)
        reasons: list[Exclusion] = []
        decoded: dict[str, Decoded] = {}
        for role in ("generated", "reference"):
            if role not in files:
                continue
            path = files[role][cid][0]
            dec, problems = decode_audio(path, gate)
            if dec is not None and role == "generated" and (why := silence_problem(dec.mono, dec.sr, gate)):
                dec, problems = None, [why]
            reasons += [Exclusion(cid, role, f"{path.name}: {p}") for p in problems]
            if dec is not None:
                decoded[role] = dec
                feats.durations[role] = dec.mono.size / dec.sr
        video_info = None
        if "video" in files:
            vpath = files["video"][cid][0]
            got = probe_video(vpath)
            if isinstance(got, list):
                reasons += [Exclusion(cid, "video", f"{vpath.name}: {p}") for p in got]
            else:
                video_info = got
                feats.durations["video"] = got[0]
                if "generated" in decoded and (why := duration_mismatch(feats.durations["generated"], got[0], gate)):
                    reasons.append(Exclusion(cid, "generated", f"{files['generated'][cid][0].name}: {why}"))
        if reasons:
            excluded += reasons
        else:
            try:
                for role, dec in decoded.items():
                    extract_audio(cid, role, dec, feats)
                if video_info is not None and extract_video is not None:
                    extract_video(files["video"][cid][0], video_info, feats)
            except StageError as err:  # a decoder or detector failure on this clip's files
                excluded.append(Exclusion(cid, "clip", str(err)))
            else:
                kept.append(feats)
        if on_item is not None:
            on_item(cid)
    return kept, excluded
