"""Fixtures for the model tests: tiny random VidMusician models (debug backbone + tiny T5), fixed inputs."""

from __future__ import annotations

import pytest
import torch

from model.config import VidMusicianConfig
from model.vidmusician import VidMusician

CLIP_D = 16


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models run fastest on one thread; on a shared 2-core machine torch's spinning OpenMP workers
    made one 15-step generation take 30 s instead of 0.8 s. Restored after each test."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _make_model(**rhythm: object) -> VidMusician:
    return VidMusician.from_config(VidMusicianConfig.debug(clip_dim=CLIP_D, **rhythm), seed=0)


@pytest.fixture
def make_model():
    """make_model(**rhythm_options) -> a fresh debug model (own backbone); same weights in every call."""
    return _make_model


@pytest.fixture
def inputs() -> dict[str, torch.Tensor]:
    """A 2 s window: global [2, 2, D] at 1 fps, rhythm [2, 100] at 50 Hz, codes [2, 4, 100]."""
    g = torch.Generator().manual_seed(1)
    return {
        "global_feats": torch.randn(2, 2, CLIP_D, generator=g),
        "rhythm": torch.rand(2, 100, generator=g),
        "codes": torch.randint(0, 2048, (2, 4, 100), generator=g),
    }


@torch.no_grad()
def _perturb(module: torch.nn.Module, scale: float = 0.5, seed: int = 3) -> None:
    g = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        p.add_(torch.randn(p.shape, generator=g) * scale / max(1, p.shape[-1]) ** 0.5)


@pytest.fixture
def perturb():
    """perturb(module): move weights away from their initialisation, as training would."""
    return _perturb


def _exactly_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equality, NaN (audiocraft's marker for invalid pattern positions) equal to NaN."""
    return torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0))


@pytest.fixture
def exactly_equal():
    return _exactly_equal
