"""Rhythm conditioning module (Eq. 5-6) and its in-attention injection into the frozen LM.

d [B, T] (50 Hz, one value per codec frame) -> O (Linear 1->dim, zero-init) -> L_1..L_M (Linear dim->dim,
identity weight, zero bias); F_Rj = L_j(...L_1(O(d))) is added to the hidden state entering block j
(`layers_per_block` layers each) for the first M = 3/4 of the blocks: h_{j+1} = B(h_j + F_Rj).

Alignment with the codebook delay pattern: the LM's input position s predicts sequence step s+1; we give
position s the value of the latest frame that step s+1 predicts (for MusicGen's delay pattern: frame s,
whose coarsest codebook is predicted there; the tail steps past T repeat frame T-1). Positions that
predict nothing get 0. In streaming generation the transformer's own position offset selects the slice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from audiocraft.modules.codebooks_patterns import Pattern
from audiocraft.modules.transformer import StreamingTransformer
from torch import nn

from model.config import RhythmConfig


def frame_index_per_position(pattern: Pattern) -> torch.Tensor:
    """For each LM input position s of `pattern`, the codec frame whose rhythm it receives; -1 for none."""
    S = len(pattern.layout)
    idx = torch.full((S,), -1, dtype=torch.long)
    for s in range(S - 1):
        frames = [c.t for c in pattern.layout[s + 1] if c.t < pattern.timesteps]
        if frames:
            idx[s] = max(frames)
    return idx  # [S]


def align_to_pattern(d: torch.Tensor, pattern: Pattern) -> torch.Tensor:
    """d [B, T] at the codec frame rate -> [B, S] along the LM's interleaved sequence (zeros where unused)."""
    if d.dim() != 2 or d.shape[1] < pattern.timesteps:
        raise ValueError(f"rhythm must be [B, >= {pattern.timesteps}] frames, got {tuple(d.shape)}")
    idx = frame_index_per_position(pattern).to(d.device)
    aligned = d[:, idx.clamp(min=0)]
    return torch.where(idx[None, :] >= 0, aligned, torch.zeros_like(aligned))  # [B, S]


class RhythmModule(nn.Module):
    """O and L_1..L_M. style "musicongen": one O shared by all M blocks (no L chain); the first
    self-attention of each block is trained instead (see `musicongen_trainable`)."""

    def __init__(self, cfg: RhythmConfig, dim: int, num_blocks: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_blocks = num_blocks
        self.proj = nn.Linear(1, dim)  # O
        n_chain = num_blocks if cfg.style == "vidmusician" else 0
        self.chain = nn.ModuleList(nn.Linear(dim, dim) for _ in range(n_chain))  # L_1..L_M
        if cfg.init_technique:
            self.reset_to_identity()

    @torch.no_grad()
    def reset_to_identity(self) -> None:
        """Zero O, identity L_j with zero bias: every F_Rj is exactly 0 (the frozen model's output)."""
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        for lin in self.chain:
            lin.weight.copy_(torch.eye(lin.in_features, dtype=lin.weight.dtype, device=lin.weight.device))
            nn.init.zeros_(lin.bias)

    def forward(self, d: torch.Tensor) -> list[torch.Tensor]:
        """d [B, S] -> M tensors F_Rj [B, S, dim]."""
        h = self.proj(d.unsqueeze(-1).to(self.proj.weight.dtype))  # [B, S, dim]
        if not len(self.chain):
            return [h] * self.num_blocks
        out = []
        for lin in self.chain:
            h = lin(h)
            out.append(h)
        return out


def block_entry_layers(transformer: StreamingTransformer, cfg: RhythmConfig) -> list[nn.Module]:
    """The first layer of each rhythm-conditioned block."""
    n = cfg.conditioned_blocks(len(transformer.layers))
    return [transformer.layers[j * cfg.layers_per_block] for j in range(n)]


def musicongen_trainable(transformer: StreamingTransformer, cfg: RhythmConfig) -> list[nn.Module]:
    """MusiConGen-style: the self-attention of the first layer of each conditioned block is trained."""
    return [layer.self_attn for layer in block_entry_layers(transformer, cfg)]


_PAYLOAD = "_vidmusician_rhythm"  # keyword under which one transformer call's F_Rj reach its layers


@dataclass(frozen=True)
class _CallFeats:
    """F_Rj of one transformer call: M tensors [B, T, dim] (rows of unconditional samples zeroed)."""

    feats: tuple[torch.Tensor, ...]


class RhythmInjector:
    """Adds F_Rj to the input of block j through forward pre-hooks on the LM's transformer and layers.

    The signal (aligned to the interleaved sequence, [B, S]) is supplied with `feeding(...)`; outside it the
    hooks do nothing. A pre-hook on the transformer computes every F_Rj once per call for the slice
    [offset, offset + T) (offset = the transformer's streaming position, 0 when not streaming) and passes
    them down as a keyword argument, which audiocraft's transformer forwards to every layer call; each
    layer's pre-hook removes it, and the first layer of block j adds F_Rj to its input. Because the F_Rj
    travel with the layer call's own arguments, activation checkpointing (`transformer.checkpointing`),
    which replays a layer call with its saved arguments during backward, adds the same F_Rj after
    `feeding` has ended, and several forwards may wait for one backward.
    """

    def __init__(self, transformer: StreamingTransformer, module: RhythmModule, cfg: RhythmConfig) -> None:
        self.transformer = transformer
        self.module = module
        self._signal: torch.Tensor | None = None
        self._active: torch.Tensor | None = None
        entry = {id(layer): j for j, layer in enumerate(block_entry_layers(transformer, cfg))}
        self._handles = [transformer.register_forward_pre_hook(self._on_transformer, with_kwargs=True)]
        self._handles += [
            layer.register_forward_pre_hook(self._make_layer_hook(entry.get(id(layer))), with_kwargs=True)
            for layer in transformer.layers
        ]

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    @contextlib.contextmanager
    def feeding(self, signal: torch.Tensor, active: torch.Tensor | None = None) -> Iterator[None]:
        """signal [B, S]: rhythm per LM input position. active [B] bool: rows with False (the unconditional
        half of classifier-free guidance, or CFG dropout in training) get F_Rj = 0, not F_Rj(d = 0)."""
        if signal.dim() != 2:
            raise ValueError(f"rhythm signal must be [B, S], got {tuple(signal.shape)}")
        if active is not None and active.shape != signal.shape[:1]:
            raise ValueError(f"active must be [B]={signal.shape[0]} booleans, got {tuple(active.shape)}")
        if self._signal is not None:
            raise RuntimeError("RhythmInjector.feeding is not re-entrant")
        self._signal = signal
        self._active = active
        try:
            yield
        finally:
            self._signal = None
            self._active = None

    def _offset(self) -> int:
        offsets = self.transformer._streaming_state.get("offsets")
        return 0 if offsets is None else int(offsets[0])

    def _on_transformer(self, transformer: nn.Module, args: tuple, kwargs: dict):
        if self._signal is None:
            return None
        B, T, _ = args[0].shape  # x [B, T, dim]
        start = self._offset()
        sig = self._signal[:, start:start + T]  # [B, T]
        if sig.shape != (B, T):
            raise RuntimeError(
                f"rhythm signal {tuple(self._signal.shape)} does not cover batch {B}, positions [{start}, {start + T})"
            )
        feats = self.module(sig)  # M x [B, T, dim]
        if self._active is not None:
            row = self._active.to(device=sig.device, dtype=feats[0].dtype)[:, None, None]
            feats = [f * row for f in feats]
        return args, {**kwargs, _PAYLOAD: _CallFeats(tuple(feats))}

    @staticmethod
    def _make_layer_hook(j: int | None):
        def hook(layer: nn.Module, args: tuple, kwargs: dict):
            if _PAYLOAD not in kwargs:
                return None
            rest = {k: v for k, v in kwargs.items() if k != _PAYLOAD}
            if j is None:
                return args, rest
            x = args[0]  # [B, T, dim]
            return (x + kwargs[_PAYLOAD].feats[j].to(x.dtype),) + tuple(args[1:]), rest

        return hook
