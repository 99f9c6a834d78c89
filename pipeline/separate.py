"""Vocal removal with Demucs: music = the sum of every non-vocal stem. **[paper]** vocals removed.

The model comes from ``demucs.pretrained`` machinery (a local repo dir, or the torch-hub /
Hugging Face caches); separation is demucs' own ``apply_model`` (shifts, chunking, overlap,
device). Weights are never fetched where the network is off: the error says how to supply them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import random
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
import yaml

from dvmset.io import atomic_write_bytes, atomic_write_text
from pipeline.audio import check_wav, load_audio, save_audio
from pipeline.errors import RunError

log = logging.getLogger(__name__)

VOCALS = "vocals"
DEBUG_NAME = "debug"  # a tiny random HTDemucs: exercises the real path in tests and demos, separates nothing
_HF_NAMESPACE = "adefossez"


class WeightsUnavailable(RunError):
    """The separator's weights are neither local nor downloadable; the message says how to supply them."""


@dataclass(frozen=True)
class SeparatorConfig:
    """How to load and run Demucs.

    ``segment_s`` overrides the chunk length (None: the model's own; at most the model's for
    HTDemucs); ``jobs`` is apply_model's CPU worker pool over chunks; ``threads`` sets torch's
    intra-op threads while separating (a process-wide setting, restored after); ``seed`` fixes
    the random shifts so a re-run writes the same music; ``allow_download`` lets demucs fetch
    missing weights (never tried while ``HF_HUB_OFFLINE`` is set or the hosts do not resolve).
    """

    name: str = "htdemucs"
    repo: Path | None = None
    shifts: int = 1
    segment_s: float | None = None
    overlap: float = 0.25
    device: str = "cpu"
    jobs: int = 0
    split: bool = True
    threads: int | None = None
    seed: int | None = 0
    allow_download: bool = True

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("separator name must be non-empty (e.g. 'htdemucs')")
        if self.repo is not None:
            object.__setattr__(self, "repo", Path(self.repo))
        if self.shifts < 0:
            raise ValueError(f"shifts must be >= 0, got {self.shifts}")
        if self.segment_s is not None and not self.segment_s > 0:
            raise ValueError(f"segment_s must be positive or None, got {self.segment_s}")
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")
        if self.jobs < 0:
            raise ValueError(f"jobs must be >= 0, got {self.jobs}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {self.threads}")
        try:
            torch.device(self.device)
        except RuntimeError as exc:
            raise ValueError(f"device {self.device!r} is not a torch device (cpu, cuda, cuda:1, ...)") from exc

    @classmethod
    def debug(cls) -> SeparatorConfig:
        """The tiny random model, one thread, no shifts: fast on a shared CPU."""
        return cls(name=DEBUG_NAME, shifts=0, threads=1)


@dataclass(frozen=True)
class Separation:
    """``music`` [C, N] at the input's rate and channel count; ``vocal_energy`` = E(vocals) / E(mix).

    ``energy_per_s`` [2, ceil(N / sr)]: E(vocals) and E(mix) in each second of the input, so the
    residual-vocal share of any window (a clip) is ``pipeline.qc.vocal_share(energy_per_s, start_s, end_s)``.
    """

    music: np.ndarray
    vocal_energy: float
    energy_per_s: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.music, np.ndarray) or self.music.ndim != 2:
            raise ValueError(f"music must be a [C, N] array, got {getattr(self.music, 'shape', None)}")
        if not (np.isfinite(self.vocal_energy) and self.vocal_energy >= 0):
            raise ValueError(f"vocal_energy must be finite and >= 0, got {self.vocal_energy}")


# ----------------------------------------------------------------------------------------- loading


def tiny_htdemucs(samplerate: int = 44100, *, segment_s: float = 2.0, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised HTDemucs small enough for CPU tests (~90 k parameters)."""
    from demucs.htdemucs import HTDemucs

    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = HTDemucs(
            ["drums", "bass", "other", VOCALS], samplerate=samplerate, segment=segment_s,
            channels=4, depth=4, dconv_comp=2, t_layers=1, t_heads=2, t_hidden_scale=1.0,
        )  # fmt: skip
    finally:
        torch.random.set_rng_state(gen_state)
    return model.eval()


def save_separator_repo(model: torch.nn.Module, repo: Path, name: str) -> Path:
    """Write ``model`` as a demucs local repo: ``{sig}-{sha8}.th`` (demucs' package) + ``{name}.yaml``.

    The layout ``get_model(name, repo=dir)`` reads; real weights go the same way (copy the
    ``.th`` files and the bag's yaml from a machine that has them).
    """
    from demucs.states import get_state

    args, kwargs = model._init_args_kwargs  # recorded by demucs' @capture_init
    package = {"klass": type(model), "args": args, "kwargs": kwargs, "state": get_state(model, None)}
    buf = io.BytesIO()
    torch.save(package, buf)
    data = buf.getvalue()
    sig = hashlib.sha1(name.encode()).hexdigest()[:8]
    repo = Path(repo)
    atomic_write_bytes(repo / f"{sig}-{hashlib.sha256(data).hexdigest()[:8]}.th", data)
    atomic_write_text(repo / f"{name}.yaml", yaml.safe_dump({"models": [sig]}))
    return repo


def _howto(name: str, why: str) -> str:
    files = _remote_files(name)
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    listed = ", ".join(files.values()) if files else "the .th files of that model"
    return (
        f"Demucs weights for {name!r} are not available ({why}). Supply them in one of two ways:\n"
        f"  1. the torch-hub cache: put {listed} in {hub}/ (TORCH_HOME moves it), or the Hugging Face "
        f"cache with {_HF_NAMESPACE}/{_hf_repo(name)} (HF_HOME moves it);\n"
        f"  2. a local repo dir holding {name}.yaml (`models: [<sig>, ...]`) and <sig>[-<sha>].th files, "
        f"passed as --demucs-repo DIR (SeparatorConfig.repo).\n"
        f"Or run --separator none to keep the original audio."
    )


def _remote_files(name: str) -> dict[str, str]:
    """sig -> file name of the weights demucs' legacy repo lists for ``name`` (a bag or one sig)."""
    from demucs.pretrained import REMOTE_ROOT, _parse_remote_files

    urls = _parse_remote_files(REMOTE_ROOT / "files.txt")
    bag = REMOTE_ROOT / f"{name}.yaml"
    sigs = yaml.safe_load(bag.read_text())["models"] if bag.is_file() else [name]
    return {sig: urls[sig].rsplit("/", 1)[1] for sig in sigs if sig in urls}


def _hf_repo(name: str) -> str:
    from demucs.hf import hf_repo_name

    return hf_repo_name(name.split("/", 1)[-1])


def _from_torch_hub_cache(name: str) -> torch.nn.Module | None:
    from demucs.pretrained import REMOTE_ROOT, _parse_remote_files
    from demucs.repo import AnyModelRepo, BagOnlyRepo, RemoteRepo

    files = _remote_files(name)
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    if not files or not all((hub / f).is_file() for f in files.values()):
        return None
    model_repo = RemoteRepo(_parse_remote_files(REMOTE_ROOT / "files.txt"))
    # torch.hub finds the cached files and checks their hash: no download happens here.
    return AnyModelRepo(model_repo, BagOnlyRepo(REMOTE_ROOT, model_repo)).get_model(name)


def _from_hf_cache(name: str, cache_dir: Path | None = None) -> torch.nn.Module | None:
    from demucs.apply import BagOfModels
    from demucs.hf import load_safetensors_model
    from huggingface_hub import try_to_load_from_cache

    namespace, _, short = name.rpartition("/")
    repo_id = f"{namespace or _HF_NAMESPACE}/{_hf_repo(short)}"
    bag_file = try_to_load_from_cache(repo_id, f"{short}.yaml", cache_dir=cache_dir)
    if not isinstance(bag_file, str):
        return None
    bag = yaml.safe_load(Path(bag_file).read_text())
    paths = [try_to_load_from_cache(repo_id, f"{sig}.safetensors", cache_dir=cache_dir) for sig in bag["models"]]
    if not all(isinstance(p, str) for p in paths):
        return None
    return BagOfModels([load_safetensors_model(p) for p in paths], bag.get("weights"), bag.get("segment"))


def _from_repo(name: str, repo: Path) -> torch.nn.Module:
    from demucs.pretrained import get_model

    if not repo.is_dir():
        raise WeightsUnavailable(_howto(name, f"--demucs-repo {repo} is not a directory"))
    present = {p.stem.rsplit("-", 1)[0] for p in repo.glob("*.th")} | {p.stem for p in repo.glob("*.th")} | {p.stem for p in repo.glob("*.yaml")}
    if name not in present:
        raise WeightsUnavailable(_howto(name, f"{repo} holds neither {name}.yaml nor {name}.th"))
    return get_model(name, repo=repo)


def _network_off() -> str | None:
    """Why a download cannot work now, or None; never waits on retries (a DNS look-up at most)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    from demucs.pretrained import ROOT_URL
    from huggingface_hub import constants

    for url in (constants.ENDPOINT, ROOT_URL):
        try:
            socket.getaddrinfo(urlparse(url).hostname, 443)
            return None
        except OSError:
            continue
    return "no network: the model hosts do not resolve"


def load_separator(cfg: SeparatorConfig, *, hf_cache_dir: Path | None = None) -> torch.nn.Module:
    """Load ``cfg.name`` from ``cfg.repo``, else the local caches, else (if allowed) the network.

    Raises WeightsUnavailable, with how to supply the weights, when none of these has them.
    """
    if cfg.name == DEBUG_NAME:
        return tiny_htdemucs()
    try:
        if cfg.repo is not None:
            model = _from_repo(cfg.name, cfg.repo)
        else:
            model = _from_torch_hub_cache(cfg.name)
            if model is None:
                model = _from_hf_cache(cfg.name, hf_cache_dir)
            if model is None:
                why = "downloads are off" if not cfg.allow_download else _network_off()
                if why:
                    raise WeightsUnavailable(_howto(cfg.name, why))
                from demucs.pretrained import get_model

                log.info("downloading Demucs weights for %s", cfg.name)
                model = get_model(cfg.name)
    except WeightsUnavailable:
        raise
    except SystemExit as exc:  # demucs' fatal() exits; a library must not end the worker
        raise WeightsUnavailable(_howto(cfg.name, f"demucs gave up: {exc}")) from exc
    except (OSError, RuntimeError, KeyError, ValueError, ImportError) as exc:
        raise WeightsUnavailable(_howto(cfg.name, f"{type(exc).__name__}: {exc}")) from exc
    return model.eval()


# -------------------------------------------------------------------------------------- separating


@contextlib.contextmanager
def _run_context(threads: int | None, seed: int | None) -> Iterator[None]:
    old_threads = torch.get_num_threads()
    old_random = random.getstate()
    if threads is not None:
        torch.set_num_threads(threads)
    if seed is not None:
        random.seed(seed)  # apply_model draws its shift offsets from `random`
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        if seed is not None:
            random.setstate(old_random)


def _max_segment(model: torch.nn.Module) -> float:
    from demucs.apply import BagOfModels
    from demucs.htdemucs import HTDemucs

    if isinstance(model, BagOfModels):
        return model.max_allowed_segment
    if isinstance(model, HTDemucs):
        return float(model.segment)
    return float("inf")


def separate(model: torch.nn.Module, wav: np.ndarray, sr: int, cfg: SeparatorConfig) -> Separation:
    """Split ``wav`` [C, N] with demucs' ``apply_model``; music = sum of the non-vocal stems.

    Resamples to the model's rate and back, duplicates mono to the model's channels and averages
    back, and normalises the input by the mid channel's mean/std as demucs does (undone after).
    """
    import julius
    from demucs.apply import apply_model

    check_wav(wav, sr)
    channels, length = wav.shape
    sources = list(model.sources)
    if VOCALS not in sources:
        raise ValueError(f"the separator has no {VOCALS!r} stem (its sources: {sources})")
    model_ch, model_sr = int(model.audio_channels), int(model.samplerate)
    if channels not in (1, model_ch):
        raise ValueError(f"audio has {channels} channels; the separator takes 1 or {model_ch} (load with channels={model_ch})")
    if cfg.segment_s is not None and cfg.segment_s > _max_segment(model):
        raise ValueError(f"segment_s={cfg.segment_s} exceeds this model's maximum {_max_segment(model):.2f} s")

    mix = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))  # [C, N]
    mix = mix.expand(model_ch, length) if channels == 1 else mix  # [Cm, N]
    if sr != model_sr:
        mix = julius.resample_frac(mix, sr, model_sr)  # [Cm, M]
    ref = mix.mean(0)  # [M]
    mean, std = ref.mean(), ref.std() + 1e-8
    with _run_context(cfg.threads, cfg.seed):
        stems = apply_model(
            model, ((mix - mean) / std)[None], shifts=cfg.shifts, split=cfg.split, overlap=cfg.overlap,
            device=cfg.device, num_workers=cfg.jobs, segment=cfg.segment_s, progress=False,
        )[0]  # [S, Cm, M]
    stems.mul_(std).add_(mean)  # in place: the stems are the largest array here (4× the mix)
    vocals = stems[sources.index(VOCALS)]  # [Cm, M]
    music = stems.sum(0) - vocals  # [Cm, M]
    per_s = torch.stack([_energy_per_second(vocals, model_sr), _energy_per_second(mix, model_sr)]).numpy()
    mix_energy = float(mix.double().pow(2).sum())
    vocal_energy = float(vocals.double().pow(2).sum()) / mix_energy if mix_energy > 1e-12 else 0.0
    if sr != model_sr:
        music = julius.resample_frac(music, model_sr, sr, output_length=length)  # [Cm, N]
    if channels == 1:
        music = music.mean(0, keepdim=True)  # [1, N]
    return Separation(music=music.numpy().astype(np.float32), vocal_energy=vocal_energy, energy_per_s=per_s)


def _energy_per_second(x: torch.Tensor, sr: int) -> torch.Tensor:
    """[C, M] -> [ceil(M / sr)] float64: the signal's energy (all channels) in each second."""
    e = x.double().pow(2).sum(0)  # [M]
    seconds = -(-e.shape[0] // sr)
    return torch.nn.functional.pad(e, (0, seconds * sr - e.shape[0])).view(seconds, sr).sum(1)



def separate_file(model: torch.nn.Module, src: Path, dest_wav: Path, cfg: SeparatorConfig) -> Separation:
    """load_audio → separate → save_audio(dest_wav), written atomically; returns the Separation."""
    wav, sr = load_audio(src, max_channels=int(model.audio_channels))  # ffmpeg downmixes 5.1 etc.
    result = separate(model, wav, sr, cfg)
    save_audio(dest_wav, result.music, sr)
    log.info("separated %s: vocal energy %.3f", Path(src).name, result.vocal_energy)
    return result
