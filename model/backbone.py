"""The frozen MusicGen backbone: load by hub name or local dir, or build a random one (debug / meta counts).

A MusicGen checkpoint is audiocraft's on-disk format: `state_dict.bin` (`{'xp.cfg', 'best_state'}` of the
LM) and `compression_state_dict.bin` (same for the EnCodec codec). We rebuild the LM from `xp.cfg` with
audiocraft's builders but *without* its text conditioner (which would download T5 and hide it from
autograd); the conditioner's `output_proj` weights are kept aside to initialise our projector.
"""

from __future__ import annotations

import collections
import copy
import logging
import typing
from dataclasses import dataclass
from pathlib import Path

import omegaconf
import torch
from audiocraft.models import builders
from audiocraft.models.encodec import CompressionModel
from audiocraft.models.lm import LMModel
from omegaconf import DictConfig, ListConfig, OmegaConf

from model.config import BACKBONE_NAMES

logger = logging.getLogger(__name__)

LM_FILE = "state_dict.bin"
CODEC_FILE = "compression_state_dict.bin"
PROJ_PREFIX = "condition_provider.conditioners.description.output_proj."

# What audiocraft's checkpoints pickle besides tensors: an omegaconf DictConfig and its node types.
# Allowed only inside `_safe_load`, never globally.
_SAFE_GLOBALS: list = [
    DictConfig,
    ListConfig,
    omegaconf.base.ContainerMetadata,
    omegaconf.base.Metadata,
    omegaconf.nodes.AnyNode,
    omegaconf.nodes.StringNode,
    omegaconf.nodes.IntegerNode,
    omegaconf.nodes.FloatNode,
    omegaconf.nodes.BooleanNode,
    omegaconf.nodes.EnumNode,
    typing.Any,
    dict,
    list,
    tuple,
    set,
    int,
    float,
    str,
    bool,
    type(None),
    collections.defaultdict,
    collections.OrderedDict,
]

# Architecture of the released MusicGen LMs (audiocraft's `xp.cfg.transformer_lm`).
_SCALES = {
    "debug": dict(dim=32, num_heads=2, num_layers=16),
    "small": dict(dim=1024, num_heads=16, num_layers=24),
    "medium": dict(dim=1536, num_heads=24, num_layers=48),
    "large": dict(dim=2048, num_heads=32, num_layers=48),
}
DEBUG_TEXT_DIM = 32  # the debug backbone's "T5" width: matches SemanticConfig(t5="debug")
CARD = 2048


class BackboneError(RuntimeError):
    """A checkpoint that cannot serve as VidMusician's backbone, or cannot be read."""


def lm_config(scale: str, device: str = "cpu") -> DictConfig:
    """audiocraft's LM config for a MusicGen of this scale (same keys as a checkpoint's `xp.cfg`)."""
    if scale not in _SCALES:
        raise KeyError(f"unknown MusicGen scale {scale!r}; expected one of {sorted(_SCALES)}")
    arch = _SCALES[scale]
    text = (
        {"model": "lut", "lut": {"n_bins": 64, "dim": DEBUG_TEXT_DIM, "tokenizer": "noop"}}
        if scale == "debug"
        else {"model": "t5", "t5": {"name": "t5-base", "finetune": False, "word_dropout": 0.3,
                                   "normalize_text": False}}
    )
    return OmegaConf.create({
        "lm_model": "transformer_lm",
        "device": device,
        "dtype": "float32",
        "dataset": {"segment_duration": 30},
        "transformer_lm": {
            **arch, "n_q": 4, "card": CARD, "hidden_scale": 4, "norm": "layer_norm", "norm_first": True,
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


def debug_codec_config(device: str = "cpu") -> DictConfig:
    """A tiny EnCodec like MusicGen's: 32 kHz mono, hop 640 (8*5*4*4) = 50 Hz, 4 codebooks of 2048."""
    return OmegaConf.create({
        "compression_model": "encodec",
        "device": device,
        "encodec": {"autoencoder": "seanet", "quantizer": "rvq", "sample_rate": 32000, "channels": 1,
                    "causal": False, "renormalize": False},
        "seanet": {"dimension": 16, "channels": 1, "n_filters": 2, "n_residual_layers": 1,
                   "ratios": [8, 5, 4, 4], "norm": "weight_norm", "lstm": 0, "encoder": {},
                   "decoder": {"trim_right_ratio": 1.0}},
        "rvq": {"n_q": 4, "bins": CARD, "q_dropout": False, "kmeans_init": False, "decay": 0.99},
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
        return 32000 if self.codec is None else int(self.codec.sample_rate)

    @property
    def frame_rate(self) -> float:
        return 50.0 if self.codec is None else float(self.codec.frame_rate)


def _safe_load(path: Path) -> dict:
    """torch.load with weights_only=True, allowing only what audiocraft's checkpoints contain."""
    if not path.is_file():
        raise BackboneError(f"{path}: no such checkpoint file")
    with torch.serialization.safe_globals(_SAFE_GLOBALS):
        try:
            pkg = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises UnpicklingError or RuntimeError here
            raise BackboneError(f"{path}: cannot be read with weights_only loading ({err})") from err
    if not isinstance(pkg, dict):
        raise BackboneError(f"{path}: expected a dict checkpoint, got {type(pkg).__name__}")
    return pkg


def _resolve(name_or_dir: str, filename: str) -> Path:
    """A local file inside a checkpoint directory, or the hub file of a MusicGen name."""
    local = Path(name_or_dir).expanduser()
    if local.is_dir():
        return local / filename
    repo = BACKBONE_NAMES.get(name_or_dir, name_or_dir)
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id=repo, filename=filename, library_name="audiocraft"))
    except Exception as err:  # offline, unknown repo, ...: huggingface_hub raises many types
        raise BackboneError(
            f"{name_or_dir!r} is not a local directory and {repo}/{filename} could not be fetched ({err}); "
            f"pass a directory holding {LM_FILE} and {CODEC_FILE}"
        ) from err


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
    pkg = _safe_load(_resolve(name_or_dir, LM_FILE))
    cfg = OmegaConf.create(pkg["xp.cfg"])
    _check_cross_attention(name_or_dir, cfg)
    lm = _build_lm(cfg, device)
    lm_state, proj = _split_state(name_or_dir, pkg["best_state"])
    lm.load_state_dict(lm_state, strict=True)
    codec = _load_codec(_resolve(name_or_dir, CODEC_FILE), device)
    _freeze(lm)
    _freeze(codec)
    logger.info("loaded MusicGen backbone %s: dim %d, %d layers", name_or_dir, lm.dim, len(lm.transformer.layers))
    return Backbone(name=name_or_dir, lm=lm, codec=codec, text_proj={k: v.to(device) for k, v in proj.items()},
                    t5_name=_t5_name(cfg))


def _load_codec(path: Path, device: str) -> CompressionModel:
    pkg = _safe_load(path)
    if "pretrained" in pkg:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            return CompressionModel.get_pretrained(pkg["pretrained"], device=device)
    cfg = OmegaConf.create(pkg["xp.cfg"])
    cfg.device = device
    codec = builders.get_compression_model(cfg)
    codec.load_state_dict(pkg["best_state"])
    return codec.eval()


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
        codec = builders.get_compression_model(debug_codec_config(device)) if with_codec else None
    _freeze(lm)
    if codec is not None:
        _freeze(codec)
    text_proj = {"weight": proj.weight.detach(), "bias": proj.bias.detach()}
    return Backbone(name=scale, lm=lm, codec=codec, text_proj=text_proj, t5_name=None if scale == "debug" else "t5-base")


def save_backbone(backbone: Backbone, directory: Path, scale: str = "debug", yaml_cfg: bool = False) -> Path:
    """Write a backbone in audiocraft's on-disk format (the format of the hub's MusicGen repos): `xp.cfg`
    as a pickled DictConfig (early releases), or as YAML text like `audiocraft.utils.export` (`yaml_cfg`)."""
    if backbone.codec is None:
        raise BackboneError("cannot save a backbone without its codec")
    from dvmset.io import atomic_path

    directory.mkdir(parents=True, exist_ok=True)
    cfg = lm_config(scale)
    state = dict(backbone.lm.state_dict())
    state.update({PROJ_PREFIX + k: v for k, v in backbone.text_proj.items()})
    if cfg.conditioners.description.model == "lut":
        lut = cfg.conditioners.description.lut
        state["condition_provider.conditioners.description.embed.weight"] = torch.zeros(lut.n_bins, lut.dim)
    codec_cfg = debug_codec_config()
    extra: dict = {}
    if yaml_cfg:
        cfg, codec_cfg = OmegaConf.to_yaml(cfg), OmegaConf.to_yaml(codec_cfg)
        extra = {"version": "1.3.0", "exported": True}
    with atomic_path(directory / LM_FILE) as tmp:
        torch.save({"xp.cfg": cfg, "best_state": state, **extra}, tmp)
    with atomic_path(directory / CODEC_FILE) as tmp:
        torch.save({"xp.cfg": codec_cfg, "best_state": backbone.codec.state_dict(), **extra}, tmp)
    return directory
