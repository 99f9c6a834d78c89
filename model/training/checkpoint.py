"""Checkpoints of the trainable weights only, naming the backbone and the config they belong to.

Format (torch.save, loadable with weights_only=True): {"format", "backbone", "config" (JSON text),
"state" (name -> tensor, exactly `VidMusician.trainable_state()`), "extra" (tensors/plain values the
trainer adds: optimizer state, step)}. The frozen MusicGen and T5 weights are never written.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from dvmset.io import atomic_path
from model.config import VidMusicianConfig
from model.vidmusician import VidMusician

logger = logging.getLogger(__name__)

FORMAT = "vidmusician-trainable/1"


class CheckpointError(RuntimeError):
    """A checkpoint that does not match the model it is loaded into."""


def save_trainable(model: VidMusician, path: str | Path, extra: dict | None = None) -> Path:
    path = Path(path)
    state = {n: p.detach().cpu().clone() for n, p in model.trainable_state().items()}
    pkg = {
        "format": FORMAT,
        "backbone": model.backbone_name,
        "config": json.dumps(model.config.to_dict(), sort_keys=True),
        "state": state,
        "extra": extra or {},
    }
    with atomic_path(path) as tmp:
        torch.save(pkg, tmp)
    logger.info("saved %d trainable tensors (%d parameters) to %s", len(state),
                sum(t.numel() for t in state.values()), path)
    return path


def read_checkpoint(path: str | Path) -> tuple[VidMusicianConfig, dict]:
    """(config, package) of a checkpoint; weights-only loading."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    pkg = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(pkg, dict) or pkg.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a {FORMAT} checkpoint")
    return VidMusicianConfig.from_dict(json.loads(pkg["config"])), pkg


def load_trainable(model: VidMusician, path: str | Path) -> dict:
    """Copy a checkpoint's trainable weights into `model`; returns its `extra` dict."""
    config, pkg = read_checkpoint(path)
    if pkg["backbone"] != model.backbone_name:
        raise CheckpointError(f"{path}: trained on backbone {pkg['backbone']!r}, model has {model.backbone_name!r}")
    if config != model.config:
        raise CheckpointError(f"{path}: config differs from the model's:\n{config}\nvs\n{model.config}")
    own = model.trainable_state()
    missing, unexpected = own.keys() - pkg["state"].keys(), pkg["state"].keys() - own.keys()
    if missing or unexpected:
        raise CheckpointError(f"{path}: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
    with torch.no_grad():
        for name, param in own.items():
            src = pkg["state"][name]
            if src.shape != param.shape:
                raise CheckpointError(f"{path}: {name} has shape {tuple(src.shape)}, model {tuple(param.shape)}")
            param.copy_(src.to(param.device, param.dtype))
    return pkg["extra"]


def load_model(path: str | Path, device: str = "cpu", backbone: str | None = None,
               load_t5_weights: bool = True, *, ema: bool = False) -> VidMusician:
    """Rebuild a model from a checkpoint (any file `vidmusician train` writes, or `save_trainable`'s): its
    config's backbone (or `backbone`, e.g. a local copy of the same MusicGen) and T5, then its trainable
    weights — or, with `ema`, the EMA of them that a training checkpoint holds when EMA was on."""
    config, pkg = read_checkpoint(path)
    model = VidMusician.from_config(config if backbone is None else _with_backbone(config, backbone),
                                    device=device, load_t5_weights=load_t5_weights)
    model.backbone_name = pkg["backbone"]
    model.config = config
    load_trainable(model, path)
    if ema:
        shadow = ((pkg["extra"].get("train") or {}).get("ema") or {}).get("shadow")
        if shadow is None:
            raise CheckpointError(f"{path}: holds no EMA weights (train with --ema DECAY)")
        with torch.no_grad():
            for name, param in model.trainable_state().items():
                param.copy_(shadow[name].to(param.device, param.dtype))
    return model.eval()


def _with_backbone(config: VidMusicianConfig, backbone: str) -> VidMusicianConfig:
    from dataclasses import replace

    return replace(config, backbone=backbone)
