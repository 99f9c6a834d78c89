"""MusicGen's EnCodec (32 kHz mono, 50 Hz, 4 codebooks) behind a thin wrapper: waveform in, tokens out.

`load_codec(name_or_dir)` is the features stage's entry point: the compression model of a MusicGen
checkpoint (``facebook/musicgen-small`` from the hub, or a local dir / file holding
``compression_state_dict.bin``) read by `dvmset.checkpoints` — the same loader the model uses, so any
checkpoint the model loads loads here (xp.cfg as YAML text or as a pickled DictConfig);
``facebook/encodec_32khz`` through audiocraft's ``CompressionModel.get_pretrained``; or ``tiny``: the seeded
random codec of `dvmset.checkpoints.build_tiny_codec`. audiocraft's ``debug_compression_model`` runs at
25 Hz and is refused.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from dvmset.constants import SAMPLE_RATE_HZ, TOKEN_RATE_HZ
from pipeline.errors import RunError

log = logging.getLogger(__name__)

TINY = "tiny"
SAMPLE_RATE = SAMPLE_RATE_HZ
FRAME_RATE = TOKEN_RATE_HZ
NUM_CODEBOOKS = 4
_HF_CODECS = ("facebook/encodec_32khz",)


class CodecLoadError(RunError):
    """The codec named for a features run cannot be loaded: a whole-run error (no clip can be extracted)."""


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


def load_codec(name_or_dir: str = "facebook/musicgen-small", device: str | torch.device = "cpu") -> torch.nn.Module:
    """The compression model by MusicGen name / local dir or file / HF EnCodec name, or ``tiny``; frozen, eval."""
    from dvmset import checkpoints

    try:
        if name_or_dir == TINY:
            model = checkpoints.build_tiny_codec()
        elif name_or_dir in _HF_CODECS:
            from audiocraft.models import CompressionModel

            model = CompressionModel.get_pretrained(name_or_dir, device=device)
        else:
            path = checkpoints.resolve_file(name_or_dir, checkpoints.CODEC_FILE)
            model = checkpoints.load_compression_model(path, device=device)
    except (checkpoints.CheckpointFileError, OSError) as err:
        raise CodecLoadError(
            f"could not load the codec {name_or_dir!r}: {err}. Offline, pass a local MusicGen directory "
            f"(with {checkpoints.CODEC_FILE}) or 'tiny'"
        ) from err
    model = check_codec(model.to(device).eval(), name_or_dir)
    model.requires_grad_(False)
    return model


@torch.inference_mode()
def encode_waveform(model: torch.nn.Module, wav: np.ndarray) -> np.ndarray:
    """wav [T] float32 mono at 32 kHz, T a multiple of 640 -> codes [4, T / 640] int16."""
    wav = np.asarray(wav, dtype=np.float32)
    hop = SAMPLE_RATE // FRAME_RATE
    if wav.ndim != 1 or wav.shape[0] % hop:
        raise ValueError(f"expected a 1-D waveform whose length is a multiple of {hop}, got {wav.shape}")
    device = next(iter([*model.parameters(), *model.buffers()]), torch.empty(0)).device  # a codec may hold no weights
    x = torch.from_numpy(wav).to(device).view(1, 1, -1)  # [1, 1, T]
    codes, _scale = model.encode(x)  # [1, K, T / hop]
    codes = codes[0].cpu()
    if codes.shape != (NUM_CODEBOOKS, wav.shape[0] // hop):
        raise RuntimeError(f"codec returned codes of shape {tuple(codes.shape)} for {wav.shape[0]} samples")
    if int(codes.max()) > np.iinfo(np.int16).max or int(codes.min()) < 0:
        raise RuntimeError("codec tokens do not fit int16")
    return codes.numpy().astype(np.int16)
