"""The loaders take the PUBLISHED checkpoints' layouts: a state dict saved from the real classes (random
weights, full size) with exactly the keys and shapes of ``vggish-10086976.pth`` (harritaylor/torchvggish
release v0.1) and ``passt-s-f128-p16-s10-ap.476-swa.pt`` (kkoutini/PaSST release v0.0.1-audioset), and
give the reference packages' own outputs on it.

The published files cannot be downloaded here; their key names and shapes are transcribed below from
the classes that load them unchanged: torchvggish/torchvggish.py ``VGG.__init__`` + ``make_layers``
(``vggish()`` calls ``model.load_state_dict(state_dict)``, strict, on the downloaded file), and
hear21passt/models/passt.py ``PaSST.__init__`` for ``passt_s_swa_p16_128_ap476`` (patch 16, stride
10, 128 x 998 input, width 768, depth 12, distilled; ``checkpoint_filter_fn`` passes a file that has
``time_new_pos_embed`` through as it is), so the counts below (18 tensors / 72,141,184 values for
VGGish, 159 tensors / 86,153,758 values for PaSST-S) are those of the published files.
"""

from __future__ import annotations

import contextlib
import functools
import io

import numpy as np
import pytest
import torch

tv = pytest.importorskip("torchvggish.torchvggish", reason="torchvggish not installed (make install-test)")
passt_models = pytest.importorskip("hear21passt.models.passt", reason="hear21passt not installed (make install-test)")

# vggish-10086976.pth: conv layers at Sequential indices 0, 3, 6, 8, 11, 13 (ReLU/MaxPool between), then the
# 12288 -> 4096 -> 4096 -> 128 fully connected stack at embeddings.0/2/4; no PCA tensors (a separate file)
VGGISH_PUBLISHED = {
    "features.0.weight": (64, 1, 3, 3), "features.0.bias": (64,),
    "features.3.weight": (128, 64, 3, 3), "features.3.bias": (128,),
    "features.6.weight": (256, 128, 3, 3), "features.6.bias": (256,),
    "features.8.weight": (256, 256, 3, 3), "features.8.bias": (256,),
    "features.11.weight": (512, 256, 3, 3), "features.11.bias": (512,),
    "features.13.weight": (512, 512, 3, 3), "features.13.bias": (512,),
    "embeddings.0.weight": (4096, 12288), "embeddings.0.bias": (4096,),
    "embeddings.2.weight": (4096, 4096), "embeddings.2.bias": (4096,),
    "embeddings.4.weight": (128, 4096), "embeddings.4.bias": (128,),
}


def _passt_published() -> dict[str, tuple[int, ...]]:
    """passt-s-f128-p16-s10-ap.476-swa.pt: tokens, the factorised positional embeddings (12 frequency x 99
    time patches of a 128 x 998 mel at stride 10), 12 pre-norm blocks, the final norm and both heads."""
    d = 768
    keys = {"cls_token": (1, 1, d), "dist_token": (1, 1, d), "new_pos_embed": (1, 2, d),
            "freq_new_pos_embed": (1, d, 12, 1), "time_new_pos_embed": (1, d, 1, 99),
            "patch_embed.proj.weight": (d, 1, 16, 16), "patch_embed.proj.bias": (d,)}
    for b in range(12):
        keys |= {f"blocks.{b}.norm1.weight": (d,), f"blocks.{b}.norm1.bias": (d,),
                 f"blocks.{b}.attn.qkv.weight": (3 * d, d), f"blocks.{b}.attn.qkv.bias": (3 * d,),
                 f"blocks.{b}.attn.proj.weight": (d, d), f"blocks.{b}.attn.proj.bias": (d,),
                 f"blocks.{b}.norm2.weight": (d,), f"blocks.{b}.norm2.bias": (d,),
                 f"blocks.{b}.mlp.fc1.weight": (4 * d, d), f"blocks.{b}.mlp.fc1.bias": (4 * d,),
                 f"blocks.{b}.mlp.fc2.weight": (d, 4 * d), f"blocks.{b}.mlp.fc2.bias": (d,)}
    return keys | {"norm.weight": (d,), "norm.bias": (d,), "head.0.weight": (d,), "head.0.bias": (d,),
                   "head.1.weight": (527, d), "head.1.bias": (527,), "head_dist.weight": (527, d),
                   "head_dist.bias": (527,)}


PASST_PUBLISHED = _passt_published()


def _layout(state: dict) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def test_the_transcribed_layouts_have_the_published_sizes():
    assert len(VGGISH_PUBLISHED) == 18 and sum(np.prod(s) for s in VGGISH_PUBLISHED.values()) == 72_141_184
    assert len(PASST_PUBLISHED) == 159 and sum(np.prod(s) for s in PASST_PUBLISHED.values()) == 86_153_758


def test_vggish_loader_takes_the_published_layout_and_gives_torchvggish_frames(tmp_path):
    from torchvggish import vggish_input

    from model.metrics.vggish import VggishEmbedder

    torch.manual_seed(1)
    real = tv.VGG(tv.make_layers(), postprocess=False)  # what torchvggish.vggish() loads the file into
    state = real.state_dict()
    assert _layout(state) == VGGISH_PUBLISHED  # the real class's keys ARE the published file's
    ckpt = tmp_path / "vggish-10086976.pth"
    torch.save(state, ckpt)  # a bare state dict, as the release file is
    emb = VggishEmbedder.load(ckpt)
    audio = np.random.default_rng(2).normal(scale=0.1, size=int(2.9 * 16000))
    frames = emb.embed(audio)
    real.embeddings = torch.nn.Sequential(*list(real.embeddings.children())[:-1])  # use_activation=False
    with torch.inference_mode():
        want = real.eval()(vggish_input.waveform_to_examples(audio, 16000).detach()).double().numpy()
    assert frames.shape == (3, 128)
    np.testing.assert_allclose(frames, want, rtol=1e-5, atol=1e-6)
    del state["embeddings.4.bias"]  # one tensor short of the published file: refused, not half-loaded
    torch.save(state, ckpt)
    with pytest.raises(ValueError, match="missing \\['embeddings.4.bias'\\]"):
        VggishEmbedder.load(ckpt)


def test_passt_loader_takes_the_published_layout_and_gives_hear21passts_outputs(tmp_path, monkeypatch):
    import hear21passt.base as passt_base

    from model.metrics.passt import PasstConfig, PasstEmbedder

    # hear21passt's own get_basic_model(mode="all"), as av-benchmark calls it, but with random weights
    # instead of the download (pretrained=False is get_model's own switch)
    monkeypatch.setattr(passt_base, "get_model_passt", functools.partial(passt_models.get_model, pretrained=False))
    torch.manual_seed(3)
    with contextlib.redirect_stdout(io.StringIO()):
        ref = passt_base.get_basic_model(mode="all")
    state = ref.net.state_dict()
    assert _layout(state) == PASST_PUBLISHED
    ckpt = tmp_path / "passt-s-f128-p16-s10-ap.476-swa.pt"
    torch.save(state, ckpt)
    emb = PasstEmbedder.load(ckpt)
    assert emb.config == PasstConfig()  # width, depth, heads, classes read back from the published shapes
    audio = np.random.default_rng(4).normal(scale=0.1, size=10 * 32000).astype(np.float32)
    feats, logits = emb.embed(audio)
    with torch.inference_mode(), contextlib.redirect_stdout(io.StringIO()):
        out = ref.eval()(torch.from_numpy(audio)[None])[0].double().numpy()  # [527 logits + 768 embedding]
    assert logits.shape == (527,) and feats.shape == (768,)
    np.testing.assert_allclose(logits, out[:527], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(feats, out[527:], rtol=1e-4, atol=1e-5)
