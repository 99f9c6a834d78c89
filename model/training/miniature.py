"""A pre-trained miniature MusicGen: a small audiocraft LM trained on a world's music codes, its text at most a
class word (the LUT conditioner of the debug config), saved in audiocraft's checkpoint layout.

The LM is audiocraft's own `LMModel` built from `model.backbone.lm_config(scale)` with its conditioner, trained
with audiocraft's own `compute_predictions` (delay pattern, classifier-free-guidance dropout of the text), so
the files written are what audiocraft's solver would export: `state_dict.bin` (`xp.cfg` + `best_state` of the
LM, conditioner included) and `compression_state_dict.bin` (`xp.cfg` + `best_state` of the codec). It then
loads through `model.backbone.load_backbone(DIR)` exactly as a released MusicGen does, frozen.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from audiocraft.models import builders
from audiocraft.models.lm import LMModel
from audiocraft.modules.conditioners import ConditioningAttributes

from dvmset import checkpoints
from dvmset.checkpoints import CODEC_FILE, LM_FILE
from model.backbone import lm_config
from model.vidmusician import codebook_cross_entropy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PretrainConfig:
    """How the miniature LM trains: AdamW with warm-up then cosine decay, random windows of the corpus."""

    scale: str = "debug"
    steps: int = 800
    batch_size: int = 16
    window_s: float = 4.0
    lr: float = 3e-3
    warmup: int = 40
    weight_decay: float = 0.01
    seed: int = 0
    frame_rate: int = 50

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.warmup < 0:
            raise ValueError(f"steps and batch_size must be >= 1 and warmup >= 0: {self}")
        if not self.lr > 0 or not self.window_s > 0:
            raise ValueError(f"lr and window_s must be positive: {self}")

    @property
    def window(self) -> int:
        return int(round(self.window_s * self.frame_rate))


@dataclass(frozen=True)
class PretrainResult:
    lm: LMModel
    losses: tuple[float, ...]  # per step
    seconds: float


def build_lm(scale: str = "debug", seed: int = 0) -> LMModel:
    """audiocraft's LM with its LUT text conditioner, seeded (the caller's RNG is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return builders.get_lm_model(lm_config(scale))


def _windows(corpus: Sequence[torch.Tensor], size: int, batch: int, gen: torch.Generator
             ) -> tuple[torch.Tensor, list[int]]:
    """`batch` random windows [B, K, size] of the corpus and the piece each came from."""
    picks = torch.randint(0, len(corpus), (batch,), generator=gen).tolist()
    out = []
    for i in picks:
        codes = corpus[i]
        start = int(torch.randint(0, codes.shape[-1] - size + 1, (1,), generator=gen))
        out.append(codes[:, start:start + size])
    return torch.stack(out).long(), picks


def pretrain_lm(corpus: Sequence[torch.Tensor], words: Sequence[str], cfg: PretrainConfig = PretrainConfig()
                ) -> PretrainResult:
    """Train a fresh LM on `corpus` (codes [K, T] per piece) with `words[i]` as piece i's description."""
    if len(corpus) != len(words) or not corpus:
        raise ValueError(f"need one word per piece, got {len(corpus)} pieces and {len(words)} words")
    short = [i for i, c in enumerate(corpus) if c.shape[-1] < cfg.window]
    if short:
        raise ValueError(f"pieces {short[:5]} are shorter than the {cfg.window_s} s window")
    t0 = time.perf_counter()
    lm = build_lm(cfg.scale, cfg.seed)
    lm.train()
    opt = torch.optim.AdamW(lm.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)

    def factor(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        return 0.5 * (1 + math.cos(math.pi * (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    gen = torch.Generator().manual_seed(cfg.seed)
    losses = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # the CFG dropout of the text draws from the global RNG
        for step in range(cfg.steps):
            codes, picks = _windows(corpus, cfg.window, cfg.batch_size, gen)
            attrs = [ConditioningAttributes(text={"description": words[i]}) for i in picks]
            out = lm.compute_predictions(codes, attrs)  # logits [B, K, T, card]
            loss, _ = codebook_cross_entropy(out.logits, codes, out.mask)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            if step % 100 == 0 or step == cfg.steps - 1:
                log.info("pretrain step %d/%d: loss %.4f", step + 1, cfg.steps, losses[-1])
    lm.eval()
    return PretrainResult(lm, tuple(losses), time.perf_counter() - t0)


def save_miniature(lm: LMModel, codec: torch.nn.Module, directory: Path, scale: str = "debug") -> Path:
    """Write audiocraft's two checkpoint files: the LM with its conditioner, and the codec (with its xp.cfg)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in lm.state_dict().items()}
    checkpoints.write_checkpoint(directory / LM_FILE, lm_config(scale), state)
    checkpoints.write_checkpoint(directory / CODEC_FILE, checkpoints.codec_config_of(codec),
                                 {k: v.detach().cpu() for k, v in codec.state_dict().items()})
    return directory


def class_word_bins(words: Sequence[str], n_bins: int = 64) -> dict[str, int]:
    """The LUT row each word hashes to (audiocraft's NoopTokenizer); distinct words must not collide."""
    from audiocraft.modules.conditioners import hash_trick

    bins = {w: hash_trick(w, n_bins) for w in words}
    if len(set(bins.values())) != len(bins):
        raise ValueError(f"class words collide in the LUT's {n_bins} bins: {bins}")
    return bins


def load_miniature(directory: Path) -> tuple[LMModel, torch.nn.Module]:
    """The saved LM *with* its text conditioner (the backbone loader drops it) and its codec, for sampling."""
    directory = Path(directory)
    lm_file = checkpoints.read_checkpoint(directory / LM_FILE)
    with torch.random.fork_rng(devices=[]):
        lm = builders.get_lm_model(lm_file.cfg)
    lm.load_state_dict(lm_file.state)
    codec = checkpoints.load_compression_model(directory / CODEC_FILE)
    return lm.eval(), codec.eval()


@dataclass(frozen=True)
class SampleConfig:
    """How the backbone is sampled when its tempo is measured: MusicGen's defaults, as `generate` samples."""

    duration_s: float = 8.0
    per_word: int = 4
    cfg_coef: float = 3.0
    top_k: int = 250
    temperature: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.duration_s > 0 or self.per_word < 1 or self.cfg_coef <= 0 or self.top_k < 0:
            raise ValueError(f"duration_s > 0, per_word >= 1, cfg_coef > 0 and top_k >= 0 required: {self}")


@torch.no_grad()
def sample_words(lm: LMModel, codec: torch.nn.Module, words: Sequence[str], cfg: SampleConfig = SampleConfig()
                 ) -> tuple[list[str], torch.Tensor]:
    """`cfg.per_word` pieces per word through audiocraft's own `LMModel.generate` (its text = the word), decoded:
    (the word of each piece, audio [N, 1, S] at the codec's rate). Seeded; the caller's RNG is left untouched.
    A top-k above the codebook's size keeps every token, as `model.generation.sample_next` does (audiocraft's
    own top-k raises there)."""
    order = [w for w in words for _ in range(cfg.per_word)]
    frames = int(round(cfg.duration_s * codec.frame_rate))
    attrs = [ConditioningAttributes(text={"description": w}) for w in order]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # audiocraft samples from the global RNG
        codes = lm.generate(conditions=attrs, max_gen_len=frames, use_sampling=True, temp=cfg.temperature,
                            top_k=min(cfg.top_k, lm.card), cfg_coef=cfg.cfg_coef)  # [N, K, frames]
    audio = codec.decode(codes, None)  # [N, 1, S]
    return order, audio[..., : int(round(cfg.duration_s * codec.sample_rate))]
