"""open_clip's image tower behind a thin wrapper: one forward gives the pooled embedding and patch tokens.

Models load by open_clip name with a pretrained tag or a local checkpoint file
(``ViT-B-32`` + ``openai`` or ``/models/clip.bin``), by ``local-dir:``/``hf-hub:`` schema, or as the
built-in ``tiny`` config with seeded random weights for tests and demos.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

TINY = "tiny"
_OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ClipEncoderSpec:
    """Which CLIP image tower to load; ``tiny()`` is a 2-layer random ViT for tests."""

    model: str = "ViT-L-14"
    pretrained: str | None = "openai"  # a tag, a checkpoint file, or None for random weights
    seed: int = 0  # used only for random weights

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("clip model name is empty: use e.g. 'ViT-B-32' or 'tiny'")
        if self.model == TINY and self.pretrained not in (None, ""):
            raise ValueError("the built-in 'tiny' CLIP has random weights only: pass pretrained=None")

    @classmethod
    def tiny(cls, seed: int = 0) -> ClipEncoderSpec:
        return cls(model=TINY, pretrained=None, seed=seed)


@dataclass
class ClipImageEncoder:
    """A ViT image tower plus its input normalisation; frames come in already resized and cropped."""

    visual: torch.nn.Module
    image_size: int
    mean: tuple[float, float, float] = _OPENAI_MEAN
    std: tuple[float, float, float] = _OPENAI_STD
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    precision: str = "fp32"  # "fp32" | "fp16" | "bf16" (autocast; half precision on GPU only)

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "fp16", "bf16"):
            raise ValueError(f"precision {self.precision!r}: use fp32, fp16 or bf16")
        self.visual = self.visual.to(self.device).eval()
        self.visual.output_tokens = True
        self._mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1) * 255.0

    @property
    def embed_dim(self) -> int:
        return int(self.visual.output_dim)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frames [B, S, S, 3] uint8 RGB -> (pooled [B, D] float32, patch tokens [B, K, C] float32)."""
        x = torch.as_tensor(frames)
        if x.dim() != 4 or x.shape[-1] != 3 or x.shape[1] != self.image_size or x.shape[2] != self.image_size:
            raise ValueError(
                f"expected frames [B, {self.image_size}, {self.image_size}, 3], got {tuple(x.shape)}: "
                "resize and crop in the decoder"
            )
        x = x.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()  # [B, 3, S, S]
        x = (x - self._mean) / self._std
        with self._autocast():
            pooled, tokens = self.visual(x)  # [B, D], [B, K, C]
        return pooled.float(), tokens.float()


def weights_sha256(encoder: ClipImageEncoder) -> str:
    """sha256 over the image tower's weights (names, shapes, dtypes, bytes): which CLIP made the features,
    recorded by the features stage and checked by `generate` against the checkpoint's."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(encoder.visual.state_dict().items()):
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _tiny_visual(seed: int) -> torch.nn.Module:
    from open_clip.model import CLIPVisionCfg, _build_vision_tower

    cfg = CLIPVisionCfg(layers=2, width=64, head_width=32, patch_size=8, image_size=32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        visual = _build_vision_tower(32, cfg)
        # open_clip leaves most ViT weights at PyTorch's default init; fine for a random tower.
    return visual


def _open_clip_visual(spec: ClipEncoderSpec) -> tuple[torch.nn.Module, tuple, tuple]:
    import open_clip

    pretrained = spec.pretrained or None
    schema = spec.model.startswith(("hf-hub:", "local-dir:"))
    if pretrained and not schema and Path(pretrained).suffix and not Path(pretrained).is_file():
        raise FileNotFoundError(f"CLIP checkpoint {pretrained!r} does not exist")
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec.seed)
            model = open_clip.create_model(spec.model, pretrained=None if schema else pretrained)
    except (RuntimeError, OSError, ValueError) as err:
        raise RuntimeError(
            f"could not load CLIP {spec.model!r} with pretrained={pretrained!r}: {err}. Offline, pass a "
            "local checkpoint file as --pretrained, a 'local-dir:/path' model, or --clip-model tiny"
        ) from err
    pcfg = open_clip.get_model_preprocess_cfg(model)
    return model.visual, tuple(pcfg.get("mean", _OPENAI_MEAN)), tuple(pcfg.get("std", _OPENAI_STD))


def load_clip_encoder(
    spec: ClipEncoderSpec, device: str | torch.device = "cpu", precision: str = "auto"
) -> ClipImageEncoder:
    """Build the image tower for ``spec`` on ``device``; ``auto`` precision is fp16 on CUDA, else fp32."""
    device = torch.device(device)
    if precision == "auto":
        precision = "fp16" if device.type == "cuda" else "fp32"
    if spec.model == TINY:
        visual, mean, std = _tiny_visual(spec.seed), _OPENAI_MEAN, _OPENAI_STD
    else:
        visual, mean, std = _open_clip_visual(spec)
    from open_clip.transformer import VisionTransformer

    if not isinstance(visual, VisionTransformer):
        raise ValueError(
            f"CLIP {spec.model!r} has a {type(visual).__name__} image tower; the rhythm feature needs "
            "patch tokens from an open_clip VisionTransformer (e.g. ViT-B-32, ViT-L-14)"
        )
    if getattr(visual, "attn_pool", None) is not None or visual.pool_type != "tok":
        raise ValueError(f"CLIP {spec.model!r} does not pool a CLS token; Eq. 1 needs one")
    size = visual.image_size
    if size[0] != size[1]:
        raise ValueError(f"CLIP {spec.model!r} expects non-square {size} images; only square inputs are supported")
    log.info("CLIP %s (%s) on %s, %s, %d px", spec.model, spec.pretrained, device, precision, size[0])
    return ClipImageEncoder(visual, int(size[0]), mean, std, device, precision)
