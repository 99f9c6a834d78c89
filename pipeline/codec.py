"""MusicGen's EnCodec (32 kHz mono, 50 Hz, 4 codebooks) behind a thin wrapper: waveform in, tokens out.

Loads the compression model of a MusicGen checkpoint (``facebook/musicgen-small`` or a local dir
holding ``compression_state_dict.bin``) through audiocraft's own loader, ``facebook/encodec_32khz``
through ``CompressionModel.get_pretrained``, or ``tiny``: a seeded random audiocraft
``EncodecModel`` with MusicGen's geometry (hop 640 at 32 kHz = 50 Hz, 4 codebooks of 2048).
audiocraft's ``debug_compression_model`` runs at 25 Hz and is refused.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

TINY = "tiny"
SAMPLE_RATE = 32_000
FRAME_RATE = 50
NUM_CODEBOOKS = 4
_HF_CODECS = ("facebook/encodec_32khz",)


def tiny_codec(seed: int = 0) -> torch.nn.Module:
    """A random audiocraft EncodecModel with MusicGen's rates: 32 kHz, ratios 8*5*4*4 = 640 -> 50 Hz."""
    from audiocraft.models.encodec import EncodecModel
    from audiocraft.modules import SEANetDecoder, SEANetEncoder
    from audiocraft.quantization import ResidualVectorQuantizer

    seanet = {"n_filters": 4, "n_residual_layers": 1, "dimension": 32, "ratios": [8, 5, 4, 4]}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        quantizer = ResidualVectorQuantizer(dimension=32, bins=2048, n_q=NUM_CODEBOOKS, kmeans_iters=1)
        encoder = SEANetEncoder(**seanet)
        with torch.no_grad():  # codebooks drawn from the encoder's own outputs on 4 s of noise
            quantizer(encoder(0.1 * torch.randn(1, 1, 4 * SAMPLE_RATE)), FRAME_RATE)
        model = EncodecModel(
            encoder, SEANetDecoder(**seanet), quantizer,
            frame_rate=FRAME_RATE, sample_rate=SAMPLE_RATE, channels=1,
        )
    return model.eval()


def check_codec(model: torch.nn.Module, name: str = "codec") -> torch.nn.Module:
    """Refuse a compression model whose rates would misalign codes with the 50 Hz rhythm feature."""
    got = (int(model.sample_rate), float(model.frame_rate), int(model.channels), int(model.num_codebooks))
    want = (SAMPLE_RATE, float(FRAME_RATE), 1, NUM_CODEBOOKS)
    if got != want:
        raise ValueError(
            f"{name}: sample_rate/frame_rate/channels/codebooks = {got}, need {want} (MusicGen's EnCodec); "
            "audiocraft's debug codec runs at 25 Hz: use 'tiny' for tests"
        )
    return model


def load_codec(name: str = "facebook/musicgen-small", device: str | torch.device = "cpu") -> torch.nn.Module:
    """The compression model by MusicGen name / local dir / HF EnCodec name, or ``tiny``; frozen, eval."""
    if name == TINY:
        model = tiny_codec()
    else:
        from audiocraft.models import CompressionModel, loaders

        try:
            if name in _HF_CODECS:
                model = CompressionModel.get_pretrained(name, device=device)
            else:
                if Path(name).exists() and not (Path(name) / "compression_state_dict.bin").exists() \
                        and not Path(name).is_file():
                    raise FileNotFoundError(f"{name}: no compression_state_dict.bin in this directory")
                model = loaders.load_compression_model(name, device=device)
        except (OSError, RuntimeError, ValueError) as err:
            raise RuntimeError(
                f"could not load the codec {name!r}: {err}. Offline, pass a local MusicGen directory "
                "(with compression_state_dict.bin) or 'tiny'"
            ) from err
    model = check_codec(model.to(device).eval(), name)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@torch.inference_mode()
def encode_waveform(model: torch.nn.Module, wav: np.ndarray) -> np.ndarray:
    """wav [T] float32 mono at 32 kHz, T a multiple of 640 -> codes [4, T / 640] int16."""
    wav = np.asarray(wav, dtype=np.float32)
    hop = SAMPLE_RATE // FRAME_RATE
    if wav.ndim != 1 or wav.shape[0] % hop:
        raise ValueError(f"expected a 1-D waveform whose length is a multiple of {hop}, got {wav.shape}")
    device = next(model.parameters()).device
    x = torch.from_numpy(wav).to(device).view(1, 1, -1)  # [1, 1, T]
    codes, _scale = model.encode(x)  # [1, K, T / hop]
    codes = codes[0].cpu()
    if codes.shape != (NUM_CODEBOOKS, wav.shape[0] // hop):
        raise RuntimeError(f"codec returned codes of shape {tuple(codes.shape)} for {wav.shape[0]} samples")
    if int(codes.max()) > np.iinfo(np.int16).max or int(codes.min()) < 0:
        raise RuntimeError("codec tokens do not fit int16")
    return codes.numpy().astype(np.int16)
