"""Invariant 5: at MusicGen-medium scale the trainable count is the paper's 24.79 M (+-2 %).
Built on the meta device: nothing is allocated, nothing is downloaded."""

from __future__ import annotations

import pytest
import torch

from model.backbone import build_backbone
from model.config import VidMusicianConfig
from model.semantic import build_t5_encoder
from model.vidmusician import VidMusician


def _meta_model(config: VidMusicianConfig, scale: str) -> VidMusician:
    backbone = build_backbone(scale, device="meta", with_codec=False)
    with torch.device("meta"):
        t5 = build_t5_encoder(config.semantic.t5, load_weights=False)
    return VidMusician(config, backbone, t5)


def _count(model: VidMusician, prefix: str = "") -> int:
    return sum(p.numel() for n, p in model.trainable_state().items() if n.startswith(prefix))


def test_medium_matches_the_paper():
    model = _meta_model(VidMusicianConfig.medium(clip_dim=768), "medium")
    assert model.lm.dim == 1536 and len(model.lm.transformer.layers) == 48
    assert len(model.rhythm.chain) == 9  # 48 layers -> 12 blocks of 4 -> first 3/4
    assert next(model.lm.parameters()).device.type == "meta"
    total = model.num_trainable()
    assert abs(total - 24.79e6) <= 0.02 * 24.79e6, total
    # the breakdown documented in model/config.py
    assert _count(model, "rhythm.") == 3_072 + 9 * (1536 * 1536 + 1536)
    assert _count(model, "semantic.output_proj.") == 768 * 1536 + 1536
    assert _count(model, "semantic.embedding_manager.") == 3 * (768 * 768 + 768)
    assert _count(model, "semantic.t5.") == 12 * 2 * 16 * (768 + 768)
    assert total == 24_793_344


@pytest.mark.parametrize("scale, expected", [("small", 7_349_504), ("large", 41_707_776)])
def test_small_and_large_counts(scale, expected):
    model = _meta_model(getattr(VidMusicianConfig, scale)(clip_dim=768), scale)
    assert model.num_trainable() == expected


def test_clip_dim_changes_only_the_embedding_manager():
    """ViT-B/32 features (D = 512) instead of ViT-L/14 (768): 196,608 fewer, still within 2 %."""
    total = _meta_model(VidMusicianConfig.medium(clip_dim=512), "medium").num_trainable()
    assert total == 24_793_344 - 256 * 768
    assert abs(total - 24.79e6) <= 0.02 * 24.79e6


def test_musicongen_style_counts_self_attention():
    model = _meta_model(VidMusicianConfig.medium().with_rhythm(style="musicongen"), "medium")
    attn = 4 * 1536 * 1536  # q, k, v, out projections without bias (MusicGen's bias_attn=False)
    assert _count(model, "rhythm.") == 3_072
    assert _count(model, "lm.") == 9 * attn
