"""PaSST logits for KL, as av-benchmark extracts them (github.com/hkchengrex/av-benchmark, commit 050a5cd).

av-benchmark (av_bench/extraction_models.py:42, av_bench/extract.py:158-176): ``hear21passt``'s
``get_basic_model(mode="all")`` (PaSST-S, ``passt_s_swa_p16_128_ap476``) on mono audio at
**32 kHz**, each clip cut or zero-padded to exactly **10 s** (320 000 samples); the output's first
527 values are the AudioSet logits, the other 768 the embedding. KL-PaSST is then
KL(real‖generated) of the softmax of those logits (av_bench/metrics/kl.py:22-29).

The network is hear21passt's own ``PaSST`` class with the mel front end and wrapper of
``get_basic_model`` (hear21passt/base.py:51-57), built here so nothing downloads; the checkpoint
(``passt-s-f128-p16-s10-ap.476-swa.pt``) is loaded strictly from a local file: pass ``--passt``
or set ``VIDMUSICIAN_PASST_CKPT``. Width and depth are read from its shapes (heads = width / 64).
"""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from model.metrics.checkpoints import AudioEmbedder, EmbedderUnavailable, load_into, load_state_dict

SAMPLE_RATE = 32000
WINDOW_S = 10.0  # av_bench/extract.py:166-169: 320 000 samples


@dataclass(frozen=True)
class PasstConfig:
    embed_dim: int = 768  # passt_s_swa_p16_128_ap476 (hear21passt/models/passt.py:728)
    depth: int = 12
    num_heads: int = 12
    classes: int = 527
    input_tdim: int = 998
    stride: int = 10  # get_model's fstride = tstride = 10
    sample_rate: int = SAMPLE_RATE
    window_s: float = WINDOW_S

    @classmethod
    def from_state_dict(cls, state: dict) -> PasstConfig:
        if "cls_token" not in state or "head.1.weight" not in state:
            raise ValueError("not a PaSST state dict (no cls_token / head.1.weight)")
        width = int(state["cls_token"].shape[-1])
        depth = len({m.group(1) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
        return cls(embed_dim=width, depth=depth, num_heads=max(1, width // 64),
                   classes=int(state["head.1.weight"].shape[0]))


def build_passt(config: PasstConfig):
    """hear21passt's ``PasstBasicWrapper(mel, PaSST, mode="all")`` as ``get_basic_model`` builds it."""
    try:
        from hear21passt.models.passt import PaSST
        from hear21passt.models.preprocess import AugmentMelSTFT
        from hear21passt.wrapper import PasstBasicWrapper
    except ImportError as err:
        raise EmbedderUnavailable(f"PaSST needs the hear21passt package: pip install --no-deps hear21passt==0.0.26 "
                                  f"({err})") from err
    mel = AugmentMelSTFT(n_mels=128, sr=32000, win_length=800, hopsize=320, n_fft=1024, freqm=48, timem=192,
                         htk=False, fmin=0.0, fmax=None, norm=1, fmin_aug_range=10, fmax_aug_range=2000)
    net = PaSST(img_size=(128, config.input_tdim), patch_size=16, stride=(config.stride, config.stride), in_chans=1,
                num_classes=config.classes, embed_dim=config.embed_dim, depth=config.depth,
                num_heads=config.num_heads, distilled=True)
    return PasstBasicWrapper(mel=mel, net=net, mode="all")


class PasstEmbedder(AudioEmbedder):
    """``embed(mono at 32 kHz)`` → (embedding [768], logits [527]) of the clip's first 10 s."""

    @classmethod
    def load(cls, checkpoint: Path, config: PasstConfig | None = None, device: str = "cpu") -> PasstEmbedder:
        state = load_state_dict(checkpoint)
        config = config or PasstConfig.from_state_dict(state)
        module = build_passt(config)
        load_into(module.net, state, checkpoint, "PaSST")
        return cls(module, config, checkpoint, device)

    def embed(self, mono: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        x = np.asarray(mono, dtype=np.float32)
        if x.ndim != 1 or not np.isfinite(x).all():
            raise ValueError(f"need finite mono audio [N], got shape {x.shape}")
        n = int(round(self.config.window_s * self.sample_rate))
        x = x[:n] if x.size >= n else np.pad(x, (0, n - x.size))  # av_bench/extract.py:166-169
        with torch.inference_mode(), contextlib.redirect_stdout(io.StringIO()):  # PaSST prints shapes on its first run
            out = self.module(torch.from_numpy(x)[None].to(self.device))[0].double().cpu().numpy()
        k = self.config.classes
        return out[k:], out[:k]

    def describe(self) -> dict:
        return {"class": "hear21passt PaSST in PasstBasicWrapper(mode='all')", "checkpoint": str(self.checkpoint),
                "sha256": self.sha256, "kl_outputs": "the first 527 outputs (logits), softmax",
                **asdict(self.config)}
