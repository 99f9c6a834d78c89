"""Excluded spans: marked on an accept, stored with the verdict, and never inside a served training window."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from feature_helpers import CONFIG, synthetic
from sqlalchemy import select

from dvmset import review, review_skips
from dvmset.dataset import FeatureWindows
from dvmset.review import QueuePolicy
from dvmset.shards import FeatureStore, ShardEntry, write_shard
from dvmset.spans import (
    InvalidSpan,
    Span,
    check_spans,
    excluded_spans,
    seconds_kept,
    window_offsets,
    write_spans_file,
)
from dvmset.tables import Clip, Decision, Source

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def test_window_offsets_leave_out_every_window_touching_a_span():
    # the example: a 60 s clip with a bad stretch at 50-55 s still yields 30 s windows from 0-20 s
    assert window_offsets(60, 30, [Span(50, 55, "noise")]) == list(range(0, 21))
    assert window_offsets(60, 30) == list(range(0, 31))
    assert window_offsets(60, 30, [Span(25, 40)]) == []
    assert window_offsets(60, 10, [Span(0, 5), Span(4, 12), Span(40.5, 41)]) == [*range(12, 31), *range(41, 51)]
    assert seconds_kept(60, [Span(50, 55), Span(52, 58), Span(0, 2)]) == 50
    with pytest.raises(InvalidSpan, match="before the end"):
        check_spans([{"start_s": 10, "end_s": 5, "reason": "noise"}], 60)
    with pytest.raises(InvalidSpan, match="span reason"):
        check_spans([[1, 2, "speech"]], 60)
    assert check_spans([[55, 70, "vocals"]], 60) == [Span(55, 60, "vocals")]  # clipped to the clip


@pytest.fixture
def long_features(tmp_path):
    store = FeatureStore(tmp_path)
    ids = [f"s{i}-00000" for i in range(3)]
    store.append(write_shard(store.shard_path(0), [ShardEntry(c, synthetic(clip_s=60, seed=i), CONFIG, split="train")
                                                   for i, c in enumerate(ids)]))
    return tmp_path, ids


@pytest.mark.parametrize("via_file", [False, True])
def test_feature_windows_never_serve_a_window_overlapping_an_excluded_span(long_features, via_file):
    features, ids = long_features
    spans = {ids[0]: [Span(50, 55, "noise")], ids[1]: [Span(2, 4, "vocals"), Span(55, 57, "non_music")],
             ids[2]: [Span(20, 45, "other")]}  # ids[2] has no 30 s window left
    if via_file:
        write_spans_file(features, spans)  # what the export writes beside the features
        ds = FeatureWindows(features, window_s=30, seed=5)
    else:
        ds = FeatureWindows(features, window_s=30, seed=5, excluded=spans)
    assert ds.clip_ids == ids[:2]
    seen: dict[str, set[int]] = {c: set() for c in ids[:2]}
    for epoch in range(40):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            seconds = item["global"][:, 0].floor().numpy().astype(int)  # the window's own seconds of the clip
            np.testing.assert_array_equal(seconds, np.arange(item["offset_s"], item["offset_s"] + 30))
            for s in spans[item["clip_id"]]:
                assert not (seconds.min() < s.end_s and s.start_s < seconds.max() + 1), (item["clip_id"], item["offset_s"])
            seen[item["clip_id"]].add(item["offset_s"])
    assert seen[ids[0]] <= set(range(21)) and len(seen[ids[0]]) > 5  # offsets 0-20, drawn at random
    assert seen[ids[1]] <= set(range(4, 26)) and len(seen[ids[1]]) > 5  # after 2-4 s, ending by 55 s
    assert FeatureWindows(features, window_s=30, offset_s=22, excluded=spans).clip_ids == [ids[1]]
    assert len(FeatureWindows(features, window_s=30, excluded={})) == 3  # no spans: every clip, as before


def _seed(catalog, n=3):
    ids = [f"v-{i * 60:05d}" for i in range(n)]
    with catalog.session() as s:
        s.add(Source(id="v", url="https://example.invalid/v", status="done", query="q"))
        s.flush()
        s.add_all(Clip(id=c, source_id="v", start_s=i * 60.0, duration_s=60.0, status="pending_review")
                  for i, c in enumerate(ids))
    return ids


def _ann(catalog, name):
    with catalog.session() as s:
        return review.add_annotator(s, name)[0].id


def test_spans_and_listening_time_are_stored_with_the_verdict(any_catalog):
    catalog = any_catalog  # SQLite and PostgreSQL
    ids = _seed(catalog)
    a, b = _ann(catalog, "a"), _ann(catalog, "b")
    pol = QueuePolicy(overlap=1)
    with catalog.session() as s:
        assert review.claim_next(s, a, pol, now=T0) == ids[0]
    with catalog.session() as s:  # the page renews the lease: the hand-out time stays
        assert review.claim_next(s, a, pol, now=T0 + dt.timedelta(seconds=4)) == ids[0]
    with catalog.session() as s, pytest.raises(review.TooSoon, match="6 s, under the 10 s"):
        review.decide(s, a, ids[0], "accept", policy=pol, now=T0 + dt.timedelta(seconds=6), min_listen_s=10)
    with catalog.session() as s:
        review.decide(s, a, ids[0], "accept", policy=pol, now=T0 + dt.timedelta(seconds=7), min_listen_s=10,
                      confirm=True, spans=[{"start_s": 50, "end_s": 55, "reason": "noise"}])
    with catalog.session() as s:
        assert review.claim_next(s, a, pol, now=T0 + dt.timedelta(seconds=8)) == ids[1]
        review.decide(s, a, ids[1], "reject", ["noise", "static"], note="hum and a still", policy=pol,
                      now=T0 + dt.timedelta(seconds=38), min_listen_s=10)
        with pytest.raises(review.InvalidDecision, match="a reject takes none"):
            review.decide(s, b, ids[2], "reject", ["noise"], spans=[[1, 2, "noise"]], policy=pol)
    with catalog.session() as s:
        rows = {d.clip_id: d for d in s.scalars(select(Decision))}
        assert rows[ids[0]].spans == [[50.0, 55.0, "noise"]] and rows[ids[0]].listened_s == 7.0
        assert rows[ids[1]].listened_s == 30.0 and rows[ids[1]].reasons == ["noise", "static"]
        assert rows[ids[1]].note == "hum and a still"
        assert excluded_spans(s) == {ids[0]: [Span(50.0, 55.0, "noise")]}
        review.undo_last(s, a, pol)  # undoes the reject
        review.undo_last(s, a, pol)  # undoes the accept: its spans no longer count
        assert excluded_spans(s) == {}


def test_undo_right_after_a_skip_returns_the_skipped_clip(any_catalog):
    catalog = any_catalog  # SQLite and PostgreSQL
    ids = _seed(catalog)
    a, b = _ann(catalog, "a"), _ann(catalog, "b")
    pol = QueuePolicy(overlap=1, skip_s=600)
    with catalog.session() as s:
        review.claim_next(s, a, pol, now=T0)
        review.decide(s, a, ids[0], "accept", policy=pol, now=T0 + dt.timedelta(seconds=20))
        assert review.claim_next(s, a, pol, now=T0 + dt.timedelta(seconds=21)) == ids[1]
        review.skip(s, a, ids[1], pol, now=T0 + dt.timedelta(seconds=22))
        assert review.claim_next(s, a, pol, now=T0 + dt.timedelta(seconds=23)) == ids[2]
    with catalog.session() as s:
        assert [k.clip_id for k in review_skips.skipped(s, a, T0 + dt.timedelta(seconds=24))] == [ids[1]]
        done = review_skips.undo(s, a, pol, now=T0 + dt.timedelta(seconds=24))
        assert (done.kind, done.clip_id, done.handed_back) == ("skip", ids[1], True)
        assert review.claim_next(s, a, pol, now=T0 + dt.timedelta(seconds=25)) == ids[1]  # the skipped clip
        done = review_skips.undo(s, a, pol, now=T0 + dt.timedelta(seconds=26))  # next undo: the verdict
        assert (done.kind, done.clip_id) == ("verdict", ids[0])
        assert s.get(Clip, ids[0]).status == "pending_review"
    with catalog.session() as s:  # a skip brought back while someone else holds the clip only leaves the list
        review.skip(s, a, ids[0], pol, now=T0 + dt.timedelta(seconds=30))
        assert review.claim_next(s, b, pol, now=T0 + dt.timedelta(seconds=31)) == ids[0]
        assert review_skips.unskip(s, a, ids[0], pol, now=T0 + dt.timedelta(seconds=32)) is False
        assert review_skips.skipped(s, a, T0 + dt.timedelta(seconds=33)) == []
        with pytest.raises(review.NotFound, match="not among your skipped"):
            review_skips.unskip(s, a, ids[0], pol, now=T0 + dt.timedelta(seconds=34))


def test_empty_queue_says_what_is_held_and_skipped(any_catalog):
    catalog = any_catalog  # SQLite and PostgreSQL
    ids = _seed(catalog, 2)
    a, b = _ann(catalog, "a"), _ann(catalog, "b")
    pol = QueuePolicy(overlap=1, lease_s=300, skip_s=900)
    with catalog.session() as s:
        assert review.claim_next(s, b, pol, now=T0) == ids[0]
        assert review.claim_next(s, a, pol, now=T0) == ids[1]
        review.skip(s, a, ids[1], pol, now=T0 + dt.timedelta(seconds=10))
        assert review.claim_next(s, a, pol, now=T0 + dt.timedelta(seconds=11)) is None
        w = review_skips.waiting(s, a, T0 + dt.timedelta(seconds=12))
    assert (w.held_by_others, w.skipped) == (1, 1)
    assert w.held_until == T0 + dt.timedelta(seconds=300)
    assert w.skipped_next == T0 + dt.timedelta(seconds=910)


def test_a_takedown_drops_its_clips_from_the_spans_file(tmp_path):
    from dvmset.spans import drop_from_spans_file, read_spans_file

    write_spans_file(tmp_path, {"a-00000": [Span(1, 2, "noise")], "b-00000": [Span(3, 4, "vocals")]})
    assert drop_from_spans_file(tmp_path, ["a-00000", "c-00000"]) == 1
    assert read_spans_file(tmp_path) == {"b-00000": [Span(3, 4, "vocals")]}
    assert drop_from_spans_file(tmp_path / "none", ["b-00000"]) == 0  # no export yet: nothing to drop
