"""Features of one clip from a single decode at 25 fps and one CLIP forward per frame (DESIGN step 7).

``global`` [clip_s, D] fp16: pooled CLS embedding of frames 0, 25, 50, ... (1 fps, Eq. 1);
``rhythm`` [clip_s*50] fp32: Eq. 4 + Algorithm 1 on the patch tokens of every frame;
``rhythm_global`` [clip_s*50] fp32: the same on the pooled (CLS) embedding alone, the paper's
    "global features for rhythm" ablation (Table 2, AT off), from the same forward;
``codes``  [4, clip_s*50] int16: MusicGen EnCodec tokens of the clip's audio at 32 kHz mono.
A producer thread decodes (ffmpeg rawvideo pipe, resized and cropped by ffmpeg) into a bounded
queue while the model runs on the previous batch; no frame is decoded twice.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dvmset.constants import CLIP_SECONDS, SAMPLE_RATE_HZ, TOKEN_RATE_HZ, VIDEO_FPS
from dvmset.shards import ShardEntry, write_shard
from pipeline.clip_encoder import ClipImageEncoder
from pipeline.codec import encode_waveform
from pipeline.errors import StageError, item_failure
from pipeline.media import iter_frames, read_audio
from pipeline.rhythm import distance_sequence, pairwise_similarity, unit_tokens

log = logging.getLogger(__name__)
STAGE = "features"


@dataclass(frozen=True)
class ExtractConfig:
    """How a clip is read; ``max_short_s`` of missing tail is padded (last frame / silence)."""

    clip_s: int = CLIP_SECONDS
    batch_size: int = 32
    queue_batches: int = 4
    max_short_s: float = 1.0
    decoder_threads: int = 0  # ffmpeg -threads; 0 = ffmpeg's choice

    def __post_init__(self) -> None:
        if self.clip_s < 1:
            raise ValueError(f"clip_s must be >= 1 s, got {self.clip_s}")
        if self.batch_size < 1 or self.queue_batches < 1:
            raise ValueError("batch_size and queue_batches must be >= 1")
        if not 0 <= self.max_short_s < self.clip_s:
            raise ValueError(f"max_short_s must be in [0, clip_s), got {self.max_short_s}")

    @property
    def n_frames(self) -> int:
        return self.clip_s * VIDEO_FPS


@dataclass(frozen=True)
class ClipFeatures:
    """The three aligned tensors of one clip (numpy, ready for a shard)."""

    global_: np.ndarray  # [clip_s, D] float16
    rhythm: np.ndarray  # [clip_s * 50] float32, from the patch tokens (Eq. 4)
    rhythm_global: np.ndarray  # [clip_s * 50] float32, from the pooled embedding (ablation AT off)
    codes: np.ndarray  # [4, clip_s * 50] int16

    def __post_init__(self) -> None:
        t = self.global_.shape[0]
        if self.global_.ndim != 2 or self.global_.dtype != np.float16:
            raise ValueError(f"global must be [T, D] float16, got {self.global_.shape} {self.global_.dtype}")
        for name in ("rhythm", "rhythm_global"):
            r = getattr(self, name)
            if r.shape != (t * TOKEN_RATE_HZ,) or r.dtype != np.float32:
                raise ValueError(f"{name} must be [{t * TOKEN_RATE_HZ}] float32, got {r.shape} {r.dtype}")
        if self.codes.ndim != 2 or self.codes.shape[1] != t * TOKEN_RATE_HZ or self.codes.dtype != np.int16:
            raise ValueError(f"codes must be [K, {t * TOKEN_RATE_HZ}] int16, got {self.codes.shape} {self.codes.dtype}")

    def tensors(self) -> dict[str, np.ndarray]:
        return {"global": self.global_, "rhythm": self.rhythm, "rhythm_global": self.rhythm_global,
                "codes": self.codes}


def iter_frame_batches(path: Path, size: int, cfg: ExtractConfig) -> Iterator[np.ndarray]:
    """Decode ``path`` once at 25 fps, scaled to cover ``size`` and centre-cropped: [B, S, S, 3] uint8."""
    return iter_frames(path, size=(size, size), stage=STAGE, fps=VIDEO_FPS, cover=True, scale_flags="bicubic",
                       max_frames=cfg.n_frames, batch_size=cfg.batch_size, threads=cfg.decoder_threads)


def _prefetch(it: Iterator[np.ndarray], maxsize: int) -> Iterator[np.ndarray]:
    """Run ``it`` in a producer thread feeding a bounded queue; errors re-raise in the consumer."""
    q: queue.Queue = queue.Queue(maxsize=maxsize)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in it:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, re-raised there
            q.put(err)
            return
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()  # stops the decoder process when the consumer quits early
        q.put(done)

    thread = threading.Thread(target=produce, name="frame-decoder", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.1)


def video_features(path: Path, encoder: ClipImageEncoder,
                   cfg: ExtractConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One pass over the frames: global [clip_s, D] float16, rhythm and rhythm_global [clip_s*50] float32.

    ``rhythm`` compares every patch token of a frame with the next frame's (Eq. 4); ``rhythm_global``
    compares the pooled embeddings alone (one "token" per frame), for the AT-off ablation.
    """
    n_frames = cfg.n_frames
    sims: list[torch.Tensor] = []  # chunks of [b] inter-frame similarities (Eq. 4)
    sims_global: list[torch.Tensor] = []  # the same on the pooled embedding
    pooled_1fps: list[torch.Tensor] = []  # [D] each
    prev: torch.Tensor | None = None  # unit patch tokens of the last frame seen, [1, K, C]
    prev_pooled: torch.Tensor | None = None  # [1, 1, D]
    seen = 0
    for frames in _prefetch(iter_frame_batches(path, encoder.image_size, cfg), cfg.queue_batches):
        pooled, tokens = encoder(frames)  # [B, D], [B, K, C]
        for toks, last, out in ((unit_tokens(tokens), prev, sims), (unit_tokens(pooled[:, None]), prev_pooled, sims_global)):
            chain = toks if last is None else torch.cat([last, toks])  # [B(+1), K, C]
            if chain.shape[0] > 1:
                out.append(pairwise_similarity(chain[:-1], chain[1:]).cpu())
        prev, prev_pooled = unit_tokens(tokens[-1:]), unit_tokens(pooled[-1:, None])
        first = (-seen) % VIDEO_FPS  # first index in this batch on a whole second
        pooled_1fps.extend(pooled[first::VIDEO_FPS].cpu())
        seen += frames.shape[0]
    short = n_frames - seen
    if seen == 0 or short > cfg.max_short_s * VIDEO_FPS:
        raise StageError(STAGE, f"{path.name}: {seen} frames at {VIDEO_FPS} fps, need {n_frames}")
    if short:
        log.warning("%s: %d frames short of %d; repeating the last frame", path.name, short, n_frames)
    def rhythm(chunks: list[torch.Tensor]) -> np.ndarray:
        sim = torch.cat(chunks).double().numpy() if chunks else np.zeros(0)
        return distance_sequence(np.concatenate([sim, np.ones(short)]))  # repeated frames: distance 0

    glob = torch.stack(pooled_1fps)
    if glob.shape[0] < cfg.clip_s:
        glob = torch.cat([glob, glob[-1:].expand(cfg.clip_s - glob.shape[0], -1)])
    return glob.numpy().astype(np.float16), rhythm(sims), rhythm(sims_global)


def clip_audio(path: Path, cfg: ExtractConfig) -> np.ndarray:
    """The clip's audio as [clip_s * 32000] float32 mono at 32 kHz (short tails padded with silence)."""
    wav = read_audio(path, rate=SAMPLE_RATE_HZ, channels=1, stage=STAGE, duration_s=cfg.clip_s)[0]  # [T]
    want = cfg.clip_s * SAMPLE_RATE_HZ
    if want - wav.shape[0] > cfg.max_short_s * SAMPLE_RATE_HZ:
        raise StageError(STAGE, f"{path.name}: {wav.shape[0] / SAMPLE_RATE_HZ:.2f} s of audio, need {cfg.clip_s} s")
    out = np.zeros(want, np.float32)
    out[: min(want, wav.shape[0])] = wav[:want]
    return out


def extract_clip(
    path: str | Path, encoder: ClipImageEncoder, codec: torch.nn.Module, cfg: ExtractConfig = ExtractConfig()
) -> ClipFeatures:
    """All three features of one clip file; raises StageError with a reason on unreadable media."""
    path = Path(path)
    if not path.is_file():
        raise StageError(STAGE, f"clip file {path} is missing")
    glob, rhythm, rhythm_global = video_features(path, encoder, cfg)
    codes = encode_waveform(codec, clip_audio(path, cfg))  # [4, clip_s * 50]
    return ClipFeatures(global_=glob, rhythm=rhythm, rhythm_global=rhythm_global, codes=codes)


@dataclass(frozen=True)
class ShardClip:
    """A clip to extract into a shard, with the index fields that travel with it."""

    clip_id: str
    path: Path
    query: str | None = None
    source_id: str | None = None
    split: str | None = None


def build_shard(
    dest: Path,
    clips: list[ShardClip],
    encoder: ClipImageEncoder,
    codec: torch.nn.Module,
    cfg: ExtractConfig,
    config_json: str,
    on_clip: Callable[[str, str | None], None] | None = None,
    on_start: Callable[[str], None] | None = None,
) -> tuple[list[dict], dict[str, str]]:
    """Extract ``clips`` and write them as one shard at ``dest`` (atomically).

    Returns (index rows of the clips written, {clip id: error} for clips that failed). A clip that
    raises anything (pipeline.errors policy) is reported, never dropped silently, and the others
    go on; no shard is written when every clip failed. ``on_start(clip_id)`` runs before each clip,
    ``on_clip(clip_id, error)`` after it.
    """
    entries: list[ShardEntry] = []
    failed: dict[str, str] = {}
    for c in clips:
        if on_start is not None:
            on_start(c.clip_id)
        try:
            feats = extract_clip(c.path, encoder, codec, cfg)
        except Exception as err:  # noqa: BLE001 - the stage contract: one clip fails, the shard goes on
            failed[c.clip_id] = item_failure(err)  # whole-run errors (out of memory, ...) re-raise
            log.warning("clip %s: %s", c.clip_id, failed[c.clip_id])
        else:
            entries.append(ShardEntry(c.clip_id, feats.tensors(), config_json, c.query, c.source_id, c.split))
        if on_clip is not None:
            on_clip(c.clip_id, failed.get(c.clip_id))
    rows = write_shard(dest, entries) if entries else []
    return rows, failed
