"""Local checkpoints for the metric embedders: nothing is downloaded, a missing file says what to pass."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import os
import pickle
import sys
import types
from pathlib import Path

log = logging.getLogger(__name__)


# Installed without their stale pins (numpy<2; pytorchvideo/decord), like audiocraft (DESIGN.md).
_NO_DEPS_WHEELS = {"laion_clap": "laion-clap==1.1.7", "imagebind": "imagebind-unofficial==0.1.1"}


class EmbedderUnavailable(RuntimeError):
    """An embedder cannot run here (no checkpoint, or its package is missing); the metric is skipped."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def require_checkpoint(path: Path | None, *, what: str, flag: str, env: str) -> Path:
    """The checkpoint path, or ``EmbedderUnavailable`` naming the flag and variable that set it."""
    if path is None:
        raise EmbedderUnavailable(f"no {what} checkpoint given: pass {flag} PATH or set {env}")
    path = Path(path)
    if not path.is_file():
        raise EmbedderUnavailable(f"{what} checkpoint not found at {path}: pass {flag} PATH or set {env}")
    return path


def load_state_dict(path: Path, *, keys: tuple[str, ...] = ("model", "state_dict")) -> dict:
    """A checkpoint's tensors: the first of ``keys`` present in a dict checkpoint, else the dict itself.

    Loads with ``weights_only=True`` first; a checkpoint that pickles other Python objects (some
    published ones hold argparse namespaces or numpy scalars beside the weights) is retried with
    ``weights_only=False`` and a warning: the user named this local file explicitly.
    """
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        log.warning("%s holds more than tensors; loading it with weights_only=False", path)
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: not a state-dict checkpoint (a {type(ckpt).__name__})")
    for key in keys:
        if isinstance(ckpt.get(key), dict):
            return ckpt[key]
    return ckpt


def load_into(module, state: dict, checkpoint: Path, what: str) -> None:
    """Load ``state`` into ``module`` with every key and shape matching, else a ValueError saying so."""
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches raise even when strict=False
        raise ValueError(f"{checkpoint}: not a {what} checkpoint of this architecture ({str(err)[:300]})") from err
    if missing or unexpected:
        raise ValueError(f"{checkpoint}: not a {what} checkpoint of this architecture "
                         f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")


class LoadedEmbedder:
    """A network loaded from a local checkpoint, in eval mode on ``device``, with the file's sha256 (the
    settings fingerprint names it). Each embedder adds ``load`` and its own ``embed``."""

    def __init__(self, module, config, checkpoint: Path, device: str = "cpu") -> None:
        self.module = module.eval().to(device)
        self.config = config
        self.checkpoint = Path(checkpoint)
        self.device = device
        self.sha256 = sha256_file(checkpoint)


class AudioEmbedder(LoadedEmbedder):
    """An embedder of mono audio at its config's ``sample_rate``."""

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate


def strip_prefix(state: dict, prefix: str) -> dict:
    """Drop ``prefix`` (e.g. DataParallel's ``module.``) from every key that has it."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}


def register_bare_package(package: str) -> bool:
    """Register ``package`` as a bare namespace (its ``__init__`` never runs) unless already imported;
    False when it is not installed. Its submodules import as usual."""
    if package in sys.modules:
        return True
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return False
    bare = types.ModuleType(package)
    bare.__path__ = list(spec.submodule_search_locations)
    bare.__spec__ = spec
    sys.modules[package] = bare
    return True


def isolate_laion_clap() -> None:
    """Keep ``import audiocraft`` from running laion_clap's ``__init__``: audiocraft.metrics imports it at
    module level (guarded only against ImportError), and with webdataset, braceexpand and wget installed
    that ``__init__`` goes on to load a BERT tokenizer from the Hub, which fails offline with another
    error. Our CLAP metric uses only its model code (model/metrics/clap.py); audiocraft's own CLAP
    text-consistency metric and conditioner, which need ``laion_clap.CLAP_Module``, are never used here."""
    register_bare_package("laion_clap")


def import_skipping_package_init(package: str, module: str) -> types.ModuleType:
    """Import ``package.module`` without running ``package/__init__.py``.

    laion_clap's ``__init__`` builds nothing we need but imports wget/webdataset and its text
    tokenizer; imagebind's imports pytorchvideo, which no longer imports with torchvision ≥ 0.17.
    The model code itself needs neither, so the package is registered as a bare namespace.
    """
    name = f"{package}.{module}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        wheel = _NO_DEPS_WHEELS.get(package, package)
        raise EmbedderUnavailable(f"the {package} package is not installed: pip install --no-deps {wheel}")
    register_bare_package(package)
    env = dict(os.environ)
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise EmbedderUnavailable(f"{name} cannot be imported here: {err}") from err
    finally:
        _restore_environment(env, name)


def _restore_environment(before: dict[str, str], who: str) -> None:
    """Undo what an import did to ``os.environ``: laion_clap's ``pann_model`` sets ``NUMBA_CACHE_DIR=/tmp/`` at
    import, which would send librosa's numba cache of every process this one starts (workers, a row's
    evaluation) to a second, shared folder (see model.metrics.beats.numba_cache_lock)."""
    changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))
    for key in changed:
        if key in before:
            os.environ[key] = before[key]
        else:
            del os.environ[key]
    if changed:
        log.debug("importing %s changed the environment (%s): put back", who, ", ".join(changed))
