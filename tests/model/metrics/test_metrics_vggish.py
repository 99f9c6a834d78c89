"""VGGish frames for FAD through the loader, on a random-weight torchvggish VGG (the published class)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.metrics.checkpoints import EmbedderUnavailable
from model.metrics.field_metrics import fad_vggish_metric
from model.metrics.frechet import fd_from_embeddings
from model.metrics.scores import ClipFeatures

tv = pytest.importorskip("torchvggish.torchvggish", reason="torchvggish not installed (make install-test)")


def random_vggish_checkpoint(path) -> None:
    """A random-weight VGG of torchvggish's own class, saved as its published state dict (fp16 to keep it small)."""
    torch.manual_seed(0)
    model = tv.VGG(tv.make_layers(), postprocess=False)
    torch.save({k: v.half() for k, v in model.state_dict().items()}, path)


def test_vggish_frames_through_the_loader_equal_torchvggish_itself(tmp_path):
    from torchvggish import vggish_input

    from model.metrics.vggish import VggishEmbedder

    ckpt = tmp_path / "vggish-random.pth"
    random_vggish_checkpoint(ckpt)
    emb = VggishEmbedder.load(ckpt)
    audio = np.random.default_rng(0).normal(scale=0.1, size=int(3.5 * 16000))
    frames = emb.embed(audio)
    assert frames.shape == (3, 128)  # 3 whole 0.96 s frames in 3.5 s
    assert (frames < 0).any()  # the last ReLU is dropped (use_activation=False)
    # the toolkits' path: torchvggish's examples, its VGG with the checkpoint, the last ReLU removed
    ref = tv.VGG(tv.make_layers(), postprocess=False)
    ref.load_state_dict({k: v.float() for k, v in torch.load(ckpt).items()})
    ref.embeddings = torch.nn.Sequential(*list(ref.embeddings.children())[:-1])
    with torch.inference_mode():
        want = ref.eval()(vggish_input.waveform_to_examples(audio, 16000).detach()).double().numpy()
    np.testing.assert_allclose(frames, want, rtol=1e-5, atol=1e-6)
    assert emb.describe()["sha256"] and "no PCA" in emb.describe()["class"]


def test_a_checkpoint_of_another_network_is_refused(tmp_path):
    from model.metrics.vggish import VggishEmbedder

    bad = tmp_path / "not-vggish.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, bad)
    with pytest.raises(ValueError, match="not a VGGish checkpoint"):
        VggishEmbedder.load(bad)


def test_fad_pools_every_frame_of_every_clip():
    rng = np.random.default_rng(1)
    feats = [ClipFeatures(f"c{i}", vggish_gen=rng.normal(size=(n, 8)) + 0.5, vggish_ref=rng.normal(size=(n + 1, 8)))
             for i, n in enumerate((5, 9, 7, 6))]
    m = fad_vggish_metric(feats, seed=0, n_boot=20)
    want = fd_from_embeddings(np.concatenate([f.vggish_gen for f in feats]), np.concatenate([f.vggish_ref for f in feats]))
    assert m.value == pytest.approx(want, rel=1e-12) and m.n == 4
    assert m.extra["frames_generated"] == 27 and m.extra["frames_real"] == 31
    assert m.ci is not None and "real_vs_real_split_half" in m.chance
    assert fad_vggish_metric(feats[:1], seed=0).skipped


def test_missing_package_or_checkpoint_is_a_skip_not_a_crash(monkeypatch):
    from model.metrics import vggish

    monkeypatch.setitem(__import__("sys").modules, "torchvggish", None)
    with pytest.raises(EmbedderUnavailable, match="pip install --no-deps torchvggish"):
        vggish.build_vggish()
