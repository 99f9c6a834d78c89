"""audiocraft's MusicGen checkpoint files: the one reader and writer of their formats, the one loader of
MusicGen's EnCodec, and the tiny random "MusicGen EnCodec" the tests use (like audiocraft's debug models).

A file (`state_dict.bin` for the LM, `compression_state_dict.bin` for the codec) is a dict
`{"xp.cfg": cfg, "best_state": state_dict, ...}` where `cfg` is either a pickled omegaconf `DictConfig`
(the hub's early MusicGen releases) or YAML text (`audiocraft.utils.export`, which adds `version` and
`exported`); an exported codec may instead hold `{"pretrained": NAME}`, naming another compression model.
Files are read with `torch.load(weights_only=True)` inside a scoped allow-list of the omegaconf node
types audiocraft pickles (`safe_globals()`); torch's global allow-list is never changed.

Why in dvmset: the features stage (pipeline) and the model both read the codec and may not import each
other; the codec's tokens are the dataset's `codes`, so the bottom layer owns how it is read. audiocraft and
omegaconf are imported only when a checkpoint is read or a codec built: the rest of dvmset needs neither.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from dvmset.constants import CODEBOOK_SIZE, SAMPLE_RATE_HZ, TOKEN_RATE_HZ
from dvmset.io import atomic_path

if TYPE_CHECKING:  # imported lazily at run time (the `model` extra)
    from audiocraft.models.encodec import CompressionModel
    from omegaconf import DictConfig

log = logging.getLogger(__name__)

LM_FILE = "state_dict.bin"
CODEC_FILE = "compression_state_dict.bin"
NUM_CODEBOOKS = 4
TINY_RATIOS = (8, 5, 4, 4)  # hop 640 at 32 kHz = 50 Hz, MusicGen's geometry


class CheckpointFileError(RuntimeError):
    """A MusicGen checkpoint file that is missing, cannot be fetched, or is not in audiocraft's format."""

    whole_run = True  # no weights: the failure policy (pipeline.errors.is_whole_run) stops the run


def safe_globals() -> list:
    """What audiocraft's checkpoints pickle besides tensors: omegaconf's DictConfig and its node types.

    Allowed only inside `read_checkpoint`. A checkpoint holding another type fails with that type named:
    add it here after checking it is plain data."""
    import collections
    import typing

    import omegaconf
    from omegaconf import DictConfig, ListConfig

    return [
        DictConfig, ListConfig, omegaconf.base.ContainerMetadata, omegaconf.base.Metadata,
        omegaconf.nodes.AnyNode, omegaconf.nodes.StringNode, omegaconf.nodes.IntegerNode,
        omegaconf.nodes.FloatNode, omegaconf.nodes.BooleanNode, omegaconf.nodes.EnumNode,
        typing.Any, dict, list, tuple, set, int, float, str, bool, type(None),
        collections.defaultdict, collections.OrderedDict,
    ]


@dataclass(frozen=True)
class AudiocraftCheckpoint:
    """One file read: its config (whichever way it was stored) and weights, or the model it points to."""

    path: Path
    cfg: DictConfig | None  # xp.cfg, always a DictConfig here (YAML text is parsed)
    state: dict[str, torch.Tensor]  # best_state
    pretrained: str | None = None  # {"pretrained": NAME}: the weights are another model's
    extra: tuple[tuple[str, Any], ...] = ()  # any other top-level keys (version, exported, ...)

    def __post_init__(self) -> None:
        if self.pretrained is None and self.cfg is None:
            raise CheckpointFileError(f"{self.path}: holds neither 'xp.cfg' + 'best_state' nor 'pretrained'")


def read_checkpoint(path: str | Path) -> AudiocraftCheckpoint:
    """Read an audiocraft checkpoint file with weights-only loading; errors name the file."""
    from omegaconf import OmegaConf

    path = Path(path)
    if not path.is_file():
        raise CheckpointFileError(f"{path}: no such checkpoint file")
    with torch.serialization.safe_globals(safe_globals()):
        try:
            pkg = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError... on a bad file
            raise CheckpointFileError(
                f"{path}: not a readable audiocraft checkpoint with weights-only loading ({err}); if it names "
                "an unsupported global that is plain data, add it to dvmset.checkpoints.safe_globals()"
            ) from err
    if not isinstance(pkg, dict):
        raise CheckpointFileError(f"{path}: expected a dict checkpoint, got {type(pkg).__name__}")
    rest = tuple(sorted((k, v) for k, v in pkg.items() if k not in ("xp.cfg", "best_state", "pretrained")))
    if "pretrained" in pkg:
        return AudiocraftCheckpoint(path, None, {}, pretrained=str(pkg["pretrained"]), extra=rest)
    if "xp.cfg" not in pkg or "best_state" not in pkg:
        raise CheckpointFileError(f"{path}: missing 'xp.cfg' or 'best_state' (has {sorted(pkg)})")
    raw = pkg["xp.cfg"]
    if not isinstance(raw, str | dict) and not OmegaConf.is_config(raw):
        raise CheckpointFileError(f"{path}: 'xp.cfg' is a {type(raw).__name__}, expected YAML text or a DictConfig")
    cfg = OmegaConf.create(raw)  # YAML text, a plain dict or a DictConfig -> DictConfig
    if not OmegaConf.is_dict(cfg):
        raise CheckpointFileError(f"{path}: 'xp.cfg' is not a mapping")
    return AudiocraftCheckpoint(path, cfg, dict(pkg["best_state"]), extra=rest)


def write_checkpoint(path: str | Path, cfg: DictConfig, state: dict[str, torch.Tensor],
                     yaml_cfg: bool = False) -> Path:
    """Write `{'xp.cfg', 'best_state'}` atomically: cfg pickled as a DictConfig (the hub's early releases),
    or as YAML text plus `version`/`exported` like `audiocraft.utils.export` (`yaml_cfg`)."""
    from omegaconf import OmegaConf

    pkg: dict[str, Any] = {"xp.cfg": OmegaConf.to_yaml(cfg) if yaml_cfg else cfg, "best_state": state}
    if yaml_cfg:
        pkg.update(version="1.3.0", exported=True)
    with atomic_path(path) as tmp:
        torch.save(pkg, tmp)
    return Path(path)


def resolve_file(name_or_dir: str, filename: str, repo: str | None = None) -> Path:
    """`filename` inside a local checkpoint directory, a local file itself, or the file fetched from the
    Hugging Face repo `repo` (default: `name_or_dir`) into the usual cache."""
    local = Path(name_or_dir).expanduser()
    if local.is_dir():
        return local / filename
    if local.is_file():
        return local
    if name_or_dir.startswith(("/", ".", "~")) or name_or_dir.count("/") > 1:  # a path, not "org/name"
        raise CheckpointFileError(f"{name_or_dir}: no such directory (expected {filename} inside it)")
    repo = repo or name_or_dir
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id=repo, filename=filename, library_name="audiocraft"))
    except Exception as err:  # offline, unknown repo, invalid id: huggingface_hub raises many types
        raise CheckpointFileError(
            f"{name_or_dir!r} is not a local directory and {repo}/{filename} could not be fetched ({err}); "
            f"pass a local directory holding {filename}"
        ) from err


def load_compression_model(path: str | Path, device: str | torch.device = "cpu") -> CompressionModel:
    """The EnCodec of a `compression_state_dict.bin` (either cfg format, or a `pretrained` pointer), eval."""
    from audiocraft.models import builders
    from audiocraft.models.encodec import CompressionModel

    ckpt = read_checkpoint(path)
    if ckpt.pretrained is not None:
        target = Path(ckpt.pretrained).expanduser()
        if target.exists():  # an exported local model: read it the same safe way
            return load_compression_model(target / CODEC_FILE if target.is_dir() else target, device)
        with torch.serialization.safe_globals(safe_globals()):
            return CompressionModel.get_pretrained(ckpt.pretrained, device=device).eval()
    cfg = ckpt.cfg.copy()
    cfg.device = str(device)
    try:
        codec = _build_codec(cfg, builders)
        codec.load_state_dict(ckpt.state, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointFileError(f"{ckpt.path}: its 'xp.cfg' and 'best_state' do not build a codec ({err})") from err
    return codec.eval()


def _build_codec(cfg: DictConfig, builders) -> CompressionModel:  # noqa: ANN001 - audiocraft's builders module
    """audiocraft's codecs by its builders; `compression_model: envelope` is the miniature world's own codec."""
    from dvmset import envelope_codec

    if cfg.get("compression_model") == envelope_codec.NAME:
        return envelope_codec.EnvelopeCodec.from_config(cfg).to(str(cfg.device))
    return builders.get_compression_model(cfg)


def codec_config_of(codec: CompressionModel) -> DictConfig:
    """The `xp.cfg` that rebuilds `codec` (the tiny test EnCodec or the envelope codec)."""
    from omegaconf import OmegaConf

    from dvmset import envelope_codec

    if isinstance(codec, envelope_codec.EnvelopeCodec):
        return OmegaConf.create(envelope_codec.codec_config())
    return tiny_codec_config()


def tiny_codec_config(device: str | torch.device = "cpu") -> DictConfig:
    """audiocraft's config of a tiny EnCodec with MusicGen's rates: 32 kHz mono, 50 Hz, 4 codebooks of 2048."""
    from omegaconf import OmegaConf

    return OmegaConf.create({
        "compression_model": "encodec",
        "device": str(device),
        "encodec": {"autoencoder": "seanet", "quantizer": "rvq", "sample_rate": SAMPLE_RATE_HZ, "channels": 1,
                    "causal": False, "renormalize": False},
        "seanet": {"dimension": 32, "channels": 1, "n_filters": 4, "n_residual_layers": 1,
                   "ratios": list(TINY_RATIOS), "encoder": {}, "decoder": {}},
        "rvq": {"n_q": NUM_CODEBOOKS, "bins": CODEBOOK_SIZE, "q_dropout": False, "kmeans_init": False,
                "decay": 0.99},
    })


def build_tiny_codec(seed: int = 0, device: str | torch.device = "cpu") -> CompressionModel:
    """A seeded random EnCodec from `tiny_codec_config`, frozen: the one test codec of every layer.

    Random codebooks would map all audio to one code per level; each level's codebook is instead drawn
    from the residuals of the encoder's outputs on seeded noise, so every codebook's tokens vary."""
    from audiocraft.models import builders

    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):  # seeded; the caller's RNG is left untouched
        torch.manual_seed(seed)
        codec = builders.get_compression_model(tiny_codec_config("cpu")).eval()
        try:  # one thread: a multi-threaded conv sums in another order (1 ulp of float64 changed a weight)
            torch.set_num_threads(1)
            _fit_codebooks(codec)
        finally:
            torch.set_num_threads(threads)
    codec.requires_grad_(False)
    return codec.to(device)


@torch.no_grad()
def _fit_codebooks(codec: CompressionModel, seconds: int = 4) -> None:
    """Each level's codebook: residual frames of the encoder on seeded noise, plus jitter. Computed in float64
    on one thread (the caller sets it) so the float32 weights are bitwise equal in every process."""
    import copy

    encoder = copy.deepcopy(codec.encoder).double()
    noise = 0.1 * torch.randn(1, 1, seconds * SAMPLE_RATE_HZ, dtype=torch.float64)  # [1, 1, N]
    residual = encoder(noise)[0].T  # [seconds * 50, D]
    if residual.shape[0] != seconds * TOKEN_RATE_HZ:
        raise RuntimeError(f"tiny codec runs at {residual.shape[0] / seconds} Hz, expected {TOKEN_RATE_HZ}")
    for layer in codec.quantizer.vq.layers:
        book = layer._codebook
        pick = torch.randint(0, residual.shape[0], (book.codebook_size,))
        jitter = torch.randn(book.codebook_size, residual.shape[1], dtype=torch.float64)
        embed = (residual[pick] + 0.05 * residual.std() * jitter).float()  # [bins, D]
        book.embed.copy_(embed)
        book.embed_avg.copy_(embed)
        chosen = embed.double()[torch.cdist(residual, embed.double()).argmin(dim=1)]  # [T, D]
        residual = residual - chosen
