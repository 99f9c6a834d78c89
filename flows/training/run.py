"""What one `vidmusician train` run is: the data, the run directory, the stages and their recipe, the
cadence of validation and checkpoints. Light (no torch) so the CLI's parser takes its defaults here."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from model.training.config import TrainConfig


@dataclass(frozen=True)
class TrainRun:
    """One `vidmusician train` invocation. `recipe` is stage 1's TrainConfig; stage 2 is the same with
    `lr2` (None: the paper's 1e-5)."""

    data: Path
    out: Path
    stages: tuple[int, ...] = (1, 2)
    recipe: TrainConfig = TrainConfig()
    lr2: float | None = None
    backbone: str = "facebook/musicgen-medium"
    t5: str | None = None  # None: t5-base (debug backbone: the debug T5)
    clip_dim: int | None = None  # None: the features' width
    init: Path | None = None
    device: str = "cpu"
    val_every: int = 500
    ckpt_every: int = 1000
    keep: int = 3
    workers: int = 2
    progress: bool = False

    def __post_init__(self) -> None:
        if not self.stages or any(s not in (1, 2) for s in self.stages) or list(self.stages) != sorted(set(self.stages)):
            raise ValueError(f"stages must be (1,), (2,) or (1, 2), got {self.stages}")
        for name in ("val_every", "ckpt_every", "keep"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")

    def stage_config(self, stage: int) -> TrainConfig:
        if stage == 1:
            return replace(self.recipe, stage=1)
        return replace(self.recipe, stage=2, lr=self.lr2)
