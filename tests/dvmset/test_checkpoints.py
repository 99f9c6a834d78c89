"""dvmset.checkpoints: audiocraft's two xp.cfg formats read the same, weights-only under a scoped allow-list;
unreadable files are named; the one tiny MusicGen EnCodec is deterministic, MusicGen-shaped and informative."""

from __future__ import annotations

import collections

import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from dvmset.checkpoints import (
    CODEC_FILE,
    CheckpointFileError,
    build_tiny_codec,
    load_compression_model,
    read_checkpoint,
    resolve_file,
    tiny_codec_config,
    write_checkpoint,
)


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def codec():
    return build_tiny_codec(seed=7)


@pytest.mark.parametrize("yaml_cfg", [False, True])
def test_both_cfg_formats_read_to_the_same_config_and_weights(tmp_path, codec, yaml_cfg):
    path = write_checkpoint(tmp_path / CODEC_FILE, tiny_codec_config(), codec.state_dict(), yaml_cfg=yaml_cfg)
    raw = torch.load(path, weights_only=False)["xp.cfg"]
    assert isinstance(raw, str) if yaml_cfg else isinstance(raw, DictConfig)
    ckpt = read_checkpoint(path)
    assert isinstance(ckpt.cfg, DictConfig) and ckpt.pretrained is None
    assert OmegaConf.to_container(ckpt.cfg) == OmegaConf.to_container(tiny_codec_config())
    assert _same_state(ckpt.state, codec.state_dict())
    assert dict(ckpt.extra) == ({"version": "1.3.0", "exported": True} if yaml_cfg else {})
    assert DictConfig not in torch.serialization.get_safe_globals()  # the allow-list stayed scoped


def test_pickled_dictconfig_needs_the_allow_list(tmp_path, codec):
    """The format that broke the features stage: plain weights-only loading refuses it."""
    import pickle

    path = write_checkpoint(tmp_path / CODEC_FILE, tiny_codec_config(), codec.state_dict())
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    assert _same_state(load_compression_model(path).state_dict(), codec.state_dict())


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04garbage"])
def test_garbage_file_is_a_readable_error_naming_it(tmp_path, content):
    bad = tmp_path / "broken" / CODEC_FILE
    bad.parent.mkdir()
    bad.write_bytes(content)
    with pytest.raises(CheckpointFileError, match=str(bad)) as info:
        read_checkpoint(bad)
    assert "weights-only" in str(info.value)


class _NotData:
    pass


def test_other_shapes_of_file_are_refused_with_what_is_wrong(tmp_path):
    cases = {
        "tensor.bin": (torch.zeros(3), "expected a dict"),
        "keys.bin": ({"best_state": {}}, "missing 'xp.cfg'"),
        "cfgtype.bin": ({"xp.cfg": 3, "best_state": {}}, "YAML text or a DictConfig"),
        "global.bin": ({"xp.cfg": {}, "best_state": {}, "x": _NotData()}, "safe_globals"),
    }
    for name, (obj, message) in cases.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(CheckpointFileError, match=message):
            read_checkpoint(tmp_path / name)
    with pytest.raises(CheckpointFileError, match="no such checkpoint file"):
        read_checkpoint(tmp_path / "absent.bin")


def test_a_cfg_that_does_not_build_the_weights_names_the_file(tmp_path, codec):
    cfg = tiny_codec_config()
    cfg.seanet.dimension = 16  # another architecture than the weights
    path = write_checkpoint(tmp_path / CODEC_FILE, cfg, codec.state_dict())
    with pytest.raises(CheckpointFileError, match=f"{path}.*do not build a codec"):
        load_compression_model(path)


def test_pretrained_pointer_to_a_local_export_loads_it_safely(tmp_path, codec):
    target = tmp_path / "exported"
    write_checkpoint(target / CODEC_FILE, tiny_codec_config(), codec.state_dict(), yaml_cfg=False)
    torch.save({"pretrained": str(target), "exported": True}, tmp_path / CODEC_FILE)
    assert _same_state(load_compression_model(tmp_path / CODEC_FILE).state_dict(), codec.state_dict())


def test_resolve_file_local_dir_file_and_missing_path(tmp_path):
    (tmp_path / CODEC_FILE).write_bytes(b"x")
    assert resolve_file(str(tmp_path), CODEC_FILE) == tmp_path / CODEC_FILE
    assert resolve_file(str(tmp_path / CODEC_FILE), CODEC_FILE) == tmp_path / CODEC_FILE
    with pytest.raises(CheckpointFileError, match=f"no such directory.*{CODEC_FILE}"):
        resolve_file(str(tmp_path / "nothing-here"), CODEC_FILE)


def test_tiny_codec_is_musicgen_shaped_deterministic_and_informative(codec):
    assert (codec.sample_rate, codec.frame_rate, codec.channels, codec.num_codebooks) == (32000, 50, 1, 4)
    assert codec.quantizer.bins == 2048
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        again = build_tiny_codec(seed=7)
    finally:
        torch.set_num_threads(before)
    assert _same_state(again.state_dict(), codec.state_dict())  # bitwise, whatever the thread count
    assert not _same_state(build_tiny_codec(seed=8).state_dict(), codec.state_dict())
    assert not any(p.requires_grad for p in codec.parameters())
    wav = 0.1 * torch.randn(1, 1, 2 * 32000, generator=torch.Generator().manual_seed(0))  # [1, 1, 2 s]
    with torch.no_grad():
        codes, _ = codec.encode(wav)  # [1, 4, 100]
    assert codes.shape == (1, 4, 100)
    distinct = [len(codes[0, k].unique()) for k in range(4)]
    assert min(distinct) >= 20, f"every codebook's tokens must vary, got {distinct} distinct"
    assert collections.Counter(codes[0, 0].tolist()).most_common(1)[0][1] < 50
