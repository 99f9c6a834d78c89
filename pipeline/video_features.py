"""The conditions of any video for generation: the features stage's own code, one decode, cached by content.

`video_conditions` probes the video (a clear error for no picture, a corrupt file, under a second), then
runs `pipeline.features.video_features` (the very function the features stage runs: one decode at 25 fps,
one CLIP forward per frame) over ceil(duration) seconds, the short tail padded as the stage pads it. The
result is cached under the SHA-256 of the file's bytes plus the encoder's identity, so renaming or
re-running a video costs no decode, and an edited file is never served stale features.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dvmset.constants import TOKEN_RATE_HZ
from dvmset.io import atomic_write_bytes
from pipeline.clip_encoder import ClipImageEncoder
from pipeline.errors import StageError
from pipeline.features import ExtractConfig, video_features
from pipeline.media import ffprobe_json
from pipeline.mux import video_track

log = logging.getLogger(__name__)
STAGE = "video-features"
MIN_DURATION_S = 1.0
CACHE_VERSION = 1  # bump when the features' definition changes: old cache entries are then ignored


@dataclass(frozen=True)
class VideoConditions:
    """What the model is conditioned on, from second 0 of the video."""

    duration_s: float  # the span covered: the video stream's duration, or less when asked
    video_duration_s: float  # the video stream's own duration (what the muxed audio must last)
    global_: np.ndarray  # [ceil(duration_s), D] float16, CLIP CLS at 1 fps (Eq. 1)
    rhythm: np.ndarray  # [ceil(duration_s) * 50] float32, Eq. 4 + Algorithm 1 on patch tokens
    rhythm_global: np.ndarray  # [ceil(duration_s) * 50] float32, the same on the pooled embedding

    def __post_init__(self) -> None:
        seconds = math.ceil(self.duration_s)
        if self.global_.ndim != 2 or self.global_.shape[0] < seconds:
            raise ValueError(f"global must be [>= {seconds}, D], got {self.global_.shape}")
        for name in ("rhythm", "rhythm_global"):
            if getattr(self, name).shape != (self.global_.shape[0] * TOKEN_RATE_HZ,):
                raise ValueError(f"{name} must be [{self.global_.shape[0] * TOKEN_RATE_HZ}]")


def content_hash(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of the file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def conditions_span(path: Path, duration_s: float | None = None) -> tuple[float, float]:
    """(seconds to condition on, the video stream's duration); StageError for unusable input."""
    path = Path(path)
    track = video_track(ffprobe_json(path, stage=STAGE), path.name, stage=STAGE)
    if track.duration_s < MIN_DURATION_S:
        raise StageError(STAGE, f"{path.name}: {track.duration_s:.2f} s of video; music needs at least "
                                f"{MIN_DURATION_S:.0f} s")
    if duration_s is None:
        return track.duration_s, track.duration_s
    if not MIN_DURATION_S <= duration_s:
        raise StageError(STAGE, f"{path.name}: --duration {duration_s} is under {MIN_DURATION_S:.0f} s")
    if duration_s > track.duration_s + 1e-6:
        raise StageError(STAGE, f"{path.name}: --duration {duration_s} s is longer than the video's "
                                f"{track.duration_s:.2f} s")
    return duration_s, track.duration_s


def _cache_file(cache_dir: Path, digest: str, encoder_key: str, seconds: int) -> Path:
    key = hashlib.sha256(f"{CACHE_VERSION}|{encoder_key}|{seconds}".encode()).hexdigest()[:16]
    return cache_dir / f"{digest}-{key}.npz"


def _load_cached(path: Path, encoder_key: str) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta != {"version": CACHE_VERSION, "encoder": encoder_key}:
                return None
            return {k: data[k] for k in ("global", "rhythm", "rhythm_global")}
    except (OSError, ValueError, KeyError) as err:
        log.warning("ignoring unreadable feature cache %s (%s)", path.name, err)
        return None


def video_conditions(path: str | Path, encoder: ClipImageEncoder, *, encoder_key: str,
                     cache_dir: Path | None = None, duration_s: float | None = None,
                     batch_size: int = 32) -> VideoConditions:
    """Global and rhythm features of the first `duration_s` (default: all) of `path`'s picture.

    `encoder_key` names the encoder's weights (e.g. "ViT-L-14:openai"): features of another CLIP are
    never served from the cache.
    """
    path = Path(path)
    span, video_s = conditions_span(path, duration_s)
    seconds = math.ceil(span - 1e-6)
    cached = None
    cache_file = None
    if cache_dir is not None:
        cache_file = _cache_file(Path(cache_dir), content_hash(path), encoder_key, seconds)
        if cache_file.is_file():
            cached = _load_cached(cache_file, encoder_key)
    if cached is None:
        # The tail beyond the picture (at most one second) is padded with the last frame, as the stage does.
        cfg = ExtractConfig(clip_s=seconds, batch_size=batch_size, max_short_s=min(1.5, seconds - 0.5))
        glob, rhythm, rhythm_global = video_features(path, encoder, cfg)
        cached = {"global": glob, "rhythm": rhythm, "rhythm_global": rhythm_global}
        if cache_file is not None:
            buf = io.BytesIO()
            np.savez(buf, meta=np.array(json.dumps({"version": CACHE_VERSION, "encoder": encoder_key})), **cached)
            atomic_write_bytes(cache_file, buf.getvalue())
        log.info("%s: features of %d s extracted", path.name, seconds)
    else:
        log.info("%s: features of %d s from the cache", path.name, seconds)
    return VideoConditions(span, video_s, cached["global"], cached["rhythm"], cached["rhythm_global"])
