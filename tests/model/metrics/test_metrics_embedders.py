"""Each embedder: a tiny random model of the real class, saved to a temporary checkpoint, loaded by the production loader."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from model.metrics.checkpoints import EmbedderUnavailable, require_checkpoint

DATA = Path(__file__).parents[1] / "data"
# Installed with --no-deps (pyproject.toml, model extra): skip cleanly where a machine lacks them.
needs_laion_clap = pytest.mark.skipif(importlib.util.find_spec("laion_clap") is None,
                                      reason="laion-clap not installed (pip install --no-deps laion-clap==1.1.7)")
needs_imagebind = pytest.mark.skipif(importlib.util.find_spec("imagebind") is None,
                                     reason="imagebind-unofficial not installed (pip install --no-deps imagebind-unofficial==0.1.1)")


def _audio(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * sr))).astype(np.float32)


def test_cnn14_has_the_published_keys_and_shapes():
    """Our Cnn14 state dict equals panns_inference's Cnn14(16 kHz, 512, 160, 64, 50, 8000, 527) key for key."""
    from model.metrics.panns import PannsConfig, _build_cnn14

    expected = {k: list(v) for k, v in json.loads((DATA / "cnn14_16k_state_shapes.json").read_text()).items()}
    got = {k: list(v.shape) for k, v in _build_cnn14(PannsConfig()).state_dict().items()}
    assert got == expected


def test_panns_tiny_checkpoint_through_the_loader(tmp_path):
    from model.metrics.panns import PannsConfig, PannsEmbedder, _build_cnn14

    torch.manual_seed(0)
    module = _build_cnn14(PannsConfig.tiny())
    path = tmp_path / "Cnn14_16k_tiny.pth"
    torch.save({"model": {f"module.{k}": v for k, v in module.state_dict().items()}, "iteration": 3}, path)
    emb = PannsEmbedder.load(path)  # variant and widths read from the checkpoint
    assert emb.config == PannsConfig.tiny() and emb.sample_rate == 16000
    e1, logits = emb.embed(_audio(2.0, 16000))
    assert e1.shape == (16,) and logits.shape == (527,) and np.isfinite(logits).all()
    module.eval()
    with torch.no_grad():
        ref_emb, ref_logits = module(torch.from_numpy(_audio(2.0, 16000))[None])
    np.testing.assert_allclose(e1, ref_emb[0].numpy(), rtol=1e-5, atol=1e-6)
    assert emb.describe()["sha256"] == emb.sha256 and len(emb.sha256) == 64
    bad = tmp_path / "bad.pth"
    torch.save({"model": {"fc1.weight": torch.zeros(2, 2)}}, bad)
    with pytest.raises(ValueError, match="not a PANNs Cnn14 checkpoint"):
        PannsEmbedder.load(bad)


@pytest.mark.slow
@needs_laion_clap
def test_clap_audio_branch_tiny_checkpoint_through_the_loader(tmp_path):
    """The text branch's keys (incl. position_ids, LAION-AI/CLAP#127) are in the file and ignored."""
    from model.metrics.clap import ClapAudioConfig, ClapAudioEmbedder, build_audio_tower

    torch.manual_seed(0)
    tower = build_audio_tower(ClapAudioConfig.tiny())
    state = {f"module.{k}": v for k, v in tower.state_dict().items()}
    state["module.text_branch.embeddings.position_ids"] = torch.arange(514)[None]
    state["module.logit_scale_a"] = torch.tensor(2.0)
    path = tmp_path / "music_tiny.pt"
    torch.save({"epoch": 15, "state_dict": state}, path)
    emb = ClapAudioEmbedder.load(path)
    assert emb.config == ClapAudioConfig.tiny() and emb.sample_rate == 48000
    long = _audio(21.0, 48000)
    v = emb.embed(long)
    assert v.shape == (16,) and np.isfinite(v).all()
    np.testing.assert_array_equal(v, emb.embed(long))  # fixed windows: the same file, the same embedding
    # two whole 10 s windows, the 1 s tail dropped: the same as the first 20 s
    np.testing.assert_allclose(v, emb.embed(long[: 20 * 48000]), rtol=1e-6)


@needs_imagebind
def test_imagebind_tiny_checkpoint_through_the_loader(tmp_path):
    from model.metrics.checkpoints import import_skipping_package_init
    from model.metrics.imagebind import ImageBindConfig, ImageBindEmbedder, video_frame_indices

    cfg = ImageBindConfig.tiny()
    torch.manual_seed(0)
    model = import_skipping_package_init("imagebind", "models.imagebind_model").ImageBindModel(**cfg.model_kwargs)
    path = tmp_path / "imagebind_tiny.pth"
    torch.save(model.state_dict(), path)
    emb = ImageBindEmbedder.load(path, cfg)
    idx = video_frame_indices(10.0, 25.0, 250, cfg)
    assert idx == [[0, 49], [40, 89], [80, 129], [120, 169], [160, 209]]  # starts i*(10-2)/5 s, 2 frames each
    rng = np.random.default_rng(0)
    clips = [rng.integers(0, 255, (2, 90, 160, 3), dtype=np.uint8) for _ in idx]
    video, audio = emb.embed_video(clips), emb.embed_audio(_audio(10.0, 16000))
    assert video.shape == audio.shape == (8,) and np.isfinite(video).all() and np.isfinite(audio).all()
    other = ImageBindConfig(model_kwargs=cfg.model_kwargs | {"out_embed_dim": 4})
    with pytest.raises(ValueError, match="not a ImageBindModel checkpoint of this architecture"):
        ImageBindEmbedder.load(path, other)


def test_a_missing_checkpoint_names_the_flag_and_variable(tmp_path):
    with pytest.raises(EmbedderUnavailable, match="pass --clap PATH or set VIDMUSICIAN_CLAP_CKPT"):
        require_checkpoint(None, what="clap", flag="--clap", env="VIDMUSICIAN_CLAP_CKPT")
    with pytest.raises(EmbedderUnavailable, match="not found at"):
        require_checkpoint(tmp_path / "nope.pt", what="panns", flag="--panns", env="VIDMUSICIAN_PANNS_CKPT")


@pytest.mark.slow
@needs_laion_clap
def test_the_default_clap_tower_is_laion_clap_htsat_base():
    """Key for key and shape for shape, laion_clap's own HTSAT-base (the music checkpoint's) and ours."""
    from model.metrics.checkpoints import import_skipping_package_init
    from model.metrics.clap import ClapAudioConfig, build_audio_tower

    htsat = import_skipping_package_init("laion_clap", "clap_module.htsat")
    clap_model = import_skipping_package_init("laion_clap", "clap_module.model")
    configs = Path(importlib.util.find_spec("laion_clap").submodule_search_locations[0]) / "clap_module" / "model_configs"
    spec = json.loads((configs / "HTSAT-base.json").read_text())
    reference = htsat.create_htsat_model(clap_model.CLAPAudioCfp(**spec["audio_cfg"]))
    ours = build_audio_tower(ClapAudioConfig())
    theirs = {f"audio_branch.{k}": tuple(v.shape) for k, v in reference.state_dict().items()}
    mine = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert {k: v for k, v in mine.items() if k.startswith("audio_branch.")} == theirs
    assert mine["audio_projection.0.weight"] == (512, spec["embed_dim"])  # CLAP's joint space is 512-d
    assert ClapAudioConfig.from_state_dict(ours.state_dict()) == ClapAudioConfig()


@needs_imagebind
def test_the_default_imagebind_architecture_is_imagebind_huge(monkeypatch):
    """imagebind_huge()'s own constructor arguments (recorded, not built: 1.2 B parameters)."""
    from model.metrics.checkpoints import import_skipping_package_init
    from model.metrics.imagebind import ImageBindConfig

    mod = import_skipping_package_init("imagebind", "models.imagebind_model")
    recorded: dict = {}

    class Recorder:
        def __init__(self, **kwargs) -> None:
            recorded.update(kwargs)

    monkeypatch.setattr(mod, "ImageBindModel", Recorder)
    mod.imagebind_huge(pretrained=False)
    assert recorded == ImageBindConfig().model_kwargs


@needs_imagebind
def test_imagebind_architecture_is_read_from_the_checkpoint_shapes():
    """Huge shapes give imagebind_huge's config (heads and drop paths too); a tiny model's shapes give it back."""
    from model.metrics.checkpoints import import_skipping_package_init
    from model.metrics.imagebind import ImageBindConfig

    huge = {"vision": 1280, "text": 1024, "audio": 768, "depth": 384, "thermal": 768, "imu": 512}
    blocks = {"vision": 32, "text": 24, "audio": 12, "depth": 12, "thermal": 12, "imu": 6}
    state = {"modality_heads.vision.2.weight": torch.empty(1024, 1280, device="meta")}  # shapes only, no memory
    for name, width in huge.items():
        for b in range(blocks[name]):
            state[f"modality_trunks.{name}.blocks.{b}.attn.in_proj_weight"] = torch.empty(3 * width, width, device="meta")
    assert ImageBindConfig.from_state_dict(state) == ImageBindConfig()

    tiny = ImageBindConfig.tiny()
    model = import_skipping_package_init("imagebind", "models.imagebind_model").ImageBindModel(**tiny.model_kwargs)
    assert ImageBindConfig.from_state_dict(model.state_dict()) == tiny
    assert ImageBindConfig.from_state_dict({"something.else": torch.zeros(1)}) == ImageBindConfig()
