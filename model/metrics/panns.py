"""PANNs Cnn14 (Kong et al. 2020) for FD (2048-d embedding) and KL (527 AudioSet logits).

The published architecture, written here so the published checkpoints load with their own keys
(``spectrogram_extractor.stft.conv_real.weight`` … ``fc_audioset.bias``) without
panns_inference, whose import fetches a label file with wget and needs matplotlib. The default
is audioldm_eval's ``Cnn14_16k`` (16 kHz, 512-sample window, 160 hop, 64 mel bands 50–8000 Hz);
``PannsConfig.cnn14_32k()`` is the 32 kHz ``Cnn14_mAP=0.431`` model. Whole clips go through one
forward pass (global pooling), mono, resampled by the caller to ``sample_rate``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from model.metrics.checkpoints import (
    AudioEmbedder,
    EmbedderUnavailable,
    load_into,
    load_state_dict,
    strip_prefix,
)


@dataclass(frozen=True)
class PannsConfig:
    sample_rate: int = 16000
    window_size: int = 512
    hop_size: int = 160
    mel_bins: int = 64
    fmin: float = 50.0
    fmax: float = 8000.0
    classes: int = 527
    widths: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)  # the six conv blocks; the last is the embedding

    def __post_init__(self) -> None:
        if len(self.widths) != 6 or min(self.widths) < 1:
            raise ValueError(f"Cnn14 has six conv blocks of positive width, got {self.widths}")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(f"need 0 <= fmin < fmax <= sample_rate/2, got {self.fmin}, {self.fmax}")

    @classmethod
    def cnn14_32k(cls) -> PannsConfig:
        return cls(sample_rate=32000, window_size=1024, hop_size=320, fmax=14000.0)

    @classmethod
    def tiny(cls) -> PannsConfig:
        return cls(widths=(4, 4, 8, 8, 8, 16))

    @property
    def embedding_dim(self) -> int:
        return self.widths[-1]

    @classmethod
    def from_state_dict(cls, state: dict) -> PannsConfig:
        """The published variant a checkpoint was trained as, read from its tensor shapes.

        The mel filterbank's rows give the FFT window (257 → the 16 kHz ``Cnn14_16k``, 513 → the
        32 kHz model); the conv and head shapes give the widths and the class count.
        """
        try:
            n_freq, mel_bins = state["logmel_extractor.melW"].shape
            widths = tuple(int(state[f"conv_block{i}.conv1.weight"].shape[0]) for i in range(1, 7))
            classes = int(state["fc_audioset.weight"].shape[0])
        except KeyError as err:
            raise ValueError(f"not a PANNs Cnn14 checkpoint: no {err.args[0]} tensor") from err
        window = 2 * (int(n_freq) - 1)
        presets = {512: cls(), 1024: cls.cnn14_32k()}
        if window not in presets:
            raise ValueError(f"a Cnn14 with a {window}-sample window is neither Cnn14_16k (512) nor the 32 kHz model (1024)")
        return replace(presets[window], mel_bins=int(mel_bins), widths=widths, classes=classes)


def _build_cnn14(config: PannsConfig):
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torchlibrosa.stft import LogmelFilterBank, Spectrogram

    class ConvBlock(nn.Module):
        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False)
            self.conv2 = nn.Conv2d(cout, cout, kernel_size=3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.bn2 = nn.BatchNorm2d(cout)

        def forward(self, x, pool: tuple[int, int]):
            x = F.relu(self.bn1(self.conv1(x)))
            x = F.relu(self.bn2(self.conv2(x)))
            return F.avg_pool2d(x, kernel_size=pool)

    class Cnn14(nn.Module):
        """Cnn14 in eval form (no SpecAugment, no mixup): waveform [B, N] → embedding, logits."""

        def __init__(self, cfg: PannsConfig) -> None:
            super().__init__()
            self.spectrogram_extractor = Spectrogram(
                n_fft=cfg.window_size, hop_length=cfg.hop_size, win_length=cfg.window_size, window="hann",
                center=True, pad_mode="reflect", freeze_parameters=True)
            self.logmel_extractor = LogmelFilterBank(
                sr=cfg.sample_rate, n_fft=cfg.window_size, n_mels=cfg.mel_bins, fmin=cfg.fmin, fmax=cfg.fmax,
                ref=1.0, amin=1e-10, top_db=None, freeze_parameters=True)
            self.bn0 = nn.BatchNorm2d(cfg.mel_bins)
            widths = (1, *cfg.widths)
            for i in range(6):
                setattr(self, f"conv_block{i + 1}", ConvBlock(widths[i], widths[i + 1]))
            self.fc1 = nn.Linear(cfg.widths[-1], cfg.widths[-1], bias=True)
            self.fc_audioset = nn.Linear(cfg.widths[-1], cfg.classes, bias=True)

        def forward(self, wav):  # wav [B, N]
            x = self.logmel_extractor(self.spectrogram_extractor(wav))  # [B, 1, T, mel]
            x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
            for i in range(6):
                x = getattr(self, f"conv_block{i + 1}")(x, (2, 2) if i < 5 else (1, 1))  # [B, C, T', F']
            x = torch.mean(x, dim=3)  # [B, C, T']
            x = torch.max(x, dim=2).values + torch.mean(x, dim=2)  # [B, C]
            embedding = F.relu(self.fc1(x))  # [B, D]
            return embedding, self.fc_audioset(embedding)  # [B, D], [B, classes] (pre-sigmoid)

    return Cnn14(config)


class PannsEmbedder(AudioEmbedder):
    """A loaded Cnn14: ``embed(mono)`` → (embedding [D], logits [classes])."""


    @classmethod
    def load(cls, checkpoint: Path, config: PannsConfig | None = None, device: str = "cpu") -> PannsEmbedder:
        """Load a published PANNs checkpoint (``{"model": state_dict, ...}``) strictly into Cnn14.

        Without ``config`` the variant is read from the checkpoint's shapes.
        """
        state = strip_prefix(load_state_dict(checkpoint), "module.")
        config = config or PannsConfig.from_state_dict(state)
        try:
            module = _build_cnn14(config)
        except ImportError as err:
            raise EmbedderUnavailable(f"PANNs needs torchlibrosa (the 'model' extra): {err}") from err
        load_into(module, state, checkpoint, "PANNs Cnn14")
        return cls(module, config, checkpoint, device)

    def embed(self, mono: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32))[None].to(self.device)  # [1, N]
        with torch.inference_mode():
            emb, logits = self.module(x)
        return emb[0].double().cpu().numpy(), logits[0].double().cpu().numpy()

    def describe(self) -> dict:
        return {"class": "Cnn14 (PANNs, eval form)", "checkpoint": str(self.checkpoint), "sha256": self.sha256,
                "embedding": f"fc1 ReLU output, {self.config.embedding_dim}-d",
                "kl_outputs": "fc_audioset logits, softmax", **asdict(self.config)}
