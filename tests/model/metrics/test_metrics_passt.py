"""PaSST logits for KL-PaSST through the loader, on a tiny random-weight hear21passt PaSST (the published class)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.metrics.field_metrics import kl_passt_metric
from model.metrics.scores import ClipFeatures

pytest.importorskip("hear21passt.models.passt", reason="hear21passt not installed (make install-test)")


def tiny_passt_checkpoint(path) -> None:
    """hear21passt's PaSST at width 64, depth 1, random weights, saved as the published (bare) state dict."""
    from model.metrics.passt import PasstConfig, build_passt

    torch.manual_seed(0)
    torch.save(build_passt(PasstConfig(embed_dim=64, depth=1, num_heads=1)).net.state_dict(), path)


def test_passt_through_the_loader_is_av_benchmarks_extraction(tmp_path):
    from model.metrics.passt import PasstEmbedder

    ckpt = tmp_path / "passt-tiny.pt"
    tiny_passt_checkpoint(ckpt)
    emb = PasstEmbedder.load(ckpt)
    assert (emb.config.embed_dim, emb.config.depth, emb.config.num_heads, emb.config.classes) == (64, 1, 1, 527)
    audio = np.random.default_rng(0).normal(scale=0.1, size=12 * 32000).astype(np.float32)
    feats, logits = emb.embed(audio)
    assert feats.shape == (64,) and logits.shape == (527,)
    # av_bench/extract.py:166-176: the first 320 000 samples through get_basic_model(mode="all"); logits first
    with torch.inference_mode():
        out = emb.module(torch.from_numpy(audio[:320000])[None])[0].double().numpy()
    np.testing.assert_allclose(logits, out[:527], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(feats, out[527:], rtol=1e-6, atol=1e-6)
    short = audio[: 3 * 32000]  # zero-padded to 10 s, as av-benchmark pads
    np.testing.assert_allclose(emb.embed(short)[1], emb.embed(np.pad(short, (0, 7 * 32000)))[1], rtol=1e-6)


def test_kl_passt_is_av_benchmarks_kl_softmax():
    rng = np.random.default_rng(4)
    gen, ref = rng.normal(scale=2, size=(6, 527)), rng.normal(scale=2, size=(6, 527))
    feats = [ClipFeatures(f"c{i}", passt_gen=(rng.normal(size=8), gen[i]), passt_ref=(rng.normal(size=8), ref[i]))
             for i in range(6)]
    m = kl_passt_metric(feats, seed=0)
    # av_bench/metrics/kl.py:22-29, transcribed: kl_div(log_softmax(generated), log_softmax(real), log_target) / N
    theirs = float(torch.nn.functional.kl_div(torch.nn.functional.log_softmax(torch.from_numpy(gen), dim=1),
                                              torch.nn.functional.log_softmax(torch.from_numpy(ref), dim=1),
                                              reduction="sum", log_target=True) / len(gen))
    assert m.value == pytest.approx(theirs, rel=1e-5) and m.n == 6
    assert m.extra["reverse_kl_generated_real"] != pytest.approx(theirs, rel=1e-3)
    assert m.extra["fd_passt"] > 0 and len(m.items) == 6
    assert kl_passt_metric([], seed=0).skipped


def test_a_checkpoint_of_another_network_is_refused(tmp_path):
    from model.metrics.passt import PasstEmbedder

    bad = tmp_path / "bad.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, bad)
    with pytest.raises(ValueError, match="not a PaSST state dict"):
        PasstEmbedder.load(bad)
