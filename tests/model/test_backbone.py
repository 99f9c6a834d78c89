"""Invariant 6 and the backbone loader: audiocraft's on-disk format round-trips through the local-dir path
users use, with weights-only loading; MusicGen-melody is refused."""

from __future__ import annotations

import pickle

import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from model.backbone import (
    CODEC_FILE,
    LM_FILE,
    BackboneError,
    build_backbone,
    lm_config,
    load_backbone,
    save_backbone,
)
from model.config import VidMusicianConfig
from model.semantic import build_t5_encoder
from model.vidmusician import VidMusician


@pytest.fixture(scope="module")
def saved_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("musicgen-debug")
    save_backbone(build_backbone("debug", seed=11), directory)
    return directory


def test_debug_backbone_is_musicgen_shaped():
    bb = build_backbone("debug")
    assert bb.num_layers == 16 and bb.lm.num_codebooks == 4 and bb.lm.card == 2048
    assert bb.sample_rate == 32000 and bb.frame_rate == 50.0
    wav = torch.randn(1, 1, 32000)
    codes, _ = bb.codec.encode(wav)
    assert codes.shape == (1, 4, 50)  # hop 640 at 32 kHz
    assert not any(p.requires_grad for p in bb.lm.parameters())
    assert not any(p.requires_grad for p in bb.codec.parameters())


def test_saved_files_need_the_allow_list(saved_dir):
    """The checkpoint really holds omegaconf objects: plain weights-only loading refuses it, so the loader's
    scoped allow-list is what makes it load - and it leaves torch's global allow-list untouched."""
    assert (saved_dir / CODEC_FILE).is_file()
    with pytest.raises(pickle.UnpicklingError):
        torch.load(saved_dir / LM_FILE, weights_only=True)
    load_backbone(str(saved_dir))
    assert DictConfig not in torch.serialization.get_safe_globals()


def _model(backbone):
    cfg = VidMusicianConfig.debug(clip_dim=16)
    torch.manual_seed(0)
    return VidMusician(cfg, backbone, build_t5_encoder("debug", load_weights=False, seed=0)).eval()


def test_local_dir_round_trip_gives_identical_outputs(saved_dir):
    original = _model(build_backbone("debug", seed=11))
    loaded = _model(load_backbone(str(saved_dir)))
    for (name, a), (_, b) in zip(original.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    g = torch.Generator().manual_seed(0)
    feats, rhythm = torch.randn(1, 1, 16, generator=g), torch.rand(1, 50, generator=g)
    codes = torch.randint(0, 2048, (1, 4, 50), generator=g)
    with torch.no_grad():
        la, lb = original(feats, rhythm, codes).logits, loaded(feats, rhythm, codes).logits
    assert torch.equal(la.nan_to_num(), lb.nan_to_num())
    audio_a = original.generate(feats, rhythm, duration_s=0.2, seed=4)
    audio_b = loaded.generate(feats, rhythm, duration_s=0.2, seed=4)
    assert audio_a.shape == (1, 1, 6400)
    assert torch.equal(audio_a, audio_b)


def test_melody_checkpoint_is_refused(tmp_path):
    cfg = lm_config("debug")
    cfg.fuser.prepend = ["self_wav"]
    cfg.conditioners.self_wav = {"model": "chroma_stem"}
    torch.save({"xp.cfg": cfg, "best_state": {}}, tmp_path / LM_FILE)
    with pytest.raises(BackboneError, match="melody"):
        load_backbone(str(tmp_path))
    with pytest.raises(BackboneError, match="melody"):
        load_backbone("facebook/musicgen-melody")
    with pytest.raises(ValueError, match="melody"):
        VidMusicianConfig(backbone="facebook/musicgen-melody")


def test_missing_checkpoint_names_the_files(tmp_path):
    with pytest.raises(BackboneError, match="no such checkpoint"):
        load_backbone(str(tmp_path))


def test_a_backbone_serves_one_model():
    bb = build_backbone("debug")
    _model(bb)
    with pytest.raises(ValueError, match="fresh backbone"):
        _model(bb)


def test_saved_config_is_audiocraft_readable(saved_dir):
    """The LM file has audiocraft's keys: `xp.cfg` (an OmegaConf config) and `best_state`."""
    pkg = torch.load(saved_dir / LM_FILE, weights_only=False)  # our own file: a full unpickle is safe here
    assert set(pkg) == {"xp.cfg", "best_state"} and isinstance(pkg["xp.cfg"], DictConfig)
    assert OmegaConf.create(pkg["xp.cfg"]).transformer_lm.num_layers == 16


def test_exported_yaml_format_loads_to_the_same_weights(tmp_path):
    """`audiocraft.utils.export` writes xp.cfg as YAML text (plus version/exported): also loadable."""
    save_backbone(build_backbone("debug", seed=11), tmp_path, yaml_cfg=True)
    assert isinstance(torch.load(tmp_path / LM_FILE, weights_only=True)["xp.cfg"], str)
    loaded, ref = load_backbone(str(tmp_path)), build_backbone("debug", seed=11)
    for (name, a), (_, b) in zip(ref.lm.state_dict().items(), loaded.lm.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert all(torch.equal(a, b) for a, b in zip(ref.codec.state_dict().values(),
                                                 loaded.codec.state_dict().values(), strict=True))


def test_hub_name_offline_fails_with_an_actionable_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BackboneError, match="local directory"):
        load_backbone("facebook/musicgen-small")
