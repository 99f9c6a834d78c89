"""Music for videos longer than one model window: overlapping windows, each prompted by the previous one.

Windows of W seconds start every `stride_s` whole seconds (the global features are at 1 fps, so a window
boundary always falls on a feature). Window i > 0 is prompted with the previous window's tokens after
the stride (W - stride seconds), and conditioned on the global features and rhythm of its OWN time span,
so a cut at second t steers the music at second t in whichever window generates it. The plan is a pure
function (`plan_windows`); `generate_long` runs it on a model. Output: exactly round(duration x 32000)
samples, since `total_frames` covers them and the decoded audio is cut (or padded) to that length.

Window i samples with `window_seed(seed, i)`: window 0 with the seed itself (so a video that fits in one
window gets exactly `generate_codes(..., seed)`), each later window with a hash of (seed, i). With
`seed + i` instead, seed s's windows 1, 2, ... would draw what seed s + 1's windows 0, 1, ... draw.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from dvmset.constants import SAMPLE_RATE_HZ, TOKEN_RATE_HZ
from model.generation import SamplingParams
from model.vidmusician import VidMusician

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LongformConfig:
    """W = `window_s` seconds per model call, advancing by `stride_s`; W - stride seconds of prompt.
    The default stride keeps audiocraft's MusicGen ratio (extend_stride 18 of 30 s: 12 s of context)."""

    window_s: int = 30
    stride_s: int = 18

    def __post_init__(self) -> None:
        for name in ("window_s", "stride_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be a whole number of seconds (global features are at 1 fps), "
                                 f"got {value!r}")
        if self.window_s < 1:
            raise ValueError(f"window_s must be >= 1 s, got {self.window_s}")
        if not 1 <= self.stride_s < self.window_s:
            raise ValueError(f"stride_s must be in [1, window_s={self.window_s}) so each window keeps a prompt "
                             f"of the previous one, got {self.stride_s}")

    @classmethod
    def for_window(cls, window_s: int = 30, stride_s: int | None = None) -> LongformConfig:
        """A config whose stride defaults to 3/5 of the window (18 s of 30), at least 1 s."""
        if stride_s is None:
            stride_s = max(1, min(window_s - 1, window_s * 3 // 5))
        return cls(window_s=window_s, stride_s=stride_s)


@dataclass(frozen=True)
class Window:
    """Codec frames [start_frame, start_frame + n_frames); the first `n_prompt` come from the previous window."""

    index: int
    start_frame: int
    n_frames: int
    n_prompt: int
    frame_rate: int = TOKEN_RATE_HZ

    def __post_init__(self) -> None:
        if self.start_frame % self.frame_rate:
            raise ValueError(f"window {self.index} starts at frame {self.start_frame}, not on a whole second")
        if not 0 <= self.n_prompt < self.n_frames:
            raise ValueError(f"window {self.index}: prompt of {self.n_prompt} frames for {self.n_frames} frames")

    @property
    def start_s(self) -> int:
        return self.start_frame // self.frame_rate

    @property
    def end_frame(self) -> int:
        return self.start_frame + self.n_frames

    @property
    def n_seconds(self) -> int:
        """Global (1 fps) features that cover the window: seconds [start_s, start_s + n_seconds)."""
        return math.ceil(self.n_frames / self.frame_rate)

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.frame_rate


def window_seed(seed: int, index: int) -> int:
    """The sampling seed of long-form window `index`: `seed` for window 0, else 63 bits of
    sha256("seed:index"), a value no other (seed, index) pair is expected to share."""
    if index == 0:
        return seed
    digest = hashlib.sha256(f"vidmusician-window:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1  # torch.Generator.manual_seed takes up to 2**64 - 1


def num_samples(duration_s: float, sample_rate: int = SAMPLE_RATE_HZ) -> int:
    return int(round(duration_s * sample_rate))


def total_frames(duration_s: float, frame_rate: int = TOKEN_RATE_HZ, sample_rate: int = SAMPLE_RATE_HZ) -> int:
    """Codec frames whose decoded audio covers round(duration x sample_rate) samples."""
    hop = sample_rate // frame_rate
    return -(-num_samples(duration_s, sample_rate) // hop)


def plan_windows(duration_s: float, cfg: LongformConfig = LongformConfig(), frame_rate: int = TOKEN_RATE_HZ,
                 sample_rate: int = SAMPLE_RATE_HZ) -> list[Window]:
    """Pure: the windows covering `duration_s`. One window when it fits in W; otherwise W-long windows
    every stride seconds, the last one ending exactly at the last frame (so possibly shorter than W)."""
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"duration_s must be a positive number, got {duration_s}")
    n_total = total_frames(duration_s, frame_rate, sample_rate)
    width, stride = cfg.window_s * frame_rate, cfg.stride_s * frame_rate
    windows = [Window(0, 0, min(width, n_total), 0, frame_rate)]
    while windows[-1].end_frame < n_total:
        prev = windows[-1]
        start = prev.start_frame + stride
        end = min(start + width, n_total)
        windows.append(Window(prev.index + 1, start, end - start, prev.end_frame - start, frame_rate))
    return windows


@dataclass(frozen=True)
class LongformResult:
    codes: torch.Tensor  # [B, K, total_frames]
    windows: list[Window]
    window_codes: list[torch.Tensor]  # [B, K, window.n_frames] each, prompt included


WindowHook = Callable[[Window, int], None]  # (window just generated, number of windows)


@torch.no_grad()
def generate_long(model: VidMusician, global_feats: torch.Tensor, rhythm: torch.Tensor | None, duration_s: float,
                  cfg: LongformConfig = LongformConfig(), params: SamplingParams | None = None,
                  seed: int | None = None, on_window: WindowHook | None = None) -> LongformResult:
    """Codes for `duration_s` of video. global_feats [B, >= ceil(frames/50), D] at 1 fps from second 0,
    rhythm [B, >= frames] at 50 Hz (or None). Window i samples with `window_seed(seed, i)`; one window (duration <= W)
    is exactly `model.generate_codes(global_feats, rhythm, duration_s, params, seed)`."""
    if cfg.window_s > model.config.max_duration_s:
        raise ValueError(f"window_s={cfg.window_s} exceeds the model's {model.config.max_duration_s} s")
    frame_rate = int(model.frame_rate)
    sample_rate = SAMPLE_RATE_HZ if model.codec is None else int(model.codec.sample_rate)
    windows = plan_windows(duration_s, cfg, frame_rate, sample_rate)
    n_total = windows[-1].end_frame
    need_s = math.ceil(n_total / frame_rate)
    if global_feats.dim() != 3 or global_feats.shape[1] < need_s:
        raise ValueError(f"global features must be [B, >= {need_s}, D] for {duration_s} s, "
                         f"got {tuple(global_feats.shape)}")
    if rhythm is not None and (rhythm.dim() != 2 or rhythm.shape[1] < n_total):
        raise ValueError(f"rhythm must be [B, >= {n_total}] at {frame_rate} Hz for {duration_s} s, "
                         f"got {tuple(rhythm.shape)}")
    out: torch.Tensor | None = None
    per_window: list[torch.Tensor] = []
    for win in windows:
        feats = global_feats[:, win.start_s: win.start_s + win.n_seconds]  # [B, n_seconds, D]: its own span
        sig = None if rhythm is None else rhythm[:, win.start_frame: win.end_frame]  # [B, n_frames]
        prompt = None
        if win.n_prompt:
            prev_win, prev_codes = windows[win.index - 1], per_window[-1]
            prompt = prev_codes[..., win.start_frame - prev_win.start_frame:]  # [B, K, n_prompt]
        codes = model.generate_codes(feats, sig, win.duration_s, params, None if seed is None else window_seed(seed, win.index),
                                     prompt=prompt)  # [B, K, n_frames]
        if codes.shape[-1] != win.n_frames or (prompt is not None and not torch.equal(codes[..., :win.n_prompt],
                                                                                     prompt)):
            raise RuntimeError(f"window {win.index}: generation did not keep its {win.n_prompt} prompt frames")
        if out is None:
            out = torch.empty(codes.shape[0], codes.shape[1], n_total, dtype=codes.dtype, device=codes.device)
        out[..., win.start_frame + win.n_prompt: win.end_frame] = codes[..., win.n_prompt:]
        per_window.append(codes)
        logger.info("window %d/%d: %.1f-%.1f s", win.index + 1, len(windows), win.start_s,
                    win.end_frame / frame_rate)
        if on_window is not None:
            on_window(win, len(windows))
    assert out is not None  # plan_windows returns at least one window
    return LongformResult(out, windows, per_window)


@torch.no_grad()
def decode_to_duration(model: VidMusician, codes: torch.Tensor, duration_s: float) -> torch.Tensor:
    """codes [B, K, T] -> audio [B, 1, round(duration x sample_rate)] (cut, or zero-padded if T is short)."""
    if model.codec is None:
        raise RuntimeError("this model was built without a codec (parameter counting only)")
    want = num_samples(duration_s, int(model.codec.sample_rate))
    audio = model.codec.decode(codes, None)[..., :want]  # [B, 1, <= want]
    if audio.shape[-1] < want:
        audio = torch.nn.functional.pad(audio, (0, want - audio.shape[-1]))
    return audio
