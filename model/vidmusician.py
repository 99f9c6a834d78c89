"""VidMusician: a frozen MusicGen conditioned on CLIP global features (semantic) and a 50 Hz rhythm signal.

Inputs per 30 s window: `global_feats` [B, 30, D] (CLIP CLS at 1 fps), `rhythm` [B, 1500] (Algorithm 1,
50 Hz, frame-aligned with `codes` [B, 4, 1500]). Only the semantic module (EmbeddingManager, LoRA, projector)
and the rhythm module (O, L_j; or MusiConGen's trained self-attentions) require gradients.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from audiocraft.models.lm import LMOutput
from audiocraft.modules.conditioners import ConditionType
from torch import nn

from dvmset.dataset import CODES, GLOBAL, RHYTHM
from model.backbone import Backbone, load_backbone
from model.config import VidMusicianConfig
from model.generation import SamplingParams, StepCallback, guided_logits, stream_generate
from model.rhythm import RhythmInjector, RhythmModule, align_to_pattern, musicongen_trainable
from model.semantic import SemanticConditioner, build_t5_encoder

logger = logging.getLogger(__name__)


class VidMusician(nn.Module):
    """Frozen MusicGen LM + codec, the semantic conditioner (cross-attention) and the rhythm module
    (in-attention hooks). Build with `from_config`; `forward`/`loss` teacher-force, `generate` samples."""

    def __init__(self, config: VidMusicianConfig, backbone: Backbone, t5: nn.Module) -> None:
        super().__init__()
        self.config = config
        if getattr(backbone.lm, "_vidmusician_owned", False):
            raise ValueError("this backbone already carries a VidMusician's rhythm hooks; load a fresh backbone")
        backbone.lm._vidmusician_owned = True
        self.backbone_name = backbone.name
        self.lm = backbone.lm
        self.codec = backbone.codec
        self.frame_rate = backbone.frame_rate  # tokens per second (MusicGen: 50)
        self.lm.requires_grad_(False)
        if self.codec is not None:
            self.codec.requires_grad_(False)
        with torch.device(backbone.text_proj["weight"].device):
            self.semantic = SemanticConditioner(config.semantic, t5, backbone.text_proj)
            self.rhythm: RhythmModule | None = None
            self._injector: RhythmInjector | None = None
            self._attn_trained: list[nn.Module] = []
            if config.rhythm.enabled:
                n_blocks = config.rhythm.conditioned_blocks(backbone.num_layers)
                self.rhythm = RhythmModule(config.rhythm, backbone.dim, n_blocks)
                self._injector = RhythmInjector(self.lm.transformer, self.rhythm, config.rhythm)
                if config.rhythm.style == "musicongen":
                    self._attn_trained = musicongen_trainable(self.lm.transformer, config.rhythm)
        self.set_stage(2)

    @classmethod
    def from_config(cls, config: VidMusicianConfig, device: str = "cpu", load_t5_weights: bool = True,
                    seed: int = 0) -> VidMusician:
        """Load the backbone (hub name / local dir / debug) and T5 (hub name / local dir / debug)."""
        backbone = load_backbone(config.backbone, device=device)
        if backbone.t5_name and config.semantic.t5 != backbone.t5_name and config.semantic.t5 in (
                "t5-small", "t5-base", "t5-large"):
            raise ValueError(f"{config.backbone} was trained with {backbone.t5_name}, config asks for "
                             f"{config.semantic.t5}")
        load = load_t5_weights and not config.semantic.from_scratch
        t5 = build_t5_encoder(config.semantic.t5, load_weights=load, seed=seed).to(device)
        with torch.random.fork_rng(devices=[]):  # seeded init of the new modules; global RNG untouched
            torch.manual_seed(seed)
            return cls(config, backbone, t5).to(device)

    # --- trainable set -------------------------------------------------------------------------------
    def _trainable_modules(self, stage: int) -> list[nn.Module]:
        mods = list(self.semantic.trainable_modules())
        if stage == 2 and self.rhythm is not None:
            mods += [self.rhythm, *self._attn_trained]
        return mods

    def set_stage(self, stage: int) -> None:
        """Stage 1 trains the semantic module only; stage 2 adds the rhythm module (paper §3.3)."""
        if stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {stage}")
        self.requires_grad_(False)
        for mod in self._trainable_modules(stage):
            mod.requires_grad_(True)
        self.stage = stage

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Every parameter that trains in some stage, by name: exactly what a checkpoint holds."""
        ids = {id(p) for mod in self._trainable_modules(2) for p in mod.parameters()}
        return {n: p for n, p in self.named_parameters() if id(p) in ids}

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.trainable_state().values())

    def train(self, mode: bool = True) -> VidMusician:
        """Frozen parts (LM, codec, T5 base) stay in eval mode whatever the wrapper's mode."""
        super().train(mode)
        self.lm.eval()
        if self.codec is not None:
            self.codec.eval()
        self.semantic.train(mode)
        return self

    # --- conditioning -------------------------------------------------------------------------------
    def condition_tensors(self, global_feats: torch.Tensor, keep: torch.Tensor | None = None
                          ) -> dict[str, ConditionType]:
        """{"description": (F_S [B, N, dim], mask [B, N])}; rows with keep=False are the null condition
        (every row for an unconditional model: Table 2's frozen-backbone reference)."""
        if self.config.unconditional:
            keep = torch.zeros(global_feats.shape[0], dtype=torch.bool, device=global_feats.device)
        return {"description": self.semantic(self.semantic.tokenize(global_feats, keep))}

    def _rhythm_signal(self, rhythm: torch.Tensor | None, batch: int, n_frames: int) -> torch.Tensor:
        """rhythm [B, >= n_frames] at 50 Hz -> [B, S] along the interleaved sequence (zeros if None)."""
        pattern = self.lm.pattern_provider.get_pattern(n_frames)
        device = next(self.lm.parameters()).device
        if rhythm is None:
            return torch.zeros(batch, len(pattern.layout), device=device)
        if rhythm.shape[0] != batch:
            raise ValueError(f"rhythm batch {rhythm.shape[0]} != {batch}")
        return align_to_pattern(rhythm.to(device=device, dtype=torch.float32)[:, :n_frames], pattern)

    def _feeding(self, rhythm: torch.Tensor | None, batch: int, n_frames: int, keep: torch.Tensor | None):
        if self._injector is None:
            return contextlib.nullcontext()
        active = None if keep is None else keep.to(next(self.lm.parameters()).device)
        return self._injector.feeding(self._rhythm_signal(rhythm, batch, n_frames), active)

    # --- teacher forcing ------------------------------------------------------------------------------
    def forward(self, global_feats: torch.Tensor, rhythm: torch.Tensor | None, codes: torch.Tensor,
                keep: torch.Tensor | None = None) -> LMOutput:
        """Teacher forcing: logits [B, K, T, card] aligned with codes [B, K, T] and the valid mask [B, K, T].
        keep [B] bool: False drops both conditions for that sample (classifier-free guidance dropout)."""
        B, K, T = codes.shape
        if rhythm is not None and rhythm.shape[-1] < T:
            raise ValueError(f"rhythm has {rhythm.shape[-1]} frames, codes have {T}")
        conds = self.condition_tensors(global_feats, keep)
        with self._feeding(rhythm, B, T, keep):
            return self.lm.compute_predictions(codes, [], condition_tensors=conds)

    def sequence_logits(self, global_feats: torch.Tensor, rhythm: torch.Tensor | None, sequence: torch.Tensor,
                        n_frames: int) -> torch.Tensor:
        """Logits on an interleaved sequence [B, K, S'] (a prefix of the pattern for n_frames): [B, K, S', card]."""
        conds = self.condition_tensors(global_feats)
        with self._feeding(rhythm, sequence.shape[0], n_frames, None):
            return self.lm(sequence, [], condition_tensors=conds)

    def loss(self, global_feats: torch.Tensor, rhythm: torch.Tensor | None, codes: torch.Tensor,
             keep: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy over valid (pattern-masked) positions, averaged over codebooks as MusicGen trains.
        Returns (loss, per-codebook CE [K])."""
        out = self(global_feats, rhythm, codes, keep)
        return codebook_cross_entropy(out.logits, codes, out.mask)

    def batch_loss(self, batch: Mapping[str, torch.Tensor], keep: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """`loss` on a collated `dvmset.dataset.FeatureWindows` batch ({"global" [B, W, D], "rhythm" [B, W*50],
        "codes" [B, K, W*50]}, any device). In stage 1 the rhythm module stays out of the graph, so an
        untrained (ablation: randomly initialised) rhythm module cannot disturb the semantic stage."""
        out, codes = self.batch_predictions(batch, keep)
        return codebook_cross_entropy(out.logits, codes, out.mask)

    def batch_predictions(self, batch: Mapping[str, torch.Tensor], keep: torch.Tensor | None = None
                          ) -> tuple[LMOutput, torch.Tensor]:
        """(teacher-forced LMOutput, codes [B, K, T] on the model's device) of a collated batch, as
        `batch_loss` computes them: in stage 1 without the rhythm module."""
        device = next(self.lm.parameters()).device
        codes = batch[CODES].to(device, non_blocking=True)
        if self.stage == 1 or self._injector is None:
            conds = self.condition_tensors(batch[GLOBAL], keep)
            return self.lm.compute_predictions(codes, [], condition_tensors=conds), codes
        return self(batch[GLOBAL], batch[RHYTHM], codes, keep), codes

    def guided_batch_loss(self, batch: Mapping[str, torch.Tensor], cfg_coef: float
                          ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """((loss, per-codebook CE [K]) with both conditions on, as `batch_loss`; (loss, per-codebook CE) under
        the logits `generate` samples from, null + cfg_coef * (cond - null), null being the same batch with
        keep=False: no description, no rhythm). cfg_coef 1: the guided loss is the conditional one (no second
        forward). With a frozen backbone the null is the backbone's own, so a conditional far from it can have
        a low loss while its guided distribution is far from the music (docs/world.md, "Run C examined")."""
        cond, codes = self.batch_predictions(batch)
        plain = codebook_cross_entropy(cond.logits, codes, cond.mask)
        if cfg_coef == 1.0:
            return plain, plain
        drop = torch.zeros(codes.shape[0], dtype=torch.bool, device=codes.device)
        null, _ = self.batch_predictions(batch, drop)
        guided = guided_logits(cond.logits.float(), null.logits.float(), cfg_coef)
        return plain, codebook_cross_entropy(guided, codes, cond.mask)

    # --- generation -----------------------------------------------------------------------------------
    @torch.no_grad()
    def generate_codes(self, global_feats: torch.Tensor, rhythm: torch.Tensor | None, duration_s: float = 30.0,
                       params: SamplingParams | None = None, seed: int | None = None,
                       on_step: StepCallback | None = None, prompt: torch.Tensor | None = None) -> torch.Tensor:
        """codes [B, K, duration_s * 50]; the unconditional CFG half gets null semantics and zero rhythm.
        prompt [B, K, P]: given first frames (long-form windows); `global_feats`/`rhythm` cover them too."""
        if not 0 < duration_s <= self.config.max_duration_s:
            raise ValueError(f"duration_s must be in (0, {self.config.max_duration_s}], got {duration_s}")
        if self.training:
            raise RuntimeError("call .eval() before generating")
        params = params or SamplingParams()
        B = global_feats.shape[0]
        n_frames = int(math.ceil(round(duration_s * self.frame_rate, 6)))  # 0.14 s -> 7 frames, not 8
        device = next(self.lm.parameters()).device
        use_cfg = params.cfg_coef != 1.0
        feats, sig_in, keep = global_feats, rhythm, None
        if use_cfg:
            feats = torch.cat([global_feats, global_feats], dim=0)
            keep = torch.cat([torch.ones(B, dtype=torch.bool), torch.zeros(B, dtype=torch.bool)]).to(device)
            sig_in = None if rhythm is None else torch.cat([rhythm, rhythm], dim=0)
        conds = self.condition_tensors(feats, keep)
        gen = None
        if seed is not None:
            gen = torch.Generator(device=device).manual_seed(seed)
        with self._feeding(sig_in, feats.shape[0], n_frames, keep):
            return stream_generate(self.lm, conds, B, n_frames, params, gen, on_step, prompt)

    @torch.no_grad()
    def generate(self, global_feats: torch.Tensor, rhythm: torch.Tensor | None, duration_s: float = 30.0,
                 cfg_coef: float = 3.0, top_k: int = 250, top_p: float = 0.0, temperature: float = 1.0,
                 seed: int | None = None) -> torch.Tensor:
        """Audio [B, 1, N] at the codec's sample rate (32 kHz)."""
        if self.codec is None:
            raise RuntimeError("this model was built without a codec (parameter counting only)")
        params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, cfg_coef=cfg_coef)
        codes = self.generate_codes(global_feats, rhythm, duration_s, params, seed)
        audio = self.codec.decode(codes, None)  # [B, 1, N]
        return audio[..., : int(round(duration_s * self.codec.sample_rate))]


def codebook_cross_entropy(logits: torch.Tensor, codes: torch.Tensor, mask: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [B, K, T, card], codes [B, K, T], mask [B, K, T] -> (mean CE over K, CE per codebook [K])."""
    K = codes.shape[1]
    per_k = []
    for k in range(K):
        m = mask[:, k].reshape(-1)
        per_k.append(F.cross_entropy(logits[:, k].reshape(-1, logits.shape[-1])[m], codes[:, k].reshape(-1)[m]))
    ce = torch.stack(per_k)
    return ce.mean(), ce
