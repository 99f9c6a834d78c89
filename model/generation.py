"""Token generation through audiocraft's streaming LM (KV cache), with precomputed condition tensors.

This mirrors `LMModel.generate` (delay pattern, one batched pass for classifier-free guidance) but takes
the condition tensors directly, since our conditions are video features rather than text attributes,
and samples with an explicit `torch.Generator` so a seed reproduces a generation exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from audiocraft.models.lm import LMModel
from audiocraft.modules.conditioners import ConditionType

UNKNOWN = -1


@dataclass(frozen=True)
class SamplingParams:
    use_sampling: bool = True
    temperature: float = 1.0
    top_k: int = 250
    top_p: float = 0.0
    cfg_coef: float = 3.0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0.0 <= self.top_p <= 1.0:
            raise ValueError(f"top_p must be in [0, 1], got {self.top_p}")


def sample_next(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> torch.Tensor:
    """logits [B, K, card] -> tokens [B, K, 1] (argmax, or top-p / top-k / full multinomial sampling)."""
    if not params.use_sampling or params.temperature == 0.0:
        return logits.argmax(dim=-1, keepdim=True)
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    if params.top_p > 0.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        drop = sorted_p.cumsum(dim=-1) - sorted_p > params.top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    elif params.top_k > 0:
        kth = probs.topk(min(params.top_k, probs.shape[-1]), dim=-1).values[..., -1:]
        probs = probs * (probs >= kth)
    flat = probs.reshape(-1, probs.shape[-1])
    flat = flat / flat.sum(dim=-1, keepdim=True)
    tokens = torch.multinomial(flat, 1, generator=generator)
    return tokens.reshape(*probs.shape[:-1], 1)


class FixedConditions(torch.nn.Module):
    """audiocraft's ConditioningProvider interface serving precomputed condition tensors: installed as
    `lm.condition_provider`, it lets audiocraft's own `LMModel.generate` run on our condition (the
    reference that tests and benchmarks/bench_generate.py compare `stream_generate` against)."""

    def __init__(self, tensors: dict[str, ConditionType]) -> None:
        super().__init__()
        self.tensors = tensors

    def tokenize(self, conditions: list) -> list:
        return conditions

    def forward(self, _tokenized: list) -> dict[str, ConditionType]:
        return self.tensors


def _check_prompt(prompt: torch.Tensor, batch: int, n_q: int, n_frames: int, card: int) -> None:
    if prompt.dim() != 3 or prompt.shape[:2] != (batch, n_q):
        raise ValueError(f"prompt must be [B={batch}, K={n_q}, P] codes, got {tuple(prompt.shape)}")
    if prompt.shape[-1] >= n_frames:
        raise ValueError(f"prompt has {prompt.shape[-1]} frames; it must be shorter than the {n_frames} generated")
    if prompt.is_floating_point() or prompt.numel() and (prompt.min() < 0 or prompt.max() >= card):
        raise ValueError(f"prompt must hold integer codes in [0, {card})")


def guided_logits(cond: torch.Tensor, uncond: torch.Tensor, cfg_coef: float) -> torch.Tensor:
    """Classifier-free guidance on the logits, as audiocraft's LMModel.generate: uncond + coef * (cond - uncond)."""
    return uncond + (cond - uncond) * cfg_coef


# (input position, conditional logits [B, K, card], unconditional logits [B, K, card] or None without CFG)
StepCallback = Callable[[int, torch.Tensor, "torch.Tensor | None"], None]


@torch.no_grad()
def stream_generate(lm: LMModel, condition_tensors: dict[str, ConditionType], batch: int, n_frames: int,
                    params: SamplingParams, generator: torch.Generator | None = None,
                    on_step: StepCallback | None = None, prompt: torch.Tensor | None = None) -> torch.Tensor:
    """Generate codes [B, K, n_frames]. With classifier-free guidance (cfg_coef != 1) the condition
    tensors must hold 2B rows: the conditional samples, then their unconditional (null) counterparts.

    prompt [B, K, P] (P < n_frames): the first P frames are given, as in `LMModel.generate`; they are
    fed in one streaming call and kept verbatim in the output, and sampling starts at frame P."""
    use_cfg = params.cfg_coef != 1.0
    rows = 2 * batch if use_cfg else batch
    for name, (cond, _) in condition_tensors.items():
        if cond.shape[0] != rows:
            raise ValueError(f"condition {name!r} has {cond.shape[0]} rows, expected {rows} (cfg={use_cfg})")
    device = next(lm.parameters()).device
    pattern = lm.pattern_provider.get_pattern(n_frames)
    gen_codes = torch.full((batch, lm.num_codebooks, n_frames), UNKNOWN, dtype=torch.long, device=device)
    n_prompt = 0
    if prompt is not None:
        _check_prompt(prompt, batch, lm.num_codebooks, n_frames, lm.card)
        n_prompt = prompt.shape[-1]
        gen_codes[..., :n_prompt] = prompt.to(device=device, dtype=torch.long)
    gen_sequence, _, mask = pattern.build_pattern_sequence(gen_codes, lm.special_token_id)  # [B, K, S]
    start = pattern.get_first_step_with_timesteps(n_prompt)
    if start is None:
        raise RuntimeError(f"codebook pattern has no step for timestep {n_prompt}")
    with lm.streaming():
        prev = 0
        for offset in range(start, gen_sequence.shape[-1]):
            seq = gen_sequence[..., prev:offset]  # the new positions since the last call
            inp = torch.cat([seq, seq], dim=0) if use_cfg else seq
            logits = lm(inp, conditions=[], condition_tensors=condition_tensors)  # [rows, K, T, card]
            logits = logits[:, :, -1]  # [rows, K, card]
            if use_cfg:
                cond, uncond = logits.split(batch, dim=0)
                guided = guided_logits(cond, uncond, params.cfg_coef)
            else:
                cond, uncond = logits, None
                guided = logits
            if on_step is not None:
                on_step(offset - 1, cond, uncond)
            nxt = sample_next(guided, params, generator)  # [B, K, 1]
            valid = mask[..., offset:offset + 1].expand(batch, -1, -1)
            nxt[~valid] = lm.special_token_id
            cur = gen_sequence[..., offset:offset + 1]
            gen_sequence[..., offset:offset + 1] = torch.where(cur == UNKNOWN, nxt, cur)
            prev = offset
    if (gen_sequence == UNKNOWN).any():
        raise RuntimeError("generation left unfilled positions in the sequence")
    codes, _, _ = pattern.revert_pattern_sequence(gen_sequence, special_token=UNKNOWN)
    codes = codes[..., :n_frames]
    if (codes < 0).any() or (codes >= lm.card).any():
        raise RuntimeError("generated codes outside the codebook range")
    return codes  # [B, K, n_frames]
