"""The frozen MusicGen backbone: load by hub name or local dir, or build a random one (debug / meta counts).

A MusicGen checkpoint is audiocraft's on-disk format: `state_dict.bin` (`{'xp.cfg', 'best_state'}` of the
LM) and `compression_state_dict.bin` (same for the EnCodec codec). We rebuild the LM from `xp.cfg` with
audiocraft's builders but *without* its text conditioner (which would download T5 and hide it from
autograd); the conditioner's `output_proj` weights are kept aside to initialise our projector. Both files
are read by `dvmset.checkpoints` (either `xp.cfg` format, weights-only loading), the codec's loader included,
so the features stage (`pipeline.codec.load_codec`) and the model read a checkpoint the same way.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from audiocraft.models import builders
from audiocraft.models.encodec import CompressionModel
from audiocraft.models.lm import LMModel
from omegaconf import DictConfig, OmegaConf

from dvmset import checkpoints
from dvmset.checkpoints import CODEC_FILE, LM_FILE, CheckpointFileError
from dvmset.constants import SAMPLE_RATE_HZ, TOKEN_RATE_HZ
from model.config import BACKBONE_NAMES

logger = logging.getLogger(__name__)

PROJ_PREFIX = "condition_provider.conditioners.description.output_proj."

# Architecture of the released MusicGen LMs (audiocraft's `xp.cfg.transformer_lm`).
_SCALES = {
    "debug": dict(dim=32, num_heads=2, num_layers=16),
    # the miniature world's LM (model/training/miniature.py): 12 layers -> 3 blocks -> 2 get rhythm; its codec (the
    # envelope codec) uses under 128 tokens per codebook, so a 128-way output keeps the logits small on CPU
    "mini": dict(dim=64, num_heads=4, num_layers=12, card=128),
    "small": dict(dim=1024, num_heads=16, num_layers=24),
    "medium": dict(dim=1536, num_heads=24, num_layers=48),
    "large": dict(dim=2048, num_heads=32, num_layers=48),
}
LUT_SCALES = ("debug", "mini")  # text = one word through a lookup table (audiocraft's LUTConditioner)
DEBUG_TEXT_DIM = 32  # the debug backbone's "T5" width: matches SemanticConfig(t5="debug")
CARD = checkpoints.CODEBOOK_SIZE


class BackboneError(RuntimeError):
    """A checkpoint that cannot serve as VidMusician's backbone, or cannot be read."""


def lm_config(scale: str, device: str = "cpu") -> DictConfig:
    """audiocraft's LM config for a MusicGen of this scale (same keys as a checkpoint's `xp.cfg`)."""
    if scale not in _SCALES:
        raise KeyError(f"unknown MusicGen scale {scale!r}; expected one of {sorted(_SCALES)}")
    arch = dict(_SCALES[scale])
    card = arch.pop("card", CARD)
    text = (
        {"model": "lut", "lut": {"n_bins": 64, "dim": DEBUG_TEXT_DIM, "tokenizer": "noop"}}
        if scale in LUT_SCALES
        else {"model": "t5", "t5": {"name": "t5-base", "finetune": False, "word_dropout": 0.3,
                                   "normalize_text": False}}
    )
    return OmegaConf.create({
        "lm_model": "transformer_lm",
        "device": device,
        "dtype": "float32",
        "dataset": {"segment_duration": 30},
        "transformer_lm": {
            **arch, "n_q": 4, "card": card, "hidden_scale": 4, "norm": "layer_norm", "norm_first": True,
            "bias_ff": False, "bias_attn": False, "bias_proj": False, "causal": True, "dropout": 0.0,
            "activation": "gelu", "memory_efficient": True, "attention_as_float32": False,
            "layer_scale": None, "positional_embedding": "sin", "xpos": False, "checkpointing": "none",
            "weight_init": "gaussian", "depthwise_init": "current", "zero_bias_init": True,
            "emb_lr": None, "past_context": None, "two_step_cfg": False,
        },
        "codebooks_pattern": {"modeling": "delay",
                              "delay": {"delays": [0, 1, 2, 3], "flatten_first": 0, "empty_initial": 0}},
        "attribute_dropout": {},
        "classifier_free_guidance": {"training_dropout": 0.3, "inference_coef": 3.0},
        "fuser": {"cross_attention_pos_emb": False, "cross_attention_pos_emb_scale": 1,
                  "sum": [], "prepend": [], "cross": ["description"], "input_interpolate": []},
        "conditioners": {"description": text},
    })


@dataclass(frozen=True)
class Backbone:
    """A frozen MusicGen: the LM, its codec (None when built only to count parameters) and the
    weights of its text conditioner's output projection (our projector's initialisation)."""

    name: str
    lm: LMModel
    codec: CompressionModel | None
    text_proj: dict[str, torch.Tensor]  # {"weight": [dim, text_dim], "bias": [dim]}
    t5_name: str | None  # the T5 the checkpoint was trained with (None for the debug backbone)

    def __post_init__(self) -> None:
        if set(self.text_proj) != {"weight", "bias"}:
            raise BackboneError(f"{self.name}: text projection needs weight and bias, got {sorted(self.text_proj)}")
        if self.text_proj["weight"].shape[0] != self.dim:
            raise BackboneError(f"{self.name}: text projection outputs {self.text_proj['weight'].shape[0]} "
                                f"but the LM width is {self.dim}")

    @property
    def dim(self) -> int:
        return self.lm.dim

    @property
    def num_layers(self) -> int:
        return len(self.lm.transformer.layers)

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE_HZ if self.codec is None else int(self.codec.sample_rate)

    @property
    def frame_rate(self) -> float:
        return float(TOKEN_RATE_HZ) if self.codec is None else float(self.codec.frame_rate)


def _read(path: Path) -> checkpoints.AudiocraftCheckpoint:
    try:
        return checkpoints.read_checkpoint(path)
    except CheckpointFileError as err:
        raise BackboneError(str(err)) from err


def _resolve(name_or_dir: str, filename: str) -> Path:
    """A local file inside a checkpoint directory, or the hub file of a MusicGen name."""
    try:
        return checkpoints.resolve_file(name_or_dir, filename, repo=BACKBONE_NAMES.get(name_or_dir, name_or_dir))
    except CheckpointFileError as err:
        raise BackboneError(f"{err}; a local directory must hold {LM_FILE} and {CODEC_FILE}") from err


def _check_cross_attention(name: str, cfg: DictConfig) -> None:
    fuser = cfg.get("fuser", {})
    conds = cfg.get("conditioners", {}) or {}
    if list(fuser.get("prepend", [])) or "self_wav" in conds:
        raise BackboneError(f"{name}: this is MusicGen-melody (conditions by prepend/chroma, no cross-attention "
                            "to a description); use facebook/musicgen-small|medium|large")
    if "description" not in list(fuser.get("cross", [])):
        raise BackboneError(f"{name}: the LM does not cross-attend to a 'description' condition")


def _build_lm(cfg: DictConfig, device: str) -> LMModel:
    """The LM from its config, with no conditioners (we supply the condition tensors ourselves)."""
    cfg = copy.deepcopy(cfg)
    OmegaConf.set_struct(cfg, False)
    cfg.device = device
    cfg.dtype = "float32"
    cfg.conditioners = {}
    lm = builders.get_lm_model(cfg)
    return lm


def _freeze(module: torch.nn.Module) -> None:
    module.requires_grad_(False)
    module.eval()


def _split_state(name: str, state: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    lm_state = {k: v for k, v in state.items() if not k.startswith("condition_provider.")}
    proj = {k[len(PROJ_PREFIX):]: v for k, v in state.items() if k.startswith(PROJ_PREFIX)}
    if set(proj) != {"weight", "bias"}:
        raise BackboneError(f"{name}: checkpoint has no {PROJ_PREFIX}weight/bias (not a text-conditioned MusicGen)")
    return lm_state, proj


def _t5_name(cfg: DictConfig) -> str | None:
    text = (cfg.get("conditioners", {}) or {}).get("description", {})
    return str(text["t5"]["name"]) if text.get("model") == "t5" else None


def load_backbone(name_or_dir: str, device: str = "cpu") -> Backbone:
    """MusicGen by hub name (`facebook/musicgen-medium`, or `small|medium|large`) or from a local
    directory in audiocraft's format; `debug` builds the tiny random backbone. LM and codec frozen."""
    if name_or_dir == "debug":
        return build_backbone("debug", device=device)
    if "melody" in name_or_dir.lower():
        raise BackboneError(f"{name_or_dir}: MusicGen-melody has no cross-attention to a description; "
                            "use facebook/musicgen-small|medium|large")
    ckpt = _read(_resolve(name_or_dir, LM_FILE))
    if ckpt.cfg is None:
        raise BackboneError(f"{ckpt.path}: points to a pretrained model ({ckpt.pretrained}), not an LM checkpoint")
    cfg = ckpt.cfg
    _check_cross_attention(name_or_dir, cfg)
    lm = _build_lm(cfg, device)
    lm_state, proj = _split_state(name_or_dir, ckpt.state)
    lm.load_state_dict(lm_state, strict=True)
    codec = _load_codec(_resolve(name_or_dir, CODEC_FILE), device)
    _freeze(lm)
    _freeze(codec)
    logger.info("loaded MusicGen backbone %s: dim %d, %d layers", name_or_dir, lm.dim, len(lm.transformer.layers))
    return Backbone(name=name_or_dir, lm=lm, codec=codec, text_proj={k: v.to(device) for k, v in proj.items()},
                    t5_name=_t5_name(cfg))


def _load_codec(path: Path, device: str) -> CompressionModel:
    try:
        return checkpoints.load_compression_model(path, device=device)
    except CheckpointFileError as err:
        raise BackboneError(str(err)) from err


def build_backbone(scale: str, device: str | torch.device = "cpu", seed: int = 0,
                   with_codec: bool = True) -> Backbone:
    """A random-weight MusicGen of a given scale. `debug` (16 layers, dim 32, 50 Hz codec) is the tests'
    backbone; `small|medium|large` on device "meta" serve to count parameters without allocating."""
    device = str(device)
    cfg = lm_config(scale, device=device)
    if device == "meta":  # shapes only: skip audiocraft's (slow, meaningless on meta) weight init
        cfg.transformer_lm.update(weight_init=None, depthwise_init=None, zero_bias_init=False)
    with torch.random.fork_rng(devices=[]), torch.device(device):  # seeded, global RNG left untouched
        torch.manual_seed(seed)
        lm = _build_lm(cfg, device)
        text_dim = DEBUG_TEXT_DIM if scale == "debug" else 768
        proj = torch.nn.Linear(text_dim, lm.dim)
    codec = checkpoints.build_tiny_codec(seed=seed, device=device) if with_codec else None  # seeds itself
    _freeze(lm)
    if codec is not None:
        _freeze(codec)
    text_proj = {"weight": proj.weight.detach(), "bias": proj.bias.detach()}
    return Backbone(name=scale, lm=lm, codec=codec, text_proj=text_proj, t5_name=None if scale == "debug" else "t5-base")


def save_backbone(backbone: Backbone, directory: Path, scale: str = "debug", yaml_cfg: bool = False) -> Path:
    """Write a backbone in audiocraft's on-disk format (the format of the hub's MusicGen repos): `xp.cfg`
    as a pickled DictConfig (early releases), or as YAML text like `audiocraft.utils.export` (`yaml_cfg`).
    The codec must be the tiny test EnCodec or the envelope codec (`dvmset.checkpoints.codec_config_of`)."""
    if backbone.codec is None:
        raise BackboneError("cannot save a backbone without its codec")
    directory.mkdir(parents=True, exist_ok=True)
    cfg = lm_config(scale)
    state = dict(backbone.lm.state_dict())
    state.update({PROJ_PREFIX + k: v for k, v in backbone.text_proj.items()})
    if cfg.conditioners.description.model == "lut":
        lut = cfg.conditioners.description.lut
        state["condition_provider.conditioners.description.embed.weight"] = torch.zeros(lut.n_bins, lut.dim)
    checkpoints.write_checkpoint(directory / LM_FILE, cfg, state, yaml_cfg=yaml_cfg)
    checkpoints.write_checkpoint(directory / CODEC_FILE, checkpoints.codec_config_of(backbone.codec),
                                 backbone.codec.state_dict(), yaml_cfg=yaml_cfg)
    return directory
