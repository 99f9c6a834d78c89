"""One codec loader for the features stage and the model: a MusicGen checkpoint directory in either of
audiocraft's xp.cfg formats loads through `pipeline.codec.load_codec` and `model.backbone.load_backbone`
alike, to the same tokens; an unreadable file is an error naming it."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from dvmset.checkpoints import CODEC_FILE, LM_FILE
from model.backbone import BackboneError, build_backbone, load_backbone, save_backbone
from pipeline.codec import CodecLoadError, check_codec, encode_waveform, load_codec


@pytest.fixture(scope="module")
def music() -> np.ndarray:
    """3 s at 32 kHz: two tones and a little noise, the kind of signal the codec sees."""
    t = np.arange(3 * 32000) / 32000
    rng = np.random.default_rng(0)
    wav = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 331 * t) * (t > 1.5)
    return (wav + 0.02 * rng.standard_normal(t.shape)).astype(np.float32)


@pytest.fixture(scope="module")
def original():
    return build_backbone("debug", seed=5)


@pytest.mark.parametrize("yaml_cfg", [False, True], ids=["pickled-DictConfig", "yaml-text"])
def test_both_formats_load_through_both_entry_points_to_the_same_codes(tmp_path, original, music, yaml_cfg):
    save_backbone(original, tmp_path, yaml_cfg=yaml_cfg)
    if not yaml_cfg:  # the format audiocraft's own loader (plain weights-only torch.load) cannot read
        from audiocraft.models import loaders

        with pytest.raises(pickle.UnpicklingError):
            loaders.load_compression_model(str(tmp_path))
    features_codec = load_codec(str(tmp_path))
    model_codec = load_backbone(str(tmp_path)).codec
    file_codec = load_codec(str(tmp_path / CODEC_FILE))  # the file itself also names the codec
    want = encode_waveform(check_codec(original.codec), music)  # [4, 150]
    assert want.shape == (4, 150) and min(len(np.unique(row)) for row in want) > 5
    for codec in (features_codec, model_codec, file_codec):
        np.testing.assert_array_equal(encode_waveform(codec, music), want)
        assert not any(p.requires_grad for p in codec.parameters()) and not codec.training


def test_the_tiny_codec_is_the_debug_backbones(music):
    np.testing.assert_array_equal(encode_waveform(load_codec("tiny"), music),
                                  encode_waveform(build_backbone("debug", seed=0).codec, music))


def test_a_garbage_codec_file_is_an_error_naming_it(tmp_path, original):
    save_backbone(original, tmp_path)
    bad = tmp_path / CODEC_FILE
    bad.write_bytes(b"\x00 this is not a torch checkpoint")
    with pytest.raises(CodecLoadError, match=str(bad)):
        load_codec(str(tmp_path))
    with pytest.raises(BackboneError, match=str(bad)):
        load_backbone(str(tmp_path))
    (tmp_path / LM_FILE).write_bytes(b"garbage")
    with pytest.raises(BackboneError, match=str(tmp_path / LM_FILE)):
        load_backbone(str(tmp_path))


def test_a_missing_directory_names_the_file_it_needs(tmp_path):
    with pytest.raises(CodecLoadError, match=f"{tmp_path / 'absent'}.*{CODEC_FILE}"):
        load_codec(str(tmp_path / "absent"))


def test_an_unloadable_codec_stops_the_whole_run(tmp_path):
    """No weights is not one clip's failure: the failure policy stops the run instead of failing every clip."""
    from pipeline.errors import is_whole_run

    (tmp_path / CODEC_FILE).write_bytes(b"garbage")
    with pytest.raises(CodecLoadError) as info:
        load_codec(str(tmp_path))
    assert is_whole_run(info.value)
