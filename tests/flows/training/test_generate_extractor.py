"""`generate` takes the features' extractor from the checkpoint: the CLIP it records (by name and weights'
sha256) by default; another CLIP of the same width is refused unless --allow-other-clip."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import soundfile as sf
import torch

from flows.cli import main
from flows.training.generate import GenerateConfig, GenerateError, Generator
from model.config import VidMusicianConfig
from model.training.checkpoint import save_trainable
from model.vidmusician import VidMusician
from pipeline.clip_encoder import ClipEncoderSpec, load_clip_encoder, weights_sha256
from pipeline.media import run_ffmpeg

TINY_CLIP_D = 32  # the built-in 'tiny' CLIP's embedding width


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _checkpoint(path: Path, features: dict | None, clip_model: str | None = None) -> Path:
    model = VidMusician.from_config(VidMusicianConfig.debug(clip_dim=TINY_CLIP_D), seed=0)
    model.config = replace(model.config, clip_model=clip_model)
    return save_trainable(model, path, extra={} if features is None else {"features": features})


def _features(seed: int, clip_model: str = "tiny") -> dict:
    weights = weights_sha256(load_clip_encoder(ClipEncoderSpec.tiny(seed)))
    return {"clip_model": clip_model, "clip_pretrained": None, "clip_weights_sha256": weights, "codec": "tiny"}


def test_weights_hash_tells_clip_weights_apart():
    a, b = (weights_sha256(load_clip_encoder(ClipEncoderSpec.tiny(s))) for s in (0, 0))
    assert a == b and len(a) == 64
    assert weights_sha256(load_clip_encoder(ClipEncoderSpec.tiny(1))) != a


def test_recorded_clip_is_the_default_and_another_is_refused_unless_told(tmp_path):
    same = _checkpoint(tmp_path / "same.pt", _features(0))
    gen = Generator.load(GenerateConfig(checkpoint=same, out_dir=tmp_path / "o"))  # no --clip-model
    assert gen.cfg.clip_model == "tiny" and weights_sha256(gen.encoder) == _features(0)["clip_weights_sha256"]

    other_weights = _checkpoint(tmp_path / "other.pt", _features(1))  # same name and width, other weights
    with pytest.raises(GenerateError, match=r"weights sha256 .* --allow-other-clip"):
        Generator.load(GenerateConfig(checkpoint=other_weights, out_dir=tmp_path / "o", clip_model="tiny"))
    assert Generator.load(GenerateConfig(checkpoint=other_weights, out_dir=tmp_path / "o", clip_model="tiny",
                                         allow_other_clip=True)).encoder.embed_dim == TINY_CLIP_D

    by_name = _checkpoint(tmp_path / "name.pt", None, clip_model="ViT-B-32")  # an older checkpoint: name only
    with pytest.raises(GenerateError, match="CLIP ViT-B-32, not --clip-model tiny"):
        Generator.load(GenerateConfig(checkpoint=by_name, out_dir=tmp_path / "o", clip_model="tiny"))


@pytest.mark.slow
def test_generate_cli_refuses_another_clip_and_generates_with_the_flag(tmp_path, capsys):
    video = tmp_path / "v.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=1.5", "-c:v", "libx264", "-pix_fmt",
                "yuv420p", str(video)], stage="test")
    ckpt = _checkpoint(tmp_path / "other.pt", _features(1))
    argv = ["generate", str(video), "--checkpoint", str(ckpt), "--out", str(tmp_path / "out"), "--clip-model", "tiny",
            "--window", "2", "--stride", "1", "--top-k", "50", "--no-mux"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "trained on features of CLIP tiny (weights sha256" in err and "--allow-other-clip" in err
    assert not (tmp_path / "out" / "v.wav").exists()
    assert main([*argv, "--allow-other-clip"]) == 0
    audio, sr = sf.read(tmp_path / "out" / "v.wav")
    assert sr == 32000 and abs(len(audio) - 1.5 * sr) <= 0.05 * sr  # the video's 1.5 s (its last frame's end)
