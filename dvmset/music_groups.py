"""Clips whose processed music is the same recording (one track under many uploads), found from their
chromaprint fingerprints, so that an export keeps them in one split. Pure: fingerprints in, groups out.

A fingerprint is chromaprint's raw form, a uint32 per ~0.124 s of audio whose bits encode the signs
of spectral-band differences. Two fingerprints of one recording agree in most bits at the right
alignment (re-encoding flips a few); unrelated audio agrees in about half of them. Candidates are found
through an inverted index of exact values (as AcoustID does), so a dataset is not compared pair by pair.
"""

from __future__ import annotations

import base64
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

FORMAT = "cp1"  # chromaprint raw, algorithm 1 (TEST2, fpcalc's default), uint32 little-endian, base64
SAME_MUSIC_BER = 0.2  # at most this share of differing bits over the overlap: the same recording
MIN_OVERLAP = 40  # fingerprint items (~5 s) two clips must overlap to be compared
MIN_SHARED = 8  # equal values at one offset that make two clips a candidate pair
_TOP_OFFSETS = 3


def encode_fingerprint(fp: np.ndarray) -> str:
    """A fingerprint as text for the catalog and releases: ``cp1:<base64 of uint32 LE>``."""
    a = np.asarray(fp)
    if a.ndim != 1 or a.dtype != np.uint32:
        raise ValueError(f"a fingerprint is a 1-d uint32 array, got {a.dtype} {a.shape}")
    return f"{FORMAT}:" + base64.b64encode(a.astype("<u4").tobytes()).decode("ascii")


def decode_fingerprint(text: str) -> np.ndarray:
    """The uint32 array of :func:`encode_fingerprint`'s text."""
    fmt, sep, body = text.partition(":")
    if fmt != FORMAT or not sep:
        raise ValueError(f"not a {FORMAT} fingerprint: {text[:16]!r}...")
    raw = base64.b64decode(body.encode("ascii"), validate=True)
    if len(raw) % 4:
        raise ValueError("a cp1 fingerprint's byte length must be a multiple of 4")
    return np.frombuffer(raw, dtype="<u4").astype(np.uint32)


def ber_at(a: np.ndarray, b: np.ndarray, offset: int) -> tuple[float, int]:
    """(bit error rate, overlap) of ``a[i]`` against ``b[i - offset]`` where both exist."""
    lo, hi = max(0, offset), min(len(a), len(b) + offset)
    n = hi - lo
    if n <= 0:
        return 1.0, 0
    diff = np.bitwise_xor(a[lo:hi], b[lo - offset : hi - offset])
    return float(np.bitwise_count(diff).sum()) / (32.0 * n), n


def bit_error_rate(a: np.ndarray, b: np.ndarray, max_offset: int | None = None,
                   min_overlap: int = MIN_OVERLAP) -> float:
    """The lowest bit error rate of ``a`` against ``b`` over offsets ``|k| <= max_offset`` (all when None)
    with at least ``min_overlap`` items in common; 1.0 when no offset overlaps that much."""
    a, b = np.asarray(a, np.uint32), np.asarray(b, np.uint32)
    lo = -(len(b) - 1) if max_offset is None else -max_offset
    hi = len(a) - 1 if max_offset is None else max_offset
    best = 1.0
    for k in range(lo, hi + 1):
        ber, n = ber_at(a, b, k)
        if n >= min(min_overlap, len(a), len(b)) and n > 0:
            best = min(best, ber)
    return best


def _offset_hints(a: np.ndarray, b: np.ndarray) -> list[tuple[int, int]]:
    """(offset, equal values) of the offsets at which the most values of ``a`` and ``b`` are equal."""
    pos_b: dict[int, list[int]] = defaultdict(list)
    for j, v in enumerate(b.tolist()):
        pos_b[v].append(j)
    votes: Counter[int] = Counter()
    for i, v in enumerate(a.tolist()):
        for j in pos_b.get(v, ()):
            votes[i - j] += 1
    return votes.most_common(_TOP_OFFSETS)


def best_alignment(a: np.ndarray, b: np.ndarray, min_overlap: int = MIN_OVERLAP) -> tuple[float, int] | None:
    """(bit error rate, offset) at the best-voted alignment, or None when no offset has enough equal values."""
    best: tuple[float, int] | None = None
    for k, votes in _offset_hints(a, b):
        if votes < MIN_SHARED:
            break
        ber, n = ber_at(a, b, k)
        if n >= min(min_overlap, len(a), len(b)) and (best is None or ber < best[0]):
            best = (ber, k)
    return best


@dataclass(frozen=True)
class MusicClip:
    clip_id: str
    source_id: str
    fingerprint: np.ndarray  # [items] uint32


@dataclass(frozen=True)
class MusicGroup:
    """Sources (two or more) whose clips share a recording, and the clips that do."""

    sources: tuple[str, ...]
    clips: tuple[str, ...]


MAX_HOLDERS = 64  # a value found in more clips than this (e.g. silence) says little: not a candidate link
_PAIR_BLOCK = 4_000_000  # candidate pairs counted per numpy block (32 MB of int64 keys)


def candidate_pairs(prints: Sequence[np.ndarray], min_shared: int = MIN_SHARED,
                    max_holders: int | None = MAX_HOLDERS) -> list[tuple[int, int]]:
    """(i, j), i < j, of the fingerprints sharing at least ``min_shared`` distinct values, through an
    inverted index (value -> the fingerprints holding it) in numpy: each value held by 2..``max_holders``
    (None: any number of) fingerprints adds one to each pair of its holders. The pairs of a value live as int64 keys
    ``i * n + j`` counted by sorting, not as Python tuples in a Counter (the ~200 bytes and ~1 us a
    chance collision cost there made grouping 300 K clips take 86 s and 7.8 GB)."""
    n = len(prints)
    if n < 2:
        return []
    # one sorted uint64 per (value, fingerprint holding it): value in the high half, holder in the low half,
    # filled in place (8 bytes an item, no argsort or per-clip copies kept)
    held_by = np.empty(sum(len(f) for f in prints), np.uint64)
    end = 0
    for i, f in enumerate(prints):
        u = np.unique(np.asarray(f, np.uint32))
        held_by[end : end + len(u)] = (u.astype(np.uint64) << np.uint64(32)) | np.uint64(i)
        end += len(u)
    held_by = held_by[:end]
    held_by.sort()  # the holders of a value end up in ascending order
    same = np.empty(max(end - 1, 0), bool)  # item k holds the same value as item k + 1
    for lo in range(0, len(same), _PAIR_BLOCK):
        hi = min(lo + _PAIR_BLOCK, len(same))
        same[lo:hi] = (held_by[lo + 1 : hi + 1] ^ held_by[lo:hi]) < np.uint64(1 << 32)
    edges = np.flatnonzero(np.diff(np.r_[False, same, False].astype(np.int8)))  # runs of equal values only
    starts, sizes = edges[0::2], edges[1::2] - edges[0::2] + 1  # a value held by sizes[k] fingerprints
    keys: list[np.ndarray] = []
    cap = sizes.max(initial=0) if max_holders is None else max_holders
    for size in np.unique(sizes[(sizes > 1) & (sizes <= cap)]).tolist():
        x, y = np.triu_indices(size, 1)
        at = starts[sizes == size]
        for b in range(0, len(at), max(1, _PAIR_BLOCK // len(x))):
            rows = at[b : b + max(1, _PAIR_BLOCK // len(x)), None] + np.arange(size)
            held = (held_by[rows] & np.uint64(0xFFFFFFFF)).astype(np.int64)  # [values, size]: the holders
            keys.append((held[:, x] * n + held[:, y]).ravel())
    if not keys:
        return []
    pairs, shared = np.unique(np.concatenate(keys), return_counts=True)
    hit = pairs[shared >= min_shared]
    return list(zip((hit // n).tolist(), (hit % n).tolist(), strict=True))


def same_music_pairs(clips: Sequence[MusicClip], threshold: float = SAME_MUSIC_BER) -> list[tuple[str, str, float]]:
    """(clip a, clip b, bit error rate) of every pair from two different sources with the same music."""
    out = []
    for i, j in candidate_pairs([c.fingerprint for c in clips]):
        a, b = clips[i], clips[j]
        if a.source_id == b.source_id:
            continue
        found = best_alignment(a.fingerprint, b.fingerprint)
        if found is not None and found[0] <= threshold:
            out.append((a.clip_id, b.clip_id, found[0]))
    return out


def group_by_music(clips: Sequence[MusicClip], threshold: float = SAME_MUSIC_BER) -> list[MusicGroup]:
    """Sources linked by any same-music clip pair, merged transitively; each group has >= 2 sources."""
    source_of = {c.clip_id: c.source_id for c in clips}
    return union_groups((a, b, source_of[a], source_of[b]) for a, b, _ in same_music_pairs(clips, threshold))


def union_groups(links: Iterable[tuple[str, str, str, str]]) -> list[MusicGroup]:
    """The groups of the sources that (clip a, clip b, source a, source b) same-music links join,
    merged transitively, with the linked clips; sorted by their first source."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    clips_of: dict[str, set[str]] = defaultdict(set)
    for a, b, sa, sb in links:
        ra, rb = find(sa), find(sb)
        parent[max(ra, rb)] = min(ra, rb)
        clips_of[sa].add(a)
        clips_of[sb].add(b)
    groups: dict[str, tuple[set[str], set[str]]] = defaultdict(lambda: (set(), set()))
    for src in parent:
        srcs, cl = groups[find(src)]
        srcs.add(src)
        cl |= clips_of[src]
    return sorted((MusicGroup(tuple(sorted(s)), tuple(sorted(c))) for s, c in groups.values() if len(s) > 1),
                  key=lambda g: g.sources)


def music_clips(rows: Iterable[tuple[str, str, str | None]]) -> list[MusicClip]:
    """MusicClips of (clip id, source id, encoded fingerprint or None) rows; clips without one are skipped."""
    return [MusicClip(cid, sid, decode_fingerprint(fp)) for cid, sid, fp in rows if fp]


def source_groups(groups: Sequence[MusicGroup]) -> Mapping[str, str]:
    """source id -> its group's key (the group's first source id), for the sources in a group."""
    return {s: g.sources[0] for g in groups for s in g.sources}
