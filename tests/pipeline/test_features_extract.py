"""One decode, one CLIP forward per frame: shapes, alignment, cut peaks, static zeros, codec rates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.clip_encoder import ClipEncoderSpec, ClipImageEncoder, load_clip_encoder
from pipeline.codec import check_codec, encode_waveform
from pipeline.errors import StageError
from pipeline.features import ExtractConfig, clip_audio, extract_clip, iter_frame_batches, video_features
from pipeline.rhythm import distance_sequence, rhythm_from_tokens


class CountingEncoder:
    """Wraps the real encoder and records every frame it sees (to prove one forward per frame)."""

    def __init__(self, enc):
        self.enc, self.frames = enc, []
        self.image_size = enc.image_size

    def __call__(self, frames):
        self.frames.append(np.array(frames))
        return self.enc(frames)


def test_every_frame_decoded_once_and_seen_once(clip_factory, tiny_encoder):
    clip = clip_factory(4.0, cut_every_s=2.0)
    cfg = ExtractConfig(clip_s=4, batch_size=7, queue_batches=2)
    counting = CountingEncoder(tiny_encoder)
    glob, rhythm, rhythm_global = video_features(clip, counting, cfg)
    seen = np.concatenate(counting.frames)
    assert seen.shape == (100, 32, 32, 3)  # 4 s x 25 fps, each exactly once, in order
    decoded = np.concatenate(list(iter_frame_batches(clip, 32, cfg)))
    np.testing.assert_array_equal(seen, decoded)
    # global = pooled embedding of frames 0, 25, 50, 75 (1 fps), whatever the batch boundaries
    pooled, _ = tiny_encoder(decoded[::25])
    np.testing.assert_allclose(glob.astype(np.float32), pooled.numpy(), rtol=1e-2, atol=1e-3)
    assert glob.shape == (4, 32) and glob.dtype == np.float16
    assert rhythm.shape == (200,) and rhythm.dtype == np.float32
    # rhythm_global: Algorithm 1 on the cosine similarity of consecutive pooled embeddings
    every, tokens = tiny_encoder(decoded)
    # rhythm: Eq. 4 + Algorithm 1 over every frame's patch tokens, whatever the batch boundaries
    np.testing.assert_allclose(rhythm, rhythm_from_tokens(tokens), atol=1e-5)
    cos = torch.nn.functional.cosine_similarity(every[:-1].double(), every[1:].double(), dim=-1)
    np.testing.assert_allclose(rhythm_global, distance_sequence(cos.numpy()), atol=1e-5)
    assert rhythm_global.dtype == np.float32 and not np.allclose(rhythm_global, rhythm)


def test_batching_does_not_change_the_rhythm(clip_factory, tiny_encoder):
    clip = clip_factory(4.0, cut_every_s=2.0)
    a = video_features(clip, tiny_encoder, ExtractConfig(clip_s=4, batch_size=100))
    b = video_features(clip, tiny_encoder, ExtractConfig(clip_s=4, batch_size=3))
    for x, y in zip(a[1:], b[1:], strict=True):  # both rhythm signals
        np.testing.assert_allclose(x, y, atol=1e-5)


def test_rhythm_peaks_at_the_cut_with_random_weights(clip_factory):
    clip = clip_factory(4.0, cut_every_s=2.0)  # hue flips at 2.0 s = frame 50 -> 50 Hz index 100
    for seed in (0, 1):
        enc = load_clip_encoder(ClipEncoderSpec.tiny(seed=seed))
        _, d, d_global = video_features(clip, enc, ExtractConfig(clip_s=4))
        assert abs(int(np.argmax(d)) - 100) <= 1
        for x in (d, d_global):  # the pooled embedding alone need not peak there (the paper's AT finding)
            assert np.all(x[1::2] == 0.0)  # Algorithm 1's interleaved zeros
            assert x[0] == 0.0


def test_rhythm_is_zero_across_static_frames(static_clip, tiny_encoder):
    _, *both = video_features(static_clip, tiny_encoder, ExtractConfig(clip_s=4))
    for d in both:
        assert int(np.argmax(d)) == 100 and d[100] > 0.01
        rest = np.delete(d, 100)
        assert np.abs(rest).max() < 1e-5


def test_extract_clip_aligns_three_tensors(clip_factory, tiny_encoder, tiny_codec):
    clip = clip_factory(4.0, cut_every_s=2.0)
    f = extract_clip(clip, tiny_encoder, tiny_codec, ExtractConfig(clip_s=4))
    assert f.global_.shape == (4, 32)
    assert f.rhythm.shape == f.rhythm_global.shape == (200,)
    assert f.codes.shape == (4, 200) and f.codes.dtype == np.int16
    wav = clip_audio(clip, ExtractConfig(clip_s=4))
    assert wav.shape == (4 * 32000,) and np.abs(wav).max() > 0.05  # the synthetic beat is there
    np.testing.assert_array_equal(f.codes, encode_waveform(tiny_codec, wav))
    # the codec is causal per 640-sample hop closely enough that half the audio -> about half the codes
    half = encode_waveform(tiny_codec, wav[: 2 * 32000])
    assert half.shape == (4, 100)


def test_short_clip_is_a_stage_error(clip_factory, tiny_encoder, tiny_codec):
    clip = clip_factory(4.0, cut_every_s=2.0)
    with pytest.raises(StageError, match="frames"):
        extract_clip(clip, tiny_encoder, tiny_codec, ExtractConfig(clip_s=8))


def test_missing_and_broken_files_are_stage_errors(tmp_path, tiny_encoder, tiny_codec):
    with pytest.raises(StageError, match="missing"):
        extract_clip(tmp_path / "nope.mp4", tiny_encoder, tiny_codec, ExtractConfig(clip_s=2))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(StageError):
        extract_clip(bad, tiny_encoder, tiny_codec, ExtractConfig(clip_s=2))


def test_codec_rates_are_musicgens(tiny_codec):
    assert (tiny_codec.sample_rate, tiny_codec.frame_rate, tiny_codec.num_codebooks) == (32000, 50, 4)
    from audiocraft.models.encodec import EncodecModel
    from audiocraft.modules import SEANetDecoder, SEANetEncoder
    from audiocraft.quantization import ResidualVectorQuantizer

    # the geometry of audiocraft's debug codec: hop 10*8*16 = 1280 at 32 kHz -> 25 Hz
    seanet = {"n_filters": 4, "n_residual_layers": 1, "dimension": 32, "ratios": [10, 8, 16]}
    q = ResidualVectorQuantizer(dimension=32, bins=400, n_q=4, kmeans_init=False)
    debug = EncodecModel(SEANetEncoder(**seanet), SEANetDecoder(**seanet), q, frame_rate=25,
                         sample_rate=32000, channels=1)
    with pytest.raises(ValueError, match="25 Hz"):
        check_codec(debug, "debug")


def test_tiny_models_are_deterministic(tiny_encoder):
    other = load_clip_encoder(ClipEncoderSpec.tiny())
    x = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    for a, b in zip(tiny_encoder(x), other(x), strict=True):
        torch.testing.assert_close(a, b)


def test_unknown_clip_model_is_refused():
    with pytest.raises((RuntimeError, ValueError)):
        load_clip_encoder(ClipEncoderSpec("no-such-model", pretrained=None))
    with pytest.raises(FileNotFoundError):
        load_clip_encoder(ClipEncoderSpec("ViT-B-32", pretrained="/nonexistent/clip.bin"))


def test_local_checkpoint_dir_loads_its_weights(tmp_path):
    """The real loading path (open_clip ``local-dir:``) on a tiny config saved to disk."""
    import json

    import open_clip

    model_cfg = {"embed_dim": 32,
                 "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
                 "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1}}
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg}))
    torch.manual_seed(123)
    saved = open_clip.model.CLIP(**model_cfg).eval()
    torch.save(saved.state_dict(), tmp_path / "open_clip_pytorch_model.bin")

    enc = load_clip_encoder(ClipEncoderSpec(f"local-dir:{tmp_path}", pretrained=None, seed=7))
    x = np.random.default_rng(1).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    pooled, tokens = enc(x)
    ref = ClipImageEncoder(saved.visual, 32)(x)  # the saved weights, wrapped directly
    torch.testing.assert_close(pooled, ref[0])
    torch.testing.assert_close(tokens, ref[1])
    assert pooled.shape == (3, 32) and tokens.shape == (3, 16, 64)



def test_codec_loads_from_a_local_musicgen_dir(tmp_path, tiny_codec):
    """The real loading path (dvmset.checkpoints on a directory), tiny weights; both formats: tests/pipeline/test_codec.py."""
    from dvmset.checkpoints import CODEC_FILE, tiny_codec_config, write_checkpoint
    from pipeline.codec import load_codec

    write_checkpoint(tmp_path / CODEC_FILE, tiny_codec_config(), tiny_codec.state_dict())
    loaded = load_codec(str(tmp_path))
    wav = (0.1 * np.random.default_rng(2).standard_normal(32000)).astype(np.float32)
    np.testing.assert_array_equal(encode_waveform(loaded, wav), encode_waveform(tiny_codec, wav))
    with pytest.raises(RuntimeError, match="compression_state_dict.bin"):
        load_codec(str(tmp_path / "nothing-here"))


@pytest.mark.parametrize("seed", [0, 1])
def test_rhythm_peaks_at_the_hard_cuts_of_a_real_video(shared_media, seed):
    """bikes_cuts_10s.mp4 (real footage, hard cuts at 1.2, 3.04, 5.48, 7.48 and 9.68 s): even with
    random CLIP weights the five largest rhythm values are the five cuts, at the new shot's first frame."""
    enc = load_clip_encoder(ClipEncoderSpec.tiny(seed=seed))
    _, d, _ = video_features(shared_media / "bikes_cuts_10s.mp4", enc, ExtractConfig(clip_s=10))
    cuts_s = np.array([1.2, 3.04, 5.48, 7.48, 9.68])
    top = np.sort(np.argsort(d)[::-1][:5])  # 50 Hz indices
    np.testing.assert_allclose(top / 50, cuts_s, atol=0.041)  # within one 25 fps frame
    assert d[top].min() > 10 * np.median(d[0::2])  # cuts stand far above motion within a shot
