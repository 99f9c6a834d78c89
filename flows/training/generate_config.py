"""The settings of `vidmusician generate`, importable without torch (the CLI reads its defaults)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from model.generation import SamplingParams
    from model.longform import LongformConfig


@dataclass(frozen=True)
class GenerateConfig:
    """One `generate` run: what to load, how to sample, how to window long videos."""

    checkpoint: Path
    out_dir: Path
    duration_s: float | None = None  # None: the whole video; else its first seconds (the rest is silent)
    seed: int = 0
    cfg_coef: float = 3.0
    top_k: int = 250
    temperature: float = 1.0
    window_s: int = 30
    stride_s: int | None = None  # None: 3/5 of the window (18 s of 30)
    clip_model: str | None = None  # None: the CLIP the checkpoint records (train writes it), else ViT-L-14
    clip_pretrained: str | None = "openai"  # with clip_model None: the checkpoint's recorded tag, if any
    allow_other_clip: bool = False  # True: a CLIP other than the one the checkpoint records (same width) is used
    device: str = "cpu"
    backbone: str | None = None  # a local copy of the checkpoint's MusicGen (same weights, other path)
    cache_dir: Path | None = None  # feature cache; None: out_dir/.features
    mux: bool = True
    longform: LongformConfig = field(init=False)
    sampling: SamplingParams = field(init=False)

    def __post_init__(self) -> None:
        if self.duration_s is not None and not self.duration_s > 0:
            raise ValueError(f"--duration must be positive, got {self.duration_s}")
        if self.cfg_coef <= 0:
            raise ValueError(f"--cfg-coef must be positive (1.0 turns guidance off), got {self.cfg_coef}")
        if self.clip_model == "tiny":
            object.__setattr__(self, "clip_pretrained", None)
        from model.generation import SamplingParams  # torch: imported when a run is configured, not by --help
        from model.longform import LongformConfig

        object.__setattr__(self, "longform", LongformConfig.for_window(self.window_s, self.stride_s))
        object.__setattr__(self, "sampling", SamplingParams(temperature=self.temperature, top_k=self.top_k,
                                                            cfg_coef=self.cfg_coef))

    @property
    def encoder_key(self) -> str:
        return f"{self.clip_model}:{self.clip_pretrained}"

    @property
    def feature_cache(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else self.out_dir / ".features"
