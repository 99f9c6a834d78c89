"""What one `vidmusician train` run is: the data, the run directory, the stages and their recipe, the
cadence of validation and checkpoints. Light (no torch) so the CLI's parser takes its defaults here."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from flows.training.generate_config import GenerateConfig
from model.ablation import AblationError, Switches, check_switches
from model.training.config import TrainConfig

GENERATE_CFG_COEF: float = GenerateConfig.__dataclass_fields__["cfg_coef"].default  # what `generate` guides with


@dataclass(frozen=True)
class TrainRun:
    """One `vidmusician train` invocation. `recipe` is stage 1's TrainConfig; stage 2 is the same with
    `lr2` (None: the paper's 1e-5).

    The Table 2 switches (`model.ablation.Switches`) build the model's config; they are recorded in every
    checkpoint's config, which `generate` and `evaluate` read. `one_stage`: a single stage that trains
    semantic and rhythm together from the start, at stage 1's lr (`recipe.lr`, 1e-4: the semantic module
    starts untrained, and 1e-5 is the paper's lr for fine-tuning one already trained), for as many
    updates as both stages together (2 x --steps / --epochs), written to RUN/stage2/."""

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
    log_every: int = 50  # a loss line in the log every N steps when there is no progress bar
    activation_checkpointing: bool = False  # recompute the LM's layers in backward (less memory, ~1/3 slower)
    sample_every: int = 0  # every N steps, music for the first `samples` validation windows (0: never)
    samples: int = 2
    # each validation also reports val_loss_guided: the loss under the logits `generate` samples from at this
    # classifier-free guidance coefficient (1: off, it would equal val_loss); it picks nothing
    val_cfg_coef: float = GENERATE_CFG_COEF
    t5_from_scratch: bool = False
    rhythm: bool = True
    init_technique: bool = True
    one_stage: bool = False
    rhythm_source: str = "all_tokens"
    rhythm_style: str = "vidmusician"

    def __post_init__(self) -> None:
        if self.one_stage and self.stages == (1, 2):
            object.__setattr__(self, "stages", (2,))  # the default "both" becomes the one stage
        if self.one_stage and self.lr2 is not None:
            raise AblationError("--one-stage trains at stage 1's lr: set it with --stage1-lr, drop --stage2-lr")
        check_switches(self.switches, tuple(self.stages))
        if not self.stages or any(s not in (1, 2) for s in self.stages) or list(self.stages) != sorted(set(self.stages)):
            raise ValueError(f"stages must be (1,), (2,) or (1, 2), got {self.stages}")
        if self.device != "cuda":  # refused here, before a model is built or the run folder written
            for flag, value in (("--precision", self.recipe.precision), ("--frozen-dtype", self.recipe.frozen_dtype)):
                if value != "fp32":
                    raise ValueError(f"{flag} {value} needs a GPU (--device cuda); on CPU train with {flag} fp32")
        if self.recipe.frozen_dtype != "fp32" and self.recipe.precision == "fp32":
            raise ValueError(f"--frozen-dtype {self.recipe.frozen_dtype} needs autocast: pass --precision bf16 or fp16 "
                             "(the trained weights stay fp32 either way)")
        for name in ("val_every", "ckpt_every", "keep", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.sample_every < 0 or self.samples < 1:
            raise ValueError(f"sample_every must be >= 0 (0: off) and samples >= 1, got {self.sample_every}, {self.samples}")
        if not self.val_cfg_coef > 0:
            raise ValueError(f"val_cfg_coef must be positive (1: no guided validation loss), got {self.val_cfg_coef}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")

    @property
    def switches(self) -> Switches:
        return Switches(t5_from_scratch=self.t5_from_scratch, rhythm=self.rhythm, init_technique=self.init_technique,
                        one_stage=self.one_stage, rhythm_source=self.rhythm_source, rhythm_style=self.rhythm_style)

    def stage_config(self, stage: int) -> TrainConfig:
        if stage == 1:
            return replace(self.recipe, stage=1)
        if self.one_stage:
            r = self.recipe
            return replace(r, stage=2, lr=r.lr, epochs=2 * r.epochs, steps=None if r.steps is None else 2 * r.steps)
        return replace(self.recipe, stage=2, lr=self.lr2)
