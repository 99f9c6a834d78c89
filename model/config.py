"""Configuration of the VidMusician model: frozen dataclasses, presets and the Table 2 ablation switches.

The trainable-parameter budget of the paper (24.79 M at MusicGen-medium, §5.1) pins the shapes below:

    rhythm   O: Linear(1, 1536)                               3,072
             L_1..L_9: Linear(1536, 1536), 9 of 12 blocks     21,247,488
    semantic projector: Linear(768, 1536) (MusicGen's T5 output_proj)   1,181,184
             EmbeddingManager: 3 x Linear(768, 768), CLIP D = 768 (ViT-L/14)   1,771,776
             LoRA rank 16 on T5-base encoder q and v, 12 layers   589,824
    total                                                      24,793,344  (= 24.79 M)

`tests/model/test_param_count.py` builds this on the meta device and checks it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

RhythmStyle = Literal["vidmusician", "musicongen"]
RhythmSource = Literal["all_tokens", "global"]

BACKBONE_NAMES = {
    "small": "facebook/musicgen-small",
    "medium": "facebook/musicgen-medium",
    "large": "facebook/musicgen-large",
}


@dataclass(frozen=True)
class SemanticConfig:
    """Eq. 2: F_S = P(T(E(V_S))). E: EmbeddingManager, T: T5 encoder with LoRA, P: projector."""

    clip_dim: int = 768  # D of the CLIP global features (ViT-L/14: 768, ViT-B/32: 512, ViT-H/14: 1024)
    t5: str = "t5-base"  # hub name, local directory, or "debug" (tiny random T5 for tests)
    from_scratch: bool = False  # ablation: random T5 of the same shape, trained in full (no LoRA)
    em_layers: int = 3  # Linear layers of the EmbeddingManager (GELU between them)
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ("q", "v")  # T5 attention projections that get LoRA

    def __post_init__(self) -> None:
        if self.clip_dim <= 0:
            raise ValueError(f"clip_dim must be positive, got {self.clip_dim}")
        if self.em_layers < 1:
            raise ValueError(f"em_layers must be >= 1, got {self.em_layers}")
        if self.lora_rank < 1:
            raise ValueError(f"lora_rank must be >= 1, got {self.lora_rank}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        unknown = set(self.lora_targets) - {"q", "k", "v", "o"}
        if not self.lora_targets or unknown:
            raise ValueError(f"lora_targets must be a non-empty subset of q,k,v,o; got {self.lora_targets}")
        if not self.t5:
            raise ValueError("t5 must name a T5 model, a local directory, or 'debug'")


@dataclass(frozen=True)
class RhythmConfig:
    """Eq. 5-6: F_Rj = L_j(...L_1(O(d))), added to the hidden state entering block j."""

    enabled: bool = True
    style: RhythmStyle = "vidmusician"  # "musicongen": shared O, first self-attention of each block trained
    init_technique: bool = True  # zero O + identity L_j; False: PyTorch's default Linear init (ablation IT)
    # provenance of d (ablation AT: "global" = CLS-token similarity); train on the matching signal with
    # dvmset.dataset.FeatureWindows(..., rhythm_source=config.rhythm.source)
    source: RhythmSource = "all_tokens"
    layers_per_block: int = 4
    block_fraction: float = 0.75  # the first 3/4 of the blocks get the rhythm signal

    def __post_init__(self) -> None:
        if self.style not in ("vidmusician", "musicongen"):
            raise ValueError(f"rhythm style must be 'vidmusician' or 'musicongen', got {self.style!r}")
        if self.source not in ("all_tokens", "global"):
            raise ValueError(f"rhythm source must be 'all_tokens' or 'global', got {self.source!r}")
        if self.layers_per_block < 1:
            raise ValueError(f"layers_per_block must be >= 1, got {self.layers_per_block}")
        if not 0.0 < self.block_fraction <= 1.0:
            raise ValueError(f"block_fraction must be in (0, 1], got {self.block_fraction}")

    def conditioned_blocks(self, num_layers: int) -> int:
        """How many leading blocks get F_Rj (MusicGen-medium: 48 layers -> 12 blocks -> 9)."""
        if num_layers % self.layers_per_block:
            raise ValueError(
                f"backbone has {num_layers} layers, not a multiple of layers_per_block={self.layers_per_block}"
            )
        return max(1, int(num_layers // self.layers_per_block * self.block_fraction))


@dataclass(frozen=True)
class VidMusicianConfig:
    """Everything needed to rebuild the trainable part of a model; saved in every checkpoint."""

    backbone: str = BACKBONE_NAMES["medium"]  # hub name, local dir, or "debug"
    semantic: SemanticConfig = field(default_factory=SemanticConfig)
    rhythm: RhythmConfig = field(default_factory=RhythmConfig)
    max_duration_s: float = 30.0
    global_fps: int = 1  # CLIP global features per second (Eq. 1)
    # Table 2's "backbone" reference: every condition is the null one (the frozen MusicGen, unconditioned)
    unconditional: bool = False
    clip_model: str | None = None  # the CLIP the training features came from (train records it; generate's default)

    def __post_init__(self) -> None:
        if self.unconditional and self.rhythm.enabled:
            raise ValueError("an unconditional model (the frozen backbone alone) has no rhythm module: "
                             "set rhythm.enabled=False")
        if not self.backbone:
            raise ValueError("backbone must be a MusicGen name, a local directory, or 'debug'")
        if "melody" in self.backbone.lower():
            raise ValueError(
                f"backbone {self.backbone!r}: MusicGen-melody conditions by prepending, not cross-attention; "
                "use facebook/musicgen-small|medium|large"
            )
        if not 0 < self.max_duration_s <= 30.0:
            raise ValueError(f"max_duration_s must be in (0, 30], got {self.max_duration_s}")

    @classmethod
    def debug(cls, clip_dim: int = 16, **rhythm: object) -> VidMusicianConfig:
        """Tiny random backbone + tiny random T5: every code path on CPU in milliseconds."""
        return cls(
            backbone="debug",
            semantic=SemanticConfig(clip_dim=clip_dim, t5="debug", em_layers=2, lora_rank=4, lora_alpha=8),
            rhythm=RhythmConfig(**rhythm),  # type: ignore[arg-type]
        )

    @classmethod
    def small(cls, clip_dim: int = 768) -> VidMusicianConfig:
        return cls(backbone=BACKBONE_NAMES["small"], semantic=SemanticConfig(clip_dim=clip_dim))

    @classmethod
    def medium(cls, clip_dim: int = 768) -> VidMusicianConfig:
        return cls(backbone=BACKBONE_NAMES["medium"], semantic=SemanticConfig(clip_dim=clip_dim))

    @classmethod
    def large(cls, clip_dim: int = 768) -> VidMusicianConfig:
        return cls(backbone=BACKBONE_NAMES["large"], semantic=SemanticConfig(clip_dim=clip_dim))

    def with_rhythm(self, **changes: object) -> VidMusicianConfig:
        return replace(self, rhythm=replace(self.rhythm, **changes))  # type: ignore[arg-type]

    def with_semantic(self, **changes: object) -> VidMusicianConfig:
        return replace(self, semantic=replace(self.semantic, **changes))  # type: ignore[arg-type]

    def to_dict(self) -> dict:
        from dataclasses import asdict

        out = asdict(self)
        out["semantic"]["lora_targets"] = list(self.semantic.lora_targets)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> VidMusicianConfig:
        sem = dict(data.get("semantic", {}))
        if "lora_targets" in sem:
            sem["lora_targets"] = tuple(sem["lora_targets"])
        rest = {k: v for k, v in data.items() if k not in ("semantic", "rhythm")}
        return cls(semantic=SemanticConfig(**sem), rhythm=RhythmConfig(**data.get("rhythm", {})), **rest)
