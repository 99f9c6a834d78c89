"""The CLAP audio branch (laion_clap HTSAT + its projection) for the CLAP score.

Only the audio tower is built: laion_clap's ``CLAP_Module`` also builds the RoBERTa text branch,
which fetches roberta-base, and newer transformers refuse the checkpoint's
``text_branch.embeddings.position_ids`` key (LAION-AI/CLAP#127). Loading keeps the checkpoint's
``audio_branch.*`` and ``audio_projection.*`` keys only, strictly; the text keys are dropped.
The default is HTSAT-base at 48 kHz, the architecture of the music checkpoint
``music_audioset_epoch_15_esc_90.14.pt``. Each clip is cut into **fixed** 10 s windows from the
start (not laion_clap's random crop), each window quantised to int16 as laion_clap does, embedded
and L2-normalised; the clip's embedding is the mean of its window embeddings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from model.metrics.audio import fixed_windows
from model.metrics.checkpoints import (
    AudioEmbedder,
    import_skipping_package_init,
    load_into,
    load_state_dict,
    strip_prefix,
)

_KEEP = ("audio_branch.", "audio_projection.")


@dataclass(frozen=True)
class ClapAudioConfig:
    """HTSAT-base as in laion_clap's ``model_configs/HTSAT-base.json`` (joint space 512-d)."""

    htsat_dim: int = 128
    depths: tuple[int, ...] = (2, 2, 12, 2)
    num_heads: tuple[int, ...] = (4, 8, 16, 32)
    joint_dim: int = 512
    sample_rate: int = 48000
    window_s: float = 10.0
    mel_bins: int = 64
    stft_window: int = 1024
    hop_size: int = 480
    fmin: float = 50.0
    fmax: float = 14000.0
    classes: int = 527

    def __post_init__(self) -> None:
        if len(self.depths) != len(self.num_heads) or min(self.depths) < 1:
            raise ValueError(f"depths and num_heads must pair up: {self.depths}, {self.num_heads}")
        if self.window_s <= 0 or self.joint_dim < 1 or self.htsat_dim < 1:
            raise ValueError(f"window_s, joint_dim and htsat_dim must be positive: {self}")

    @classmethod
    def tiny(cls) -> ClapAudioConfig:
        return cls(htsat_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), joint_dim=16)

    @classmethod
    def from_state_dict(cls, state: dict) -> ClapAudioConfig:
        """HTSAT widths, depths and heads read from a checkpoint's audio tensors (keys without ``module.``)."""
        try:
            dim = int(state["audio_branch.patch_embed.proj.weight"].shape[0])
            joint = int(state["audio_projection.0.weight"].shape[0])
        except KeyError as err:
            raise ValueError(f"not a laion_clap HTSAT checkpoint: no {err.args[0]} tensor") from err
        depths, heads = [], []
        layer = 0
        while f"audio_branch.layers.{layer}.blocks.0.attn.relative_position_bias_table" in state:
            blocks = 0
            while f"audio_branch.layers.{layer}.blocks.{blocks}.attn.relative_position_bias_table" in state:
                blocks += 1
            depths.append(blocks)
            heads.append(int(state[f"audio_branch.layers.{layer}.blocks.0.attn.relative_position_bias_table"].shape[1]))
            layer += 1
        if not depths:
            raise ValueError("not a laion_clap HTSAT checkpoint: no audio_branch.layers.* blocks")
        return cls(htsat_dim=dim, depths=tuple(depths), num_heads=tuple(heads), joint_dim=joint)

    @property
    def branch_dim(self) -> int:
        return self.htsat_dim * 2 ** (len(self.depths) - 1)

    @property
    def window_samples(self) -> int:
        return round(self.window_s * self.sample_rate)


def build_audio_tower(config: ClapAudioConfig):
    """laion_clap's HTSAT_Swin_Transformer + the CLAP audio projection MLP, as one module."""
    from torch import nn

    htsat = import_skipping_package_init("laion_clap", "clap_module.htsat")
    model_mod = import_skipping_package_init("laion_clap", "clap_module.model")
    audio_cfg = model_mod.CLAPAudioCfp(
        model_type="HTSAT", model_name="base", sample_rate=config.sample_rate, audio_length=1024,
        window_size=config.stft_window, hop_size=config.hop_size, fmin=config.fmin, fmax=config.fmax,
        class_num=config.classes, mel_bins=config.mel_bins, clip_samples=config.window_samples)

    class ClapAudioTower(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.audio_branch = htsat.HTSAT_Swin_Transformer(
                spec_size=256, patch_size=4, patch_stride=(4, 4), num_classes=config.classes,
                embed_dim=config.htsat_dim, depths=list(config.depths), num_heads=list(config.num_heads),
                window_size=8, config=audio_cfg, enable_fusion=False, fusion_type="None")
            self.audio_projection = nn.Sequential(
                nn.Linear(config.branch_dim, config.joint_dim), nn.ReLU(), nn.Linear(config.joint_dim, config.joint_dim))

        def forward(self, windows):  # windows [W, samples]
            out = self.audio_branch({"waveform": windows}, mixup_lambda=None, device=windows.device)
            return self.audio_projection(out["embedding"])  # [W, joint]

    return ClapAudioTower()


class ClapAudioEmbedder(AudioEmbedder):

    @classmethod
    def load(cls, checkpoint: Path, config: ClapAudioConfig | None = None, device: str = "cpu") -> ClapAudioEmbedder:
        """Load the audio keys of a laion_clap checkpoint strictly; without ``config``, shapes decide."""
        state = strip_prefix(load_state_dict(checkpoint), "module.")
        audio = {k: v for k, v in state.items() if k.startswith(_KEEP)}
        if not audio:
            raise ValueError(f"{checkpoint}: no audio_branch.* keys: not a laion_clap checkpoint")
        config = config or ClapAudioConfig.from_state_dict(audio)
        module = build_audio_tower(config)
        load_into(module, audio, checkpoint, "laion_clap audio branch")
        return cls(module, config, checkpoint, device)

    def embed(self, mono: np.ndarray) -> np.ndarray:
        """Mono audio [N] at ``sample_rate`` → the mean of its unit window embeddings [joint_dim]."""
        import torch
        import torch.nn.functional as F

        windows = fixed_windows(mono, self.config.window_samples)  # [W, samples]
        # laion_clap's int16 round trip: clip to ±1, scale, truncate toward zero, scale back
        quantised = (np.clip(windows, -1.0, 1.0) * 32767.0).astype(np.int16) / 32767.0
        x = torch.from_numpy(quantised.astype(np.float32)).to(self.device)
        with torch.inference_mode():
            emb = F.normalize(self.module(x), dim=-1)  # [W, joint]
        return emb.mean(dim=0).double().cpu().numpy()

    def describe(self) -> dict:
        return {"class": "laion_clap HTSAT_Swin_Transformer + audio_projection (audio branch only)",
                "checkpoint": str(self.checkpoint), "sha256": self.sha256,
                "windows": f"fixed {self.config.window_s:g} s from the start, tail dropped, short clips repeat-padded",
                **asdict(self.config)}
