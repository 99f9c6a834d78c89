"""How one stage of VidMusician trains: a frozen config with the paper's values as defaults (§5.1).

Stage 1 trains the semantic module at lr 1e-4, stage 2 semantic + rhythm at lr 1e-5; AdamW
β = (0.9, 0.95), eps 1e-8, weight decay 0.1; linear warm-up over 6000 updates, then constant (the
paper names no decay); batch 16; 120 epochs per stage; gradient clip 1.0.

Choices the paper leaves open, made here:

* classifier-free-guidance dropout 0.3 per sample, MusicGen's `classifier_free_guidance.training_dropout`
  (the paper generates with CFG but gives no training dropout): a dropped sample loses both conditions
  together (null semantic rows, F_Rj = 0), exactly the unconditional half generation uses.
* weight decay only on freshly initialised matrices (see `model.training.optim.param_groups` for the measurement).
* EMA off by default (the paper does not mention one); `ema_decay=0.999` turns it on. When on, the EMA
  weights are the ones validated, written to best.pt (so stage 2 starts from them and `generate` reads
  them); rotating ckpt-*.pt hold the raw weights and the EMA shadow, for an exact resume.
* `accumulate` micro-batches of `batch_size` per update: the update sees `batch_size * accumulate` rows
  (the paper's batch 16 on one GPU: batch 4, accumulate 4), drawn and CFG-dropped as one batch of that size.
* `frozen_dtype` bf16/fp16 holds the frozen MusicGen LM in half precision (GPU only); the trained
  parameters stay in fp32.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal

Precision = Literal["fp32", "bf16", "fp16"]
PAPER_LR = {1: 1e-4, 2: 1e-5}


@dataclass(frozen=True)
class TrainConfig:
    """One training stage. `steps` (if set) overrides `epochs` as the length of the run."""

    stage: int = 1
    lr: float | None = None  # None: the paper's lr for this stage (PAPER_LR)
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.1
    decay_pretrained_init: bool = False  # True: L_j (identity) and P (MusicGen's projection) decay too
    warmup_steps: int = 6000
    batch_size: int = 16  # global micro-batch: split evenly across DDP ranks
    accumulate: int = 1  # micro-batches per optimiser update (gradient accumulation)
    epochs: int = 120
    steps: int | None = None
    grad_clip: float = 1.0
    cfg_dropout: float = 0.3
    ema_decay: float | None = None
    precision: Precision = "fp32"
    frozen_dtype: Precision = "fp32"  # the frozen LM's weights: fp32, or bf16/fp16 on a GPU
    window_s: int = 30  # seconds of each training window (the model generates at most 30 s)
    seed: int = 0
    max_nonfinite: int = 20  # consecutive non-finite losses before the run stops

    def __post_init__(self) -> None:
        if self.stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {self.stage}")
        if self.lr is None:
            object.__setattr__(self, "lr", PAPER_LR[self.stage])
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two values in [0, 1), got {self.betas}")
        if self.eps <= 0 or self.weight_decay < 0:
            raise ValueError(f"eps must be > 0 and weight_decay >= 0, got {self.eps}, {self.weight_decay}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.accumulate < 1:
            raise ValueError(f"accumulate must be >= 1, got {self.accumulate}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1 or None (use epochs), got {self.steps}")
        if self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be > 0, got {self.grad_clip}")
        if not 0.0 <= self.cfg_dropout <= 1.0:
            raise ValueError(f"cfg_dropout must be in [0, 1], got {self.cfg_dropout}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1) or None, got {self.ema_decay}")
        for name in ("precision", "frozen_dtype"):
            if getattr(self, name) not in ("fp32", "bf16", "fp16"):
                raise ValueError(f"{name} must be fp32, bf16 or fp16, got {getattr(self, name)!r}")
        if not 1 <= self.window_s <= 30:
            raise ValueError(f"window_s must be in [1, 30] (MusicGen generates at most 30 s), got {self.window_s}")
        if self.max_nonfinite < 1:
            raise ValueError(f"max_nonfinite must be >= 1, got {self.max_nonfinite}")

    @property
    def update_batch(self) -> int:
        """Rows per optimiser update: `batch_size` x `accumulate` (over all DDP ranks)."""
        return self.batch_size * self.accumulate

    def differences(self, other: TrainConfig, ignore: tuple[str, ...] = ()) -> list[str]:
        """'field: mine -> other's' for every field that differs (those in `ignore` apart)."""
        a, b = asdict(self), asdict(other)
        return [f"{k}: {a[k]!r} -> {b[k]!r}" for k in sorted(a) if k not in ignore and a[k] != b.get(k)]

    @classmethod
    def paper(cls, stage: int) -> TrainConfig:
        return cls(stage=stage)

    @classmethod
    def debug(cls, stage: int = 1, **changes: object) -> TrainConfig:
        """Tiny runs for tests: 2 s windows, batch 2, 4 warm-up steps, a few dozen steps."""
        base = dict(stage=stage, lr=1e-3 if stage == 1 else 1e-4, warmup_steps=4, batch_size=2, epochs=1,
                    steps=24, window_s=2, cfg_dropout=0.3, max_nonfinite=3)
        base.update(changes)
        return cls(**base)  # type: ignore[arg-type]

    def warmup_warning(self, total_steps: int) -> str | None:
        """A note when the warm-up outlasts a run of `total_steps` updates (the lr never reaches its peak), else None."""
        if self.warmup_steps <= total_steps:
            return None
        reached = (total_steps - 1) / self.warmup_steps  # the last update's factor (update 0 runs at lr 0)
        return (f"the warm-up ({self.warmup_steps} updates) is longer than the run ({total_steps} steps): the lr "
                f"ends at {reached:.2g} x its peak {self.lr:g}; set --warmup to at most {total_steps} "
                f"(e.g. --warmup {total_steps // 10})")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        data = json.loads(text)
        data["betas"] = tuple(data["betas"])
        return cls(**data)  # a checkpoint from before a field existed gets its default
