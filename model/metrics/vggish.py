"""VGGish frame embeddings for FAD, as audioldm_eval and frechet-audio-distance compute them.

Both load ``torch.hub.load("harritaylor/torchvggish", "vggish")`` and set ``postprocess = False``
(no PCA) and drop the last ReLU of ``embeddings`` (``use_activation=False``; audioldm_eval
metrics/fad.py:58-63, frechet_audio_distance fad.py:103-108). ``forward(audio, sr)`` turns the audio
into non-overlapping 0.96 s log-mel examples at 16 kHz (``vggish_input.waveform_to_examples``) and
embeds each: one 128-d vector **per 0.96 s frame**, and FAD is the Fréchet distance between all
the generated frames and all the real frames, pooled over the clips (not one vector per clip).

The model is the PyPI ``torchvggish`` package's ``VGG`` (the same layers and state-dict keys as the
hub's), built without its PCA postprocessor (which downloads its parameters) and loaded strictly
from a local ``vggish-10086976.pth``: pass ``--vggish`` or set ``VIDMUSICIAN_VGGISH_CKPT``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.metrics.checkpoints import AudioEmbedder, EmbedderUnavailable, load_into, load_state_dict

SAMPLE_RATE = 16000  # vggish_params.SAMPLE_RATE
FRAME_S = 0.96  # vggish_params.EXAMPLE_WINDOW_SECONDS = EXAMPLE_HOP_SECONDS


@dataclass(frozen=True)
class VggishConfig:
    sample_rate: int = SAMPLE_RATE
    frame_s: float = FRAME_S
    pca: bool = False  # audioldm_eval / frechet-audio-distance: use_pca=False
    last_relu: bool = False  # use_activation=False


def build_vggish():
    """The torchvggish ``VGG`` without its PCA postprocessor (which would download its parameters)."""
    try:
        from torchvggish import torchvggish as tv
    except ImportError as err:
        raise EmbedderUnavailable(f"VGGish needs the torchvggish package: pip install --no-deps torchvggish==0.2 "
                                  f"resampy ({err})") from err
    return tv.VGG(tv.make_layers(), postprocess=False)


class VggishEmbedder(AudioEmbedder):
    """``embed(mono at 16 kHz)`` → frame embeddings [F, 128], one per 0.96 s."""

    @classmethod
    def load(cls, checkpoint: Path, config: VggishConfig | None = None, device: str = "cpu") -> VggishEmbedder:
        import torch

        config = config or VggishConfig()
        module = build_vggish()
        load_into(module, load_state_dict(checkpoint), checkpoint, "VGGish")
        if not config.last_relu:  # audioldm_eval metrics/fad.py:61-63
            module.embeddings = torch.nn.Sequential(*list(module.embeddings.children())[:-1])
        return cls(module, config, checkpoint, device)

    def embed(self, mono: np.ndarray) -> np.ndarray:
        import torch
        from torchvggish import vggish_input

        x = np.asarray(mono, dtype=np.float64)
        if x.ndim != 1 or not np.isfinite(x).all():
            raise ValueError(f"need finite mono audio [N], got shape {x.shape}")
        examples = vggish_input.waveform_to_examples(x, self.sample_rate, return_tensor=True).detach()  # [F, 1, 96, 64]
        if examples.shape[0] == 0:
            return np.zeros((0, 128), dtype=np.float64)
        with torch.inference_mode():
            out = self.module(examples.to(self.device))
        return out.double().cpu().numpy()

    def describe(self) -> dict:
        return {"class": "torchvggish VGG (harritaylor), no PCA, last ReLU dropped", "checkpoint": str(self.checkpoint),
                "sha256": self.sha256, "embedding": f"128-d per {self.config.frame_s} s frame, frames pooled",
                "sample_rate": self.sample_rate}
