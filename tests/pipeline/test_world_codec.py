"""The miniature world's envelope codec: audiocraft's CompressionModel interface, saved and rebuilt from its xp.cfg
by the project's one codec loader, and decoded audio in which the project's beat tracker finds the world's beats."""

from __future__ import annotations

import numpy as np
import pytest
import soxr
import torch

from dvmset import checkpoints
from dvmset.envelope_codec import EnvelopeCodec
from model.metrics.beats import track_beats
from model.metrics.rhythm import hit_mask
from pipeline.codec import encode_waveform, load_codec
from pipeline.loudness import normalize_clip
from pipeline.world import CLASSES, plan_world, synth_music

# measured on 12 test pieces (4 per class, 12 s, seed 5), see docs/world.md
RECALL_FLOOR, PRECISION_FLOOR = 0.9, 0.95


def _beats(wav: np.ndarray) -> np.ndarray:
    return track_beats(soxr.resample(wav, 32000, 22050), 22050)


def test_decoded_world_music_keeps_its_beats_for_the_beat_tracker():
    codec = EnvelopeCodec()
    hits = truths = found = correct = 0
    for plan in plan_world(4, 12.0, seed=5, prefix="codec-test"):
        music, _ = normalize_clip(synth_music(plan)[None], 32000)
        codes, scale = codec.encode(torch.from_numpy(music)[None])
        assert scale is None and codes.shape == (1, 4, 600)
        decoded = codec.decode(codes)[0, 0].numpy()
        beats, truth = _beats(decoded), np.asarray(plan.beat_times)
        hits += int(hit_mask(truth, beats, 0.07).sum())
        truths += truth.size
        correct += int(hit_mask(beats, truth, 0.07).sum())
        found += beats.size
    recall, precision = hits / truths, correct / found
    assert recall >= RECALL_FLOOR, recall
    assert precision >= PRECISION_FLOOR, precision


def test_silence_decodes_to_silence_and_a_wrong_signal_to_other_tokens():
    codec = EnvelopeCodec()
    silent = torch.zeros(1, 1, 6400)
    codes, _ = codec.encode(silent)
    assert (codes == 0).all() and codec.decode(codes).abs().max() == 0
    t = torch.arange(6400) / 32000
    tone = (0.3 * torch.sin(2 * torch.pi * 440 * t)).view(1, 1, -1)
    codes, _ = codec.encode(tone)
    pitch = int(codes[0, 1, 3])
    assert codec.pitch_hz[pitch] == pytest.approx(440.0, rel=1e-3)  # A4: 24 semitones above 110 Hz's octave base
    assert int(codes[0, 0, 3]) > 0 and int(codes[0, 3, 0]) == 1  # audible; the onset is in the first quarter


def test_saved_in_audiocraft_layout_and_loaded_by_the_features_loader(tmp_path):
    codec = EnvelopeCodec()
    checkpoints.write_checkpoint(tmp_path / checkpoints.CODEC_FILE, checkpoints.codec_config_of(codec),
                                 codec.state_dict())
    raw = torch.load(tmp_path / checkpoints.CODEC_FILE, weights_only=False)
    assert set(raw) == {"xp.cfg", "best_state"} and raw["xp.cfg"]["compression_model"] == "envelope"
    loaded = load_codec(str(tmp_path))  # pipeline.codec -> dvmset.checkpoints, as `features --codec DIR`
    assert isinstance(loaded, EnvelopeCodec)
    music = synth_music(plan_world(1, 4.0, seed=1)[0])
    np.testing.assert_array_equal(encode_waveform(loaded, music), encode_waveform(codec, music))
    assert all(c.frames_per_beat % 2 == 0 for c in CLASSES)
