"""The pre-trained miniature MusicGen: trained by audiocraft's own LM code on the world's codes, saved in
audiocraft's checkpoint layout, and loaded through `--backbone DIR` exactly as a released MusicGen: same logits."""

from __future__ import annotations

import torch

from dvmset.checkpoints import CODEC_FILE, LM_FILE, read_checkpoint
from dvmset.envelope_codec import EnvelopeCodec
from flows.training.run import TrainRun
from flows.training.train import model_config
from model.backbone import load_backbone
from model.training.miniature import PretrainConfig, pretrain_lm, save_miniature
from model.vidmusician import VidMusician
from pipeline.world import plan_world, synth_music


def _corpus():
    codec = EnvelopeCodec()
    plans = plan_world(2, 4.0, seed=3, prefix="mini-test")
    codes = [codec.encode(torch.from_numpy(synth_music(p))[None, None])[0][0] for p in plans]
    return codec, codes, [p.world_class.word for p in plans]


def test_pretrained_lm_saved_and_loaded_through_backbone_dir_gives_equal_logits(tmp_path):
    codec, corpus, words = _corpus()
    res = pretrain_lm(corpus, words, PretrainConfig(scale="mini", steps=6, batch_size=2, window_s=2.0, warmup=2))
    assert res.losses[-1] < res.losses[0]  # it trains
    save_miniature(res.lm, codec, tmp_path, scale="mini")
    lm_file, codec_file = read_checkpoint(tmp_path / LM_FILE), read_checkpoint(tmp_path / CODEC_FILE)
    assert lm_file.cfg.conditioners.description.model == "lut" and lm_file.cfg.transformer_lm.card == 128
    assert codec_file.cfg.compression_model == "envelope"

    backbone = load_backbone(str(tmp_path))  # what `--backbone DIR` does
    assert isinstance(backbone.codec, EnvelopeCodec) and not any(p.requires_grad for p in backbone.lm.parameters())
    codes = corpus[0][None, :, :100].long()  # [1, 4, 100]
    cond = torch.randn(1, 1, backbone.dim)
    tensors = {"description": (cond, torch.ones(1, 1))}
    with torch.no_grad():
        before = res.lm.compute_predictions(codes, [], condition_tensors=tensors).logits
        after = backbone.lm.compute_predictions(codes, [], condition_tensors=tensors).logits
    finite = torch.isfinite(before)
    assert finite.any() and torch.equal(before[finite], after[finite])
    proj = res.lm.condition_provider.conditioners["description"].output_proj
    assert torch.equal(backbone.text_proj["weight"], proj.weight)

    # the trainer builds VidMusician on it from the directory (T5 "debug": the LUT's width), frozen
    run = TrainRun(data=tmp_path, out=tmp_path / "run", backbone=str(tmp_path), t5="debug")
    model = VidMusician.from_config(model_config(run, clip_dim=8))
    assert model.backbone_name == str(tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(model.lm.state_dict().values(), backbone.lm.state_dict().values(),
                                                 strict=True))
    assert not any(p.requires_grad for p in model.lm.parameters())
