"""Takedown steps on a root with synthetic shards and a real export: the clip leaves the index, the
shards (the others' tensors byte for byte the same), the manifest, the JSONL, the links, info.zip and
the card; the catalog keeps its row with when and why; every step run twice changes nothing more."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pandas as pd
import pytest
from feature_helpers import add_clips, entry, synthetic

from dvmset.export import export_dataset
from dvmset.export_card import write_card
from dvmset.shards import FeatureStore, ShardEntry, ShardReader, write_shard
from dvmset.tables import Clip, Source, Takedown
from dvmset.takedown import (
    TAKEN_DOWN,
    TakedownError,
    finish,
    mark_catalog,
    plan_takedown,
    refusal,
    scrub_export,
    scrub_features,
)


@pytest.fixture
def exported(data_root, catalog, clip_factory):
    ids = add_clips(catalog, data_root, clip_factory(4.0), {"a": ("q1", 2), "b": ("q1", 1), "c": ("q2", 2)})
    store = FeatureStore(data_root.features_dir)
    rows = write_shard(store.shard_path(0), [entry(i, seed=n) for n, i in enumerate(ids[:3])])
    rows += write_shard(store.shard_path(1), [entry(i, seed=n + 3) for n, i in enumerate(ids[3:])])
    store.append(rows)
    export_dataset(data_root, catalog, "v1", test_fraction=0.3, seed=0)
    return ids


def _all_tensors(features_dir) -> dict[str, dict[str, bytes]]:
    r = ShardReader(features_dir)
    return {c: {k: v.tobytes() for k, v in r.get(c).items()} for c in r.clip_ids}


def test_a_clip_is_gone_from_shards_index_and_export_and_the_rest_is_untouched(data_root, catalog, exported):
    gone = "a-00060"  # shares shard 0 with two other clips
    before = _all_tensors(data_root.features_dir)
    out = data_root.export_dir("v1")
    plan = plan_takedown(catalog, clip=gone, reason="rights holder request #12")
    assert plan.clip_ids == (gone,) and plan.video_id == "a" and not plan.finished
    mark_catalog(catalog, plan)
    store = FeatureStore(data_root.features_dir)
    assert scrub_features(store, plan.clip_ids) == ["shard-00000.safetensors"]

    after = _all_tensors(data_root.features_dir)
    assert gone not in after and gone not in ShardReader(data_root.features_dir)
    assert after == {c: t for c, t in before.items() if c != gone}  # bit-identical, every other clip
    reader = ShardReader(data_root.features_dir)
    assert all(reader.verify(c) for c in reader.clip_ids)  # index checksums still hold
    assert store.recover() == []  # the shard headers agree with the index

    assert scrub_export(out, plan.clip_ids, lambda o, m: write_card(o, m, catalog))
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert gone not in set(manifest.clip_id) and len(manifest) == 4
    for jsonl in [out / "train.jsonl", out / "test.jsonl", *out.glob("egs/*/data.jsonl")]:
        assert gone not in jsonl.read_text()
    assert not (out / "audio" / f"{gone}.mp4").exists() and not (out / "audio" / f"{gone}.json").exists()
    with zipfile.ZipFile(out / "audio" / "info.zip") as z:
        assert f"{gone}.json" not in z.namelist() and len(z.namelist()) == 4
    assert gone not in (out / "DATASET.md").read_text() and "4 clips" in (out / "DATASET.md").read_text()
    finish(catalog, plan)

    with catalog.session() as s:
        row = s.get(Clip, gone)
        assert (row.status, row.takedown_reason, row.path) == (TAKEN_DOWN, "rights holder request #12", None)
        assert row.taken_down_at is not None
        assert s.get(Source, "a").status == "done"  # a clip takedown leaves the source's other clips
        assert s.query(Takedown).one().finished_at is not None
    assert "rights holder request #12" in refusal(catalog, video_id="a")
    assert refusal(catalog, url="https://example.invalid/a") == refusal(catalog, video_id="a")
    assert refusal(catalog, video_id="b") is None

    # all again: nothing else changes, and the same request row is found
    again = plan_takedown(catalog, clip=gone, reason="another wording")
    assert again.id == plan.id and again.finished and again.reason == "rights holder request #12"
    assert scrub_features(store, again.clip_ids) == []
    assert not scrub_export(out, again.clip_ids, lambda o, m: write_card(o, m, catalog))
    assert _all_tensors(data_root.features_dir) == after


def test_a_video_takedown_takes_every_clip_and_a_lone_shard_is_deleted(data_root, catalog, exported):
    plan = plan_takedown(catalog, video="c", reason="uploader asked")
    assert plan.clip_ids == ("c-00000", "c-00060")
    mark_catalog(catalog, plan)
    store = FeatureStore(data_root.features_dir)
    assert scrub_features(store, plan.clip_ids) == ["shard-00001.safetensors"]
    assert not store.shard_path(1).exists() and set(store.index().clip_id) == {"a-00000", "a-00060", "b-00000"}
    with catalog.session() as s:
        src = s.get(Source, "c")
        assert (src.status, src.takedown_reason) == (TAKEN_DOWN, "uploader asked")
    assert "video c was taken down" in refusal(catalog, video_id="c")


def test_a_shard_rewrite_killed_mid_write_leaves_a_temp_file_the_next_run_sweeps(data_root, catalog, exported):
    store = FeatureStore(data_root.features_dir)
    (store.dir / ".shard-00000.x1.part.safetensors").write_bytes(b"half a shard")
    scrub_features(store, ["b-00000"])
    assert not list(store.dir.glob(".*part*"))
    assert "b-00000" not in ShardReader(store.dir)


def test_what_cannot_be_planned_is_refused(catalog, exported):
    with pytest.raises(TakedownError, match="either a video"):
        plan_takedown(catalog, video="a", clip="a-00000", reason="x")
    with pytest.raises(TakedownError, match="--reason"):
        plan_takedown(catalog, clip="a-00000", reason="  ")
    with pytest.raises(TakedownError, match="not in the catalog"):
        plan_takedown(catalog, video="zz", reason="x")
    with pytest.raises(TakedownError, match="not in the catalog"):
        plan_takedown(catalog, clip="zz-00000", reason="x")


def test_tensors_of_a_rewritten_shard_keep_their_dtypes(data_root, catalog, exported):
    scrub_features(FeatureStore(data_root.features_dir), ["a-00000"])
    t = ShardReader(data_root.features_dir).get("a-00060")
    assert {k: v.dtype for k, v in t.items()} == {"global": np.float16, "rhythm": np.float32,
                                                  "rhythm_global": np.float32, "codes": np.int16}


@pytest.mark.parametrize("egs_copy", [False, True])  # audiocraft's layout a link to valid.jsonl; an older export's copy
def test_a_valid_clip_taken_down_leaves_the_valid_jsonl_in_both_layouts(data_root, catalog, clip_factory, egs_copy):
    add_clips(catalog, data_root, clip_factory(4.0), {f"v{i}": ("q", 1) for i in range(6)})
    export_dataset(data_root, catalog, "v1", test_fraction=0.2, valid_fraction=0.2, seed=0)
    out = data_root.export_dir("v1")
    if egs_copy:
        egs = out / "egs" / "valid" / "data.jsonl"
        text = egs.read_bytes()
        egs.unlink()
        egs.write_bytes(text)
    m = pd.read_parquet(out / "manifest.parquet")
    gone = m[m.split == "valid"].clip_id.iloc[0]
    assert gone in (out / "valid.jsonl").read_text() and gone in (out / "egs" / "valid" / "data.jsonl").read_text()
    assert scrub_export(out, [gone], lambda o, mm: write_card(o, mm, catalog))
    assert gone not in (out / "valid.jsonl").read_text()
    assert gone not in (out / "egs" / "valid" / "data.jsonl").read_text()
    assert (out / "egs" / "valid" / "data.jsonl").read_text() == (out / "valid.jsonl").read_text()
    assert (out / "egs" / "valid" / "data.jsonl").is_symlink() != egs_copy  # a link stays a link
    assert gone not in set(pd.read_parquet(out / "manifest.parquet").clip_id)


def test_only_the_shards_holding_the_clip_are_read_and_a_killed_run_finishes_them(data_root, catalog, exported,
                                                                                   monkeypatch):
    from dvmset import shards as shards_mod
    from dvmset.takedown import PENDING_SHARDS

    store = FeatureStore(data_root.features_dir)
    read, real_read = [], shards_mod.read_shard_rows
    monkeypatch.setattr(shards_mod, "read_shard_rows", lambda p: (read.append(p.name), real_read(p))[1])
    real_rewrite = shards_mod._rewrite_without

    def killed(path, gone):
        raise KeyboardInterrupt("killed after the index lost the clip, before its shard was rewritten")

    monkeypatch.setattr(shards_mod, "_rewrite_without", killed)
    with pytest.raises(KeyboardInterrupt):
        scrub_features(store, ["c-00000"])
    assert "c-00000" not in set(store.index().clip_id) and (store.dir / PENDING_SHARDS).is_file()
    monkeypatch.setattr(shards_mod, "_rewrite_without", real_rewrite)
    assert scrub_features(store, ["c-00000"]) == ["shard-00001.safetensors"]  # the note says where it was
    assert read == ["shard-00001.safetensors"]  # shard 0 (not holding it) never opened
    assert not (store.dir / PENDING_SHARDS).exists()
    assert "c-00000" not in {r["clip_id"] for r in real_read(store.shard_path(1))}


def test_the_card_after_a_takedown_equals_the_card_written_from_scratch(data_root, catalog, exported):
    """A takedown rewrites the card from the facts kept beside it (card_facts.parquet) less the clip gone,
    not from every clip's catalog row: the text equals a card written from the catalog, and the facts
    that changed (the clip had the only 'none' separator and the only flagged still picture) are gone."""
    with catalog.session() as s:
        for n, cid in enumerate(exported):
            clip = s.get(Clip, cid)
            clip.still_s, clip.silence_ratio, clip.scene_cuts = (12.0 if n == 0 else 1.0 + n), 0.01 * n, n
        s.get(Source, "a").separator, s.get(Source, "b").separator = "none", "htdemucs"
        s.get(Source, "c").loudness_out_lufs = -14.5
    out = data_root.export_dir("v1")
    export_dataset(data_root, catalog, "v1", test_fraction=0.3, seed=0)
    before = (out / "DATASET.md").read_text()
    assert (out / "card_facts.parquet").is_file() and "**not removed**" in before
    assert "| still_s | seconds of still picture | >= 10 s | 1 |" in before

    plan = plan_takedown(catalog, video="a", reason="rights holder request #13")
    mark_catalog(catalog, plan)
    assert scrub_export(out, plan.clip_ids, lambda o, m: write_card(o, m, catalog, reuse_facts=True))
    kept = (out / "DATASET.md").read_text()
    assert "**not removed**" not in kept and "| still_s | seconds of still picture | >= 10 s | 0 |" in kept
    facts = pd.read_parquet(out / "card_facts.parquet")
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert list(facts.clip_id) == list(manifest.clip_id) and not set(plan.clip_ids) & set(facts.clip_id)
    write_card(out, out / "manifest.parquet", catalog)  # from the catalog
    assert (out / "DATASET.md").read_text() == kept


def test_the_card_counts_each_features_run_by_the_shards_the_manifest_names(data_root, catalog, clip_factory,
                                                                            monkeypatch):
    """The card's features lines count the export's clips by the run that made their shard: the manifest's shard
    column, and each shard's config from the index read in batches of 2 (which cut shard 0 apart). A takedown
    counts one clip fewer for the run that made its shard, as a card written from scratch does; a shard written
    after the export (of a clip it left out for having no features) adds nothing."""
    monkeypatch.setattr("dvmset.shards.INDEX_BATCH", 2)
    ids = add_clips(catalog, data_root, clip_factory(4.0), {"a": ("q1", 2), "b": ("q1", 1), "c": ("q2", 2)})
    runs = [json.dumps({"identity": {"clip_model": m, "codec": "tiny", "fps": 1, "token_rate": 50,
                                     "sample_rate": 32000, "format": "vidmusician-features/2"}}) for m in ("A", "B")]
    store = FeatureStore(data_root.features_dir)
    for n, (run, clips) in enumerate([(runs[0], ids[:3]), (runs[1], ids[3:4])]):
        store.append(write_shard(store.shard_path(n), [ShardEntry(c, synthetic(seed=k), run)
                                                       for k, c in enumerate(clips)]))
    export_dataset(data_root, catalog, "v1", test_fraction=0.3, seed=0)
    out = data_root.export_dir("v1")
    store.append(write_shard(store.shard_path(2), [ShardEntry(ids[4], synthetic(seed=9), runs[1])]))  # after it

    def features_lines() -> list[str]:
        return [line for line in (out / "DATASET.md").read_text().splitlines() if line.startswith("- **Features**")]

    assert [line.split(" at ")[0] for line in features_lines()] == [
        "- **Features** (3 clips): CLIP `A`", "- **Features** (1 clips): CLIP `B`"]
    plan = plan_takedown(catalog, video="a", reason="rights holder request #14")  # a-00000, a-00060: run A
    mark_catalog(catalog, plan)
    scrub_features(store, plan.clip_ids)
    assert scrub_export(out, plan.clip_ids, lambda o, m: write_card(o, m, catalog, reuse_facts=True))
    after = features_lines()
    assert [line.split(" at ")[0] for line in after] == [
        "- **Features** (1 clips): CLIP `A`", "- **Features** (1 clips): CLIP `B`"]
    write_card(out, out / "manifest.parquet", catalog)  # from scratch: the same lines
    assert features_lines() == after
