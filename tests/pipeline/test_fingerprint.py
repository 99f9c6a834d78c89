"""Chromaprint through ffmpeg: one recording re-encoded at another bitrate or cut at another offset is
found the same (low bit error rate at its alignment); two different recordings are not."""

from __future__ import annotations

import numpy as np
import pytest
from music_helpers import make_track

from dvmset.music_groups import (
    SAME_MUSIC_BER,
    MusicClip,
    best_alignment,
    bit_error_rate,
    decode_fingerprint,
    encode_fingerprint,
    group_by_music,
)
from pipeline.errors import StageError
from pipeline.fingerprint import fingerprint, music_checksum


@pytest.fixture(scope="module")
def tracks(tmp_path_factory):
    d = tmp_path_factory.mktemp("tracks")
    a = make_track(d / "a.m4a", seed=1)
    a_low = d / "a-64k.m4a"
    from pipeline.media import run_ffmpeg

    run_ffmpeg(["-i", a, "-c:a", "aac", "-b:a", "64k", a_low], stage="test")
    return {"a": a, "a_low": a_low, "b": make_track(d / "b.m4a", seed=2)}


def test_the_same_recording_at_another_bitrate_matches_and_another_does_not(tracks):
    fa, fa_low, fb = (fingerprint(tracks[k]) for k in ("a", "a_low", "b"))
    assert fa.dtype == np.uint32 and 200 < len(fa) < 260  # ~8 items per second over 30 s
    same = best_alignment(fa, fa_low)
    assert same is not None and same[0] <= SAME_MUSIC_BER and same[1] == 0
    other = best_alignment(fa, fb)
    assert other is None or other[0] > SAME_MUSIC_BER
    assert bit_error_rate(fa, fb, max_offset=40) > SAME_MUSIC_BER
    assert bit_error_rate(fa, fa) == 0.0


def test_a_window_later_in_the_track_is_found_at_its_offset(tracks):
    whole, late = fingerprint(tracks["a"]), fingerprint(tracks["a_low"], start_s=10.0, duration_s=15.0)
    ber, offset = best_alignment(whole, late)
    assert ber <= SAME_MUSIC_BER and abs(offset - round(10.0 * 11025 / 1365)) <= 2  # items of 1365 samples


def test_grouping_links_sources_through_a_shared_recording_only(tracks):
    fa, fa_low, fb = (fingerprint(tracks[k]) for k in ("a", "a_low", "b"))
    clips = [MusicClip("v1-00000", "v1", fa), MusicClip("v2-00000", "v2", fa_low), MusicClip("v3-00000", "v3", fb),
             MusicClip("v3-00060", "v3", fb)]  # two clips of one source are not a group of their own
    groups = group_by_music(clips)
    assert [(g.sources, g.clips) for g in groups] == [(("v1", "v2"), ("v1-00000", "v2-00000"))]


def test_the_text_form_round_trips_and_refuses_others():
    fp = np.array([0, 1, 2**32 - 1, 123456789], dtype=np.uint32)
    assert np.array_equal(decode_fingerprint(encode_fingerprint(fp)), fp)
    with pytest.raises(ValueError, match="cp1"):
        decode_fingerprint("xx:AAAA")
    with pytest.raises(ValueError, match="uint32"):
        encode_fingerprint(fp.astype(np.int64))


def test_checksum_is_of_the_window_and_a_missing_file_is_a_stage_error(tracks, tmp_path):
    assert music_checksum(tracks["a"], 1.0, 5.0) == music_checksum(tracks["a"], 1.0, 5.0)
    assert music_checksum(tracks["a"], 1.0, 5.0) != music_checksum(tracks["a"], 2.0, 5.0)
    with pytest.raises(StageError, match="not found"):
        fingerprint(tmp_path / "nothing.wav")
