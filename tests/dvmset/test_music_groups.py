"""Grouping by music on fingerprints alone: a recording with some bits flipped and shifted is found, an
unrelated one is not, groups merge transitively, and pairs within one source make no group."""

from __future__ import annotations

import numpy as np

from dvmset.music_groups import (
    SAME_MUSIC_BER,
    MusicClip,
    ber_at,
    best_alignment,
    bit_error_rate,
    candidate_pairs,
    group_by_music,
    same_music_pairs,
    source_groups,
)


def _fp(rng: np.random.Generator, n: int = 480) -> np.ndarray:
    return rng.integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32)


def _flip(fp: np.ndarray, rng: np.random.Generator, share: float) -> np.ndarray:
    """``fp`` with about ``share`` of its items getting one to three flipped bits (a re-encode)."""
    out = fp.copy()
    for i in np.flatnonzero(rng.random(len(fp)) < share):
        for b in rng.choice(32, size=rng.integers(1, 4), replace=False):
            out[i] ^= np.uint32(1 << int(b))
    return out


def test_ber_is_the_share_of_differing_bits_at_the_alignment():
    a = np.array([0, 0xFFFFFFFF, 0x0F0F0F0F], dtype=np.uint32)
    assert ber_at(a, a, 0) == (0.0, 3)
    assert ber_at(a, np.zeros(3, np.uint32), 0) == ((32 + 16) / 96, 3)
    assert ber_at(a[1:], a, -1) == (0.0, 2)  # a[1:][i] against a[i + 1]
    assert ber_at(a, a, 5) == (1.0, 0)


def test_a_shifted_noisy_copy_is_the_same_music_and_an_unrelated_one_is_not():
    rng = np.random.default_rng(0)
    a = _fp(rng)
    copy = _flip(a[37:400], rng, 0.3)
    ber, offset = best_alignment(a, copy)
    assert offset == 37 and ber < 0.05
    assert bit_error_rate(a, copy, max_offset=40) == ber
    assert best_alignment(a, _fp(rng)) is None
    assert 0.4 < bit_error_rate(a, _fp(rng), max_offset=10) < 0.6  # chance: half the bits


def test_groups_merge_transitively_and_keep_only_multi_source_groups():
    rng = np.random.default_rng(1)
    a, b = _fp(rng), _fp(rng)
    clips = [
        MusicClip("s1-00000", "s1", a),
        MusicClip("s2-00010", "s2", _flip(a[:300], rng, 0.2)),
        MusicClip("s3-00000", "s3", _flip(a[100:], rng, 0.2)),  # overlaps s2's part: linked through a
        MusicClip("s4-00000", "s4", b), MusicClip("s4-00060", "s4", _flip(b, rng, 0.1)),  # one source only
        MusicClip("s5-00000", "s5", _fp(rng)),
    ]
    groups = group_by_music(clips)
    assert [g.sources for g in groups] == [("s1", "s2", "s3")]
    assert groups[0].clips == ("s1-00000", "s2-00010", "s3-00000")
    assert source_groups(groups) == {"s1": "s1", "s2": "s1", "s3": "s1"}
    assert all(ber <= SAME_MUSIC_BER for _, _, ber in same_music_pairs(clips))


def test_heavily_changed_audio_is_not_grouped():
    rng = np.random.default_rng(2)
    a = _fp(rng)
    noisy = a ^ _fp(rng) & np.uint32(0x00FF00FF)  # a quarter of every item's bits random: ~25 % differ
    assert best_alignment(a, noisy) is None or best_alignment(a, noisy)[0] > SAME_MUSIC_BER
    assert group_by_music([MusicClip("x-00000", "x", a), MusicClip("y-00000", "y", noisy)]) == []


def _reference_pairs(prints, min_shared=8, max_holders=64):
    """The pair loop candidate_pairs replaced: a Counter of every pair of every shared value's holders."""
    from collections import Counter

    holders = {}
    for n, f in enumerate(prints):
        for v in np.unique(f).tolist():
            holders.setdefault(v, []).append(n)
    shared = Counter()
    for ms in holders.values():
        if 1 < len(ms) <= max_holders:
            for x in range(len(ms)):
                for y in range(x + 1, len(ms)):
                    shared[ms[x], ms[y]] += 1
    return sorted(p for p, k in shared.items() if k >= min_shared)


def test_candidate_pairs_equal_the_pair_loop_with_many_chance_collisions():
    """Values from a small alphabet make thousands of chance collisions (values held by 2..64 clips and
    more); the numpy count finds exactly the pairs the Python loop did, and the planted groups."""
    rng = np.random.default_rng(3)
    songs = [rng.integers(0, 2**32, size=400, dtype=np.uint64).astype(np.uint32) for _ in range(3)]
    prints, clips = [], []
    for n in range(300):
        if n % 50 < 3:  # songs 0..2 under six uploads each, shifted and re-encoded
            f = _flip(songs[n % 50][(n // 50) * 7 :], rng, 0.2)
        else:
            f = rng.integers(0, 3000, size=200).astype(np.uint32)  # a tiny alphabet: collisions everywhere
        prints.append(f)
        clips.append(MusicClip(f"v{n:03d}-00000", f"v{n:03d}", f))
    want = _reference_pairs(prints)
    assert len(want) > 1000  # the alphabet really collides, far beyond the planted pairs
    assert candidate_pairs(prints) == want
    assert candidate_pairs(prints[:1]) == [] and candidate_pairs([]) == []
    groups = group_by_music(clips)
    assert [g.sources for g in groups] == [tuple(f"v{n + 50 * k:03d}" for k in range(6)) for n in range(3)]
