"""Semantic conditioning module (Eq. 2): F_S = P(T(E(V_S))).

E: EmbeddingManager (CLIP D -> T5 d_model), T: T5 encoder fed `inputs_embeds` with LoRA on its attention
(peft), P: projector initialised from MusicGen's T5 `output_proj`. It is an audiocraft `BaseConditioner`
(tokenize -> forward -> (embeds, mask)), but it is *not* installed in the LM's ConditioningProvider:
that provider routes only text/wav/joint-embed attributes and would hide tensors behind strings. The
wrapper passes our `(embeds, mask)` to the LM as `condition_tensors["description"]`, exactly where
MusicGen's text conditioner output goes (the fuser's cross-attention input). Unlike audiocraft's
`T5Conditioner(finetune=False)`, T5 is a registered submodule and stays inside autograd.
"""

from __future__ import annotations

import logging

import torch
from audiocraft.modules.conditioners import BaseConditioner, ConditionType
from peft import LoraConfig, inject_adapter_in_model
from torch import nn
from transformers import T5Config, T5EncoderModel

from model.config import SemanticConfig

logger = logging.getLogger(__name__)

# Shapes of the public T5 checkpoints, so "scratch" and parameter counts need no download.
T5_ARCHS: dict[str, dict[str, int]] = {
    "debug": dict(d_model=32, num_layers=2, num_heads=2, d_ff=64, d_kv=16, vocab_size=32),
    "t5-small": dict(d_model=512, num_layers=6, num_heads=8, d_ff=2048, d_kv=64, vocab_size=32128),
    "t5-base": dict(d_model=768, num_layers=12, num_heads=12, d_ff=3072, d_kv=64, vocab_size=32128),
    "t5-large": dict(d_model=1024, num_layers=24, num_heads=16, d_ff=4096, d_kv=64, vocab_size=32128),
}


def t5_config(name: str) -> T5Config:
    """The architecture of a T5: from the table above, or the config.json of a local/hub model."""
    if name in T5_ARCHS:
        return T5Config(**T5_ARCHS[name], dropout_rate=0.1, feed_forward_proj="relu")
    return T5Config.from_pretrained(name)


def build_t5_encoder(name: str, load_weights: bool, seed: int = 0) -> T5EncoderModel:
    """T5 encoder by hub name or local path (`load_weights`), else random weights of the same shape.
    `debug` is always random (tiny)."""
    if load_weights and name != "debug":
        logger.info("loading T5 encoder weights from %s", name)
        return T5EncoderModel.from_pretrained(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return T5EncoderModel(t5_config(name))


class EmbeddingManager(nn.Module):
    """E: maps CLIP global features into T5's input embedding space (a few Linear layers, GELU between)."""

    def __init__(self, clip_dim: int, t5_dim: int, layers: int) -> None:
        super().__init__()
        dims = [clip_dim] + [t5_dim] * layers
        mods: list[nn.Module] = []
        for i in range(layers):
            mods.append(nn.Linear(dims[i], dims[i + 1]))
            if i < layers - 1:
                mods.append(nn.GELU())
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # [B, N, D] -> [B, N, t5_dim]


class SemanticConditioner(BaseConditioner):
    """CLIP global features [B, N, D] -> cross-attention condition ([B, N, dim], mask [B, N])."""

    def __init__(self, cfg: SemanticConfig, t5: T5EncoderModel, text_proj: dict[str, torch.Tensor]) -> None:
        t5_dim = int(t5.config.d_model)
        out_dim, proj_in = text_proj["weight"].shape
        if proj_in != t5_dim:
            raise ValueError(
                f"T5 {cfg.t5!r} has d_model {t5_dim} but the backbone's T5 projection expects {proj_in}: "
                "use the T5 the MusicGen checkpoint was trained with (t5-base for facebook/musicgen-*)"
            )
        super().__init__(dim=t5_dim, output_dim=int(out_dim))
        self.cfg = cfg
        self.embedding_manager = EmbeddingManager(cfg.clip_dim, t5_dim, cfg.em_layers)
        with torch.no_grad():  # P starts as MusicGen's own T5 output projection (trainable)
            self.output_proj.weight.copy_(text_proj["weight"])
            self.output_proj.bias.copy_(text_proj["bias"])
        t5.requires_grad_(False)
        if not cfg.from_scratch:
            lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                              target_modules=list(cfg.lora_targets), bias="none")
            t5 = inject_adapter_in_model(lora, t5)  # lora_B is zero: T5's output is unchanged at init
        self.t5 = t5
        self.t5.eval()

    def trainable_modules(self) -> list[nn.Module]:
        mods: list[nn.Module] = [self.embedding_manager, self.output_proj]
        if self.cfg.from_scratch:
            mods.append(self.t5)
        else:
            mods += [m for n, m in self.t5.named_modules() if n.endswith(("lora_A", "lora_B"))]
        return mods

    def train(self, mode: bool = True) -> SemanticConditioner:
        """The T5 encoder stays in eval mode (no dropout) so training and generation see the same T5."""
        super().train(mode)
        if not self.cfg.from_scratch:
            self.t5.eval()
        return self

    def tokenize(self, global_feats: torch.Tensor, keep: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """global_feats [B, N, D]; keep [B] bool (False: the null condition of classifier-free guidance)."""
        if global_feats.dim() != 3 or global_feats.shape[-1] != self.cfg.clip_dim:
            raise ValueError(f"global features must be [B, N, {self.cfg.clip_dim}], got {tuple(global_feats.shape)}")
        B, N, _ = global_feats.shape
        device = self.output_proj.weight.device
        mask = torch.ones(B, N, dtype=torch.long, device=device)
        if keep is not None:
            if keep.shape != (B,):
                raise ValueError(f"keep must be [B]={B} booleans, got {tuple(keep.shape)}")
            mask = mask * keep.to(device=device, dtype=torch.long)[:, None]
        feats = global_feats.to(device=device, dtype=self.output_proj.weight.dtype)
        return {"inputs_embeds": feats, "attention_mask": mask}

    def forward(self, inputs: dict[str, torch.Tensor]) -> ConditionType:
        mask = inputs["attention_mask"]  # [B, N]
        embeds = self.embedding_manager(inputs["inputs_embeds"])  # [B, N, t5_dim]
        # T5 attends over all N frames; null rows are zeroed below, as audiocraft does for empty text.
        hidden = self.t5(inputs_embeds=embeds, attention_mask=torch.ones_like(mask)).last_hidden_state
        out = self.output_proj(hidden)  # [B, N, dim]
        out = out * mask.unsqueeze(-1).to(out.dtype)
        return out, mask
