"""Shard round trip, the index, random access by id, checksums, crash recovery, plain-library reading."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from feature_helpers import CONFIG, entry, synthetic

from dvmset.shards import FeatureStore, ShardEntry, ShardReader, read_shard_rows, tensors_sha256, write_shard


def test_round_trip_and_random_access(tmp_path):
    store = FeatureStore(tmp_path)
    store.append(write_shard(store.shard_path(0), [entry("a-00000", 0, query="q1", source_id="a"),
                                                   entry("a-00060", 1, query="q1", source_id="a")]))
    store.append(write_shard(store.shard_path(1), [entry("b-00000", 2, query="q2", source_id="b", split="test")]))
    assert store.next_shard_number() == 2
    idx = store.index()
    assert list(idx.clip_id) == ["a-00000", "a-00060", "b-00000"]
    assert list(idx.shard) == ["shard-00000.safetensors"] * 2 + ["shard-00001.safetensors"]
    assert idx.set_index("clip_id").at["b-00000", "split"] == "test"
    reader = ShardReader(tmp_path)
    for cid, seed in [("b-00000", 2), ("a-00000", 0), ("a-00060", 1)]:  # any order
        got = reader.get(cid)
        for k, v in synthetic(seed=seed).items():
            np.testing.assert_array_equal(got[k], v)
            assert got[k].dtype == v.dtype
        assert reader.verify(cid)
    w = reader.window("a-00060", 2, 3)
    assert w["global"].shape == (3, 8) and w["rhythm"].shape == (150,) and w["codes"].shape == (2, 150)
    assert w["rhythm"][0] == 2.0 and w["codes"][0, 0] == 100 and int(w["global"][0, 0]) == 2
    with pytest.raises(KeyError, match="features"):
        reader.get("zzz-00000")
    with pytest.raises(ValueError, match="window"):
        reader.window("a-00000", 4, 3)


def test_entries_refuse_misaligned_or_mistyped_tensors():
    t = synthetic()
    with pytest.raises(ValueError, match="misaligned"):
        ShardEntry("x-00000", {**t, "rhythm": t["rhythm"][:-50]}, CONFIG)
    with pytest.raises(ValueError, match="float16"):
        ShardEntry("x-00000", {**t, "global": t["global"].astype(np.float32)}, CONFIG)
    with pytest.raises(ValueError, match="invalid clip id"):
        ShardEntry("../x", t, CONFIG)


def test_checksum_detects_a_changed_tensor():
    t = synthetic()
    t2 = {**t, "rhythm": t["rhythm"].copy()}
    t2["rhythm"][7] += 1
    assert tensors_sha256(t) != tensors_sha256(t2)


def test_recover_indexes_an_orphan_shard_and_drops_missing_ones(tmp_path):
    store = FeatureStore(tmp_path)
    store.append(write_shard(store.shard_path(0), [entry("a-00000")]))
    write_shard(store.shard_path(1), [entry("b-00000", 1, query="q")])  # killed before the index write
    assert set(store.index().clip_id) == {"a-00000"}
    assert store.recover() == ["shard-00001.safetensors"]
    assert set(store.index().clip_id) == {"a-00000", "b-00000"}
    assert store.index().set_index("clip_id").at["b-00000", "query"] == "q"
    store.shard_path(0).unlink()
    store.recover()
    assert set(store.index().clip_id) == {"b-00000"}


def test_set_splits_updates_the_index(tmp_path):
    store = FeatureStore(tmp_path)
    store.append(write_shard(store.shard_path(0), [entry("a-00000"), entry("b-00000", 1)]))
    assert store.set_splits({"a-00000": "train", "b-00000": "test", "c-00000": "test"}) == 2
    assert dict(zip(store.index().clip_id, store.index().split, strict=True)) == {"a-00000": "train", "b-00000": "test"}


def test_readable_with_safetensors_and_pandas_alone(tmp_path):
    store = FeatureStore(tmp_path)
    store.append(write_shard(store.shard_path(0), [entry("a-00000", 3)]))
    code = f"""
import sys
sys.modules['torch'] = None  # torch must not be needed
sys.modules['dvmset'] = None
import json, pandas as pd
from safetensors.numpy import load_file
idx = pd.read_parquet({str(store.index_path)!r})
row = idx[idx.clip_id == 'a-00000'].iloc[0]
t = load_file({str(tmp_path)!r} + '/' + row.shard)
print(row.sha256[:8], json.dumps({{k: list(v.shape) for k, v in t.items()}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    checksum, shapes = out.split(" ", 1)
    assert json.loads(shapes) == {"a-00000/global": [6, 8], "a-00000/rhythm": [300], "a-00000/rhythm_global": [300],
                                  "a-00000/codes": [2, 300]}
    assert checksum == tensors_sha256(synthetic(seed=3))[:8]


def test_format_1_shards_still_read_without_rhythm_global(tmp_path):
    """Shards written before rhythm_global existed: read, verified, windowed; the ablation says why not."""
    from safetensors.numpy import save_file

    from dvmset.dataset import FeatureWindows
    from flows.dataset.features import FeaturesConfig, _check_compatible

    t = {k: v for k, v in synthetic(seed=3).items() if k != "rhythm_global"}
    # the digest format 1 wrote for these tensors (pinned: a change to the checksum breaks old stores)
    assert tensors_sha256(t) == "7f0c450ee3168ddc3e5662fb2c4b8a93e06548fad009ccf37b5e11eb2867e71c"
    cfg = FeaturesConfig(clip_model="tiny", codec="tiny", clip_s=6)
    config = json.dumps({"identity": {**cfg.identity(), "format": "vidmusician-features/1"}})
    row = {"clip_id": "old-00000", "shard": "shard-00000.safetensors", "split": "train", "query": "q",
           "source_id": "old", "clip_s": 6, "embed_dim": 8, "sha256": tensors_sha256(t), "config": config}
    save_file({f"old-00000/{k}": v for k, v in t.items()}, str(tmp_path / "shard-00000.safetensors"),
              metadata={"format": "vidmusician-features/1", "clips": json.dumps([row])})
    store = FeatureStore(tmp_path)
    assert store.recover() == ["shard-00000.safetensors"]
    reader = ShardReader(tmp_path)
    assert sorted(reader.get("old-00000")) == ["codes", "global", "rhythm"]
    assert reader.verify("old-00000") and "rhythm_global" not in reader.window("old-00000", 1, 2)
    assert FeatureWindows(tmp_path, window_s=2)[0]["rhythm"].shape == (100,)
    with pytest.raises(ValueError, match="format 1.*move .* aside"):
        FeatureWindows(tmp_path, window_s=2, rhythm_source="global")
    with pytest.raises(ValueError, match="shard format 'vidmusician-features/1'.*still reads them.*aside"):
        _check_compatible(store, cfg)  # a features run into this folder says exactly why it cannot


def test_a_shard_of_an_unknown_format_is_refused_not_guessed(tmp_path):
    from safetensors.numpy import save_file

    store = FeatureStore(tmp_path)
    store.append(write_shard(store.shard_path(0), [entry("a-00000")]))
    t = synthetic()
    save_file({f"a-00000/{k}": v for k, v in t.items()}, str(store.shard_path(0)),
              metadata={"format": "vidmusician-features/9", "clips": "[]"})
    with pytest.raises(ValueError, match="features/9"):
        ShardReader(tmp_path).get("a-00000")
    with pytest.raises(ValueError, match="features/9"):
        read_shard_rows(store.shard_path(0))


def _store_of(tmp_path, shards: int = 4, per_shard: int = 3) -> FeatureStore:
    store = FeatureStore(tmp_path)
    for n in range(shards):
        store.append(write_shard(store.shard_path(n), [entry(f"v{n}-{k:05d}", n * per_shard + k, query=f"q{n}",
                                                             source_id=f"v{n}") for k in range(per_shard)]))
    return store


def test_the_index_is_read_and_rewritten_a_batch_at_a_time_with_the_same_result(tmp_path, monkeypatch):
    """Batches of 5 rows over 12 indexed clips in shards of 3: every batch boundary falls inside a shard or on
    one. Each operation equals what the whole frame gives (INDEX_BATCH large), row for row."""
    whole = _store_of(tmp_path / "whole")
    monkeypatch.setattr("dvmset.shards.INDEX_BATCH", 5)
    small = _store_of(tmp_path / "small")  # appended a batch at a time too
    assert [len(b) for b in small.index_batches()] == [5, 5, 2]
    assert small.index().equals(whole.index())

    splits = {"v0-00001": "test", "v2-00000": "train", "v3-00002": "valid", "nowhere-00000": "test"}
    assert small.set_splits(lambda ids: {c: splits[c] for c in ids if c in splits}) == 3  # a plan's lookup
    assert small.set_splits(splits) == 0  # nothing changed: the file is not written again
    assert small.set_splits({"v2-00000": "train"}, exclusive=True) == 2  # the others lose their split
    got = {b["clip_id"]: b["split"] for batch in small.index_batches(["clip_id", "split"]) for b in batch.to_pylist()}
    assert got == {c: ("train" if c == "v2-00000" else None) for c in got} and len(got) == 12

    assert small.shards_of(["v1-00002", "v3-00000", "nowhere-00000"]) == {"shard-00001.safetensors",
                                                                          "shard-00003.safetensors"}
    assert small.ids_in_shards(["shard-00002.safetensors"]) == ["v2-00000", "v2-00001", "v2-00002"]
    assert small.row("v3-00001")["sha256"] == whole.index().set_index("clip_id").at["v3-00001", "sha256"]
    assert small.row("nowhere-00000") is None
    assert list(small.index_column("clip_id").to_pylist()) == list(whole.index().clip_id)

    assert small.remove_clips(["v1-00000", "v1-00001", "v1-00002", "v2-00001"]) == ["shard-00001.safetensors",
                                                                                   "shard-00002.safetensors"]
    assert list(small.index().clip_id) == ["v0-00000", "v0-00001", "v0-00002", "v2-00000", "v2-00002",
                                           "v3-00000", "v3-00001", "v3-00002"]
    assert small.recover() == []  # the shard headers agree with the rewritten index

    with pytest.raises(ValueError, match="already in the index"):
        small.append(write_shard(small.shard_path(9), [entry("v3-00001", 99)]))
    small.shard_path(9).unlink()
    small.append(write_shard(small.shard_path(1), [entry("w-00000", 7)]))  # a lower shard number: sorted in
    assert list(small.index().shard).index("shard-00001.safetensors") == 3


def test_the_shard_check_reads_the_index_a_batch_at_a_time_and_finds_the_same_problems(tmp_path, monkeypatch):
    """Batches of 5 over shards of 3: a clip whose tensors changed on disk and a missing shard are found, and
    the ``clip_ids`` and ``shards`` filters pick exactly their rows, as the whole frame's check did."""
    from dvmset.shards import check_shards

    monkeypatch.setattr("dvmset.shards.INDEX_BATCH", 5)
    store = _store_of(tmp_path)
    rows = store.index()
    write_shard(store.shard_path(2), [entry(f"v2-{k:05d}", 6 + k + (k == 1), query="q2", source_id="v2")
                                      for k in range(3)])  # v2-00001's tensors no longer match the index
    store.shard_path(3).unlink()
    assert store.index().equals(rows)  # the index still says what was extracted

    bad = [("shard-00002.safetensors", "v2-00001"), ("shard-00003.safetensors", None)]
    assert [(p.shard, p.clip_id) for p in check_shards(tmp_path)] == bad
    assert "sha256" in check_shards(tmp_path)[0].problem and check_shards(tmp_path)[1].problem == "the file is missing"
    assert [(p.shard, p.clip_id) for p in check_shards(tmp_path, shards=["shard-00002.safetensors"])] == bad[:1]
    assert check_shards(tmp_path, shards=["shard-00000.safetensors", "shard-00001.safetensors"]) == []
    assert check_shards(tmp_path, ["v2-00000", "v2-00002", "v1-00001"]) == []  # v2's sound clips only
    assert [(p.shard, p.clip_id) for p in check_shards(tmp_path, ["v2-00001", "v3-00000"])] == bad
    assert check_shards(tmp_path, ["v3-00000"], shards=["shard-00002.safetensors"]) == []  # both filters hold
    runs = list(store.shard_runs())
    assert [(s, ids) for s, ids, _ in runs] == [(s, list(g.clip_id)) for s, g in rows.groupby("shard", sort=True)]
    assert [sha for _, _, shas in runs for sha in shas] == list(rows.sha256)


def test_recover_streams_the_index_and_refuses_only_clips_a_kept_shard_holds(tmp_path, monkeypatch):
    """A crash's orphan shard after every indexed one is appended to the streamed index; a shard gone from disk
    loses its rows in the same pass; a clip of a gone shard extracted again into an orphan is no duplicate, but
    one a kept shard holds is refused. The result equals the whole frame's (sorted by shard, clip id)."""
    monkeypatch.setattr("dvmset.shards.INDEX_BATCH", 5)
    store = _store_of(tmp_path)
    assert store.count() == 12 and FeatureStore(tmp_path / "none").count() == 0
    store.shard_path(1).unlink()  # gone: its three rows drop
    write_shard(store.shard_path(4), [entry("v1-00000", 40), entry("w-00000", 41)])  # killed before its index
    before = store.index()
    assert store.recover() == ["shard-00004.safetensors"]
    after = store.index()
    want = before[before.shard != "shard-00001.safetensors"].clip_id.tolist() + ["v1-00000", "w-00000"]
    assert after.clip_id.tolist() == want and store.count() == 11
    groups = pq.ParquetFile(store.index_path).metadata
    assert [groups.row_group(i).num_rows for i in range(groups.num_row_groups)] == [3, 4, 2, 2]  # streamed:
    # each batch of 5 less shard 1's rows, then the recovered shard (the whole frame's rewrite makes 5, 5, 1)
    assert after.set_index("clip_id").at["v1-00000", "shard"] == "shard-00004.safetensors"
    assert store.recover() == []  # nothing left to do: the file is not written again
    mtime = store.index_path.stat().st_mtime_ns
    assert store.recover() == [] and store.index_path.stat().st_mtime_ns == mtime

    write_shard(store.shard_path(5), [entry("v0-00001", 50)])  # v0-00001 is in shard 0, which is kept
    with pytest.raises(ValueError, match="repeat clips already indexed.*v0-00001"):
        store.recover()
    assert store.index().equals(after)  # refused whole: nothing written
    store.shard_path(5).unlink()
    store.shard_path(0).rename(store.shard_path(0).with_name("kept-aside.safetensors"))
    write_shard(store.shard_path(1), [entry("x-00000", 60)])  # an orphan below the highest shard: sorted in
    assert store.recover() == ["shard-00001.safetensors"]
    assert store.index().shard.tolist() == sorted(store.index().shard.tolist())
    assert "v0-00000" not in set(store.index().clip_id) and "x-00000" in set(store.index().clip_id)


def test_a_shard_check_remembered_by_the_whole_frame_still_holds_read_a_batch_at_a_time(tmp_path, monkeypatch):
    """The remembered stamps hash each shard's index rows; read in batches that cut shards apart, the hashes are
    the ones the row-by-row code wrote (a memo from before stays valid: no shard is read again)."""
    import hashlib

    from dvmset.shard_checks import _row_hashes

    store = _store_of(tmp_path)
    df = store.index()
    ref = {}
    for shard, rows in df.groupby("shard", sort=True):  # the earlier row-by-row stamp
        h = hashlib.sha256(b"2048\n")
        for clip_id, sha in zip(rows.clip_id, rows.sha256, strict=True):
            h.update(f"{clip_id}\t{sha}\n".encode())
        ref[shard] = h.hexdigest()
    monkeypatch.setattr("dvmset.shards.INDEX_BATCH", 5)
    assert {s: h.hexdigest() for s, h in _row_hashes(store, 2048).items()} == ref
