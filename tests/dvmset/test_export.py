"""Export: split by source video and stratified by query; manifest, audiocraft JSONL, card, split write-back."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
from feature_helpers import add_clips, entry
from sqlalchemy import select

from dvmset.constants import TEST_FRACTION
from dvmset.export import SplitItem, export_dataset, plan_split
from dvmset.records import ClipStatus
from dvmset.shards import FeatureStore, write_shard
from dvmset.tables import Annotator, Clip, Decision
from pipeline.probe import audio_rate


def random_items(seed: int, n_queries: int = 12, max_sources: int = 25) -> list[SplitItem]:
    rng = np.random.default_rng(seed)
    items = []
    for q in range(n_queries):
        for s in range(int(rng.integers(1, max_sources))):
            for c in range(int(rng.integers(1, 5))):
                items.append(SplitItem(f"q{q}s{s}-{c * 60:05d}", f"q{q}s{s}", f"query {q}"))
    return items


def sources_by_split(items, split):
    out = defaultdict(set)
    for it in items:
        out[it.source_id].add(split[it.clip_id])
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_source_in_two_splits_and_every_query_in_both(seed):
    items = random_items(seed)
    split = plan_split(items, seed=seed)
    assert set(split) == {it.clip_id for it in items}
    assert all(len(s) == 1 for s in sources_by_split(items, split).values())
    per_query = defaultdict(lambda: defaultdict(set))
    for it in items:
        per_query[it.query][split[it.clip_id]].add(it.source_id)
    for q, parts in per_query.items():
        n_sources = len(parts["train"] | parts["test"])
        if n_sources >= 2:
            assert parts["train"] and parts["test"], q
        else:
            assert not parts["test"], q  # a lone source trains


def test_test_fraction_close_to_target_on_a_paper_sized_set():
    rng = np.random.default_rng(7)
    items = []
    for q in range(47):  # 47 queries, ~2000 videos, ~3800 clips like DVMSet
        for s in range(43):
            for c in range(int(rng.integers(1, 4))):
                items.append(SplitItem(f"q{q}s{s}-{c:05d}", f"q{q}s{s}", f"q{q}"))
    split = plan_split(items, TEST_FRACTION, seed=0)
    frac = sum(v == "test" for v in split.values()) / len(split)
    assert abs(frac - TEST_FRACTION) < 0.015, frac
    assert plan_split(items, TEST_FRACTION, seed=0) == split  # deterministic
    assert plan_split(items, TEST_FRACTION, seed=1) != split


def test_fixed_sources_keep_their_split():
    items = random_items(3)
    first = plan_split(items, 0.3, seed=0)
    fixed = {it.source_id: first[it.clip_id] for it in items[::3]}
    again = plan_split(items, 0.3, seed=5, fixed=fixed)
    for it in items:
        if it.source_id in fixed:
            assert again[it.clip_id] == fixed[it.source_id]
    assert all(len(s) == 1 for s in sources_by_split(items, again).values())
    with pytest.raises(ValueError):
        plan_split(items, 1.0)


def test_export_writes_manifest_jsonl_card_and_the_split(data_root, catalog, clip_factory):
    clip = clip_factory(4.0, cut_every_s=2.0)
    layout = {f"v{i}": (f"query {i % 3}", 1 + i % 2) for i in range(9)}
    ids = add_clips(catalog, data_root, clip, layout)
    add_clips(catalog, data_root, clip, {"r0": ("query 0", 2)}, status=ClipStatus.REJECTED)
    store = FeatureStore(data_root.features_dir)
    store.append(write_shard(store.shard_path(0), [entry(c) for c in ids[:5]]))
    store.append(write_shard(store.shard_path(1), [entry(c) for c in ids[5:]]))
    with catalog.session() as s:
        s.add_all([Annotator(id=1, name="ann", token_hash="h1"), Annotator(id=2, name="bob", token_hash="h2")])
        s.flush()
        for k, c in enumerate(ids[:4]):
            s.add(Decision(clip_id=c, annotator_id=1, verdict="accept"))
            s.add(Decision(clip_id=c, annotator_id=2, verdict="accept" if k else "reject", reasons=["noise"]))
    summary = export_dataset(data_root, catalog, "v1", test_fraction=0.3, seed=0,
                             audio_rate=audio_rate)
    out = data_root.export_dir("v1")
    m = pd.read_parquet(out / "manifest.parquet")
    assert sorted(m.clip_id) == sorted(ids) and summary.train + summary.test == len(ids)
    assert (m.groupby("source_id").split.nunique() == 1).all()
    assert set(m[m.split == "test"]["query"]) == set(m["query"])  # every query tested
    with catalog.session() as s:
        db = dict(s.execute(select(Clip.id, Clip.split)).tuples().all())
    assert all(db[c] == sp for c, sp in zip(m.clip_id, m.split, strict=True))
    assert db["r0-00000"] is None  # rejected clips are not split
    idx = store.index().set_index("clip_id")
    assert all(idx.at[c, "split"] == db[c] for c in ids[:5])
    assert m.set_index("clip_id").at[ids[0], "shard"] == "shard-00000.safetensors"
    assert m.shard.notna().all() and summary.no_features == ()

    from audiocraft.data.audio_dataset import load_audio_meta

    metas = {p: load_audio_meta(out / f"{p}.jsonl") for p in ("train", "test")}
    assert len(metas["train"]) == summary.train and len(metas["test"]) == summary.test
    for meta in metas["train"] + metas["test"]:
        assert meta.sample_rate == 44100 and meta.duration == pytest.approx(4.0, abs=0.1)
        info = json.loads(open(meta.path[:-4] + ".json").read())  # where MusicDataset looks
        assert info["clip_id"] + ".mp4" == meta.path.rsplit("/", 1)[1]
        assert open(meta.path, "rb").read() == clip.read_bytes()
    card = (out / "DATASET.md").read_text()
    assert "not available" not in card.lower()
    # the per-query table, cell by cell, against numbers worked out here from the layout and the manifest
    table = {cells[0]: cells[1:] for line in card.splitlines() if line.startswith("| query ")
             for cells in [[c.strip() for c in line.strip("|").split("|")]] if cells[0] != "query"}
    assert sorted(table) == ["query 0", "query 1", "query 2"]
    for q, row in table.items():
        accepted = sum(n for qq, n in layout.values() if qq == q)
        rejected = 2 if q == "query 0" else 0
        in_split = m[m["query"] == q].split.value_counts()
        assert row == [str(in_split.get("train", 0)), str(in_split.get("test", 0)), str(accepted), str(rejected),
                       str(accepted + rejected), f"{accepted / (accepted + rejected):.1%}"], q
    assert f"{len(ids) + 2} clips cut, {len(ids) + 2} reviewed, {len(ids)} accepted" in card
    # 4 clips, 2 raters, one disagreement: p(accept) = 7/8, P_e = 50/64, P = 3/4 -> kappa = -1/7
    assert "Fleiss' kappa (accept/reject): -0.143 over 4 clips" in card

    # a re-export with more accepted clips never moves a video across splits
    new = add_clips(catalog, data_root, clip, {"w0": ("query 1", 2), "w1": ("query 2", 1)})
    store.append(write_shard(store.shard_path(2), [entry(c) for c in new]))
    export_dataset(data_root, catalog, "v2", test_fraction=0.3, seed=9)
    m2 = pd.read_parquet(data_root.export_dir("v2") / "manifest.parquet").set_index("clip_id")
    assert all(m2.at[c, "split"] == sp for c, sp in zip(m.clip_id, m.split, strict=True))
    assert len(m2) == len(ids) + 3


def test_card_counts_url_sourced_clips_under_their_own_row(data_root, catalog, clip_factory):
    """Clips curated from plain URLs have no query; the card's table must still count their splits."""
    clip = clip_factory(4.0, cut_every_s=2.0)
    ids = add_clips(catalog, data_root, clip, {f"u{i}": (None, 1) for i in range(4)})
    summary = export_dataset(data_root, catalog, "urls", test_fraction=0.25, seed=0)

    card = (data_root.export_dir("urls") / "DATASET.md").read_text()
    row = next(line for line in card.splitlines() if line.startswith("| (url) |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert (int(cells[1]), int(cells[2]), int(cells[3])) == (summary.train, summary.test, len(ids))
    assert summary.train + summary.test == len(ids) and summary.test >= 1


def test_a_clip_rejected_after_an_export_leaves_its_split(data_root, catalog, clip_factory):
    """Re-exporting after a verdict changed: the clip leaves the catalog split and the index split."""
    from dvmset.dataset import FeatureWindows

    clip = clip_factory(4.0, cut_every_s=2.0)
    ids = add_clips(catalog, data_root, clip, {f"v{i}": ("query 0", 1) for i in range(6)})
    store = FeatureStore(data_root.features_dir)
    store.append(write_shard(store.shard_path(0), [entry(c, seed=k) for k, c in enumerate(ids)]))
    export_dataset(data_root, catalog, "before", test_fraction=0.2, seed=0)
    gone = next(c for c in ids if store.index().set_index("clip_id").at[c, "split"] == "train")
    with catalog.session() as s:
        s.get(Clip, gone).status = ClipStatus.REJECTED

    export_dataset(data_root, catalog, "after", test_fraction=0.2, seed=0)

    with catalog.session() as s:
        assert s.get(Clip, gone).split is None
    index = store.index().set_index("clip_id")
    assert pd.isna(index.at[gone, "split"])
    assert index.split.notna().sum() == len(ids) - 1
    served = {FeatureWindows(data_root.features_dir, split="train", window_s=2, offset_s=0)[i]["clip_id"]
              for i in range(len(FeatureWindows(data_root.features_dir, split="train", window_s=2, offset_s=0)))}
    assert gone not in served and served


def test_export_without_accepted_clips_is_refused(data_root, catalog):
    with pytest.raises(ValueError, match="no accepted clips"):
        export_dataset(data_root, catalog, "empty")


def test_audiocraft_reads_the_export_through_its_own_layout(data_root, catalog, clip_factory, tmp_path, monkeypatch):
    """MusicGen's solver trains on ``dset=<export>/egs``: AudioDataset.from_meta(egs/train) reads data.jsonl,
    each line's info_path opens the clip's MusicInfo, and MusicDataset yields the clip's audio with its query."""
    from audiocraft.data.audio_dataset import AudioDataset
    from audiocraft.data.music_dataset import MusicDataset
    from audiocraft.data.zip import PathInZip, open_file_in_zip

    clip = clip_factory(4.0, cut_every_s=2.0)
    ids = add_clips(catalog, data_root, clip, {f"v{i}": (f"query {i % 2}", 1) for i in range(6)})
    summary = export_dataset(data_root, catalog, "ac", test_fraction=0.3, seed=0)
    out = data_root.export_dir("ac")
    for part, n in (("train", summary.train), ("test", summary.test)):
        ds = AudioDataset.from_meta(out / "egs" / part, segment_duration=2.0, sample_rate=32000, channels=1,
                                    num_samples=4, return_info=True)
        assert len(ds.meta) == n and n > 0
        assert (out / "egs" / part / "data.jsonl").read_text() == (out / f"{part}.jsonl").read_text()
        for meta in ds.meta:
            assert isinstance(meta.info_path, PathInZip)
            with open_file_in_zip(meta.info_path) as f:
                info = json.loads(f.read())
            assert info == json.loads(open(meta.path[:-4] + ".json").read())  # the JSON beside the audio
            assert info["clip_id"] in ids and meta.duration == 4.0  # the catalog's duration
        wav, seg = ds[0]
        assert wav.shape == (1, 64000) and seg.sample_rate == 32000 and float(wav.abs().max()) > 0.01
    # MusicDataset maps paths through audiocraft's team config, which the PyPI wheel does not ship:
    # a team file without dataset mappers, as a user outside audiocraft's repo points AUDIOCRAFT_CONFIG at
    from audiocraft.environment import AudioCraftEnvironment

    (tmp_path / "team.yaml").write_text("default:\n  dataset_mappers: {}\n")
    monkeypatch.setenv("AUDIOCRAFT_CONFIG", str(tmp_path / "team.yaml"))
    monkeypatch.setenv("AUDIOCRAFT_CLUSTER", "default")
    monkeypatch.setattr(AudioCraftEnvironment, "_instance", None)
    music = MusicDataset.from_meta(out / "egs" / "train", segment_duration=2.0, sample_rate=32000, channels=1,
                                   num_samples=2, return_info=True)
    _, info = music[0]  # with MusicGen's default info_fields_required: every MusicInfo key is there
    assert info.description in {"query 0", "query 1"} and info.title.startswith("title v") and info.name in ids


def test_export_takes_durations_from_the_catalog_and_decodes_nothing(data_root, catalog, tmp_path):
    """A clip file no decoder can read still exports, with the catalog's duration (nothing probes it)."""
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    ids = add_clips(catalog, data_root, junk, {f"v{i}": ("q", 1) for i in range(3)})
    with catalog.session() as s:
        s.get(Clip, ids[0]).duration_s = 59.96
    export_dataset(data_root, catalog, "raw", test_fraction=0.3, seed=0)
    m = pd.read_parquet(data_root.export_dir("raw") / "manifest.parquet").set_index("clip_id")
    assert m.at[ids[0], "duration_s"] == 59.96 and m.at[ids[1], "duration_s"] == 4.0


def test_export_syncs_the_clip_jsons_once_not_once_per_clip(data_root, catalog, tmp_path, monkeypatch):
    """60 clips: every MusicInfo JSON is whole and right, the splits are in the catalog, and the number of
    fsyncs does not grow with the clips (one file-system sync for the JSONs, not an fsync each)."""
    import os

    from dvmset import io as dio

    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\0" * 256)
    ids = add_clips(catalog, data_root, junk, {f"v{i:02d}": (f"q{i % 3}", 2) for i in range(30)})
    calls = {"fsync": 0, "syncfs": 0}
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.__setitem__("fsync", calls["fsync"] + 1), real_fsync(fd))[1])
    monkeypatch.setattr(dio, "sync_filesystem", lambda p: calls.__setitem__("syncfs", calls["syncfs"] + 1))
    export_dataset(data_root, catalog, "many", test_fraction=0.3, seed=0)
    assert calls["syncfs"] == 1 and calls["fsync"] < 20  # the manifest, JSONL, card, release files: not 60+
    audio = data_root.export_dir("many") / "audio"
    with catalog.session() as s:
        split = {c.id: c.split for c in s.query(Clip)}
    assert set(split.values()) == {"train", "test"}
    for cid in ids:
        info = json.loads((audio / f"{cid}.json").read_text())
        assert info["clip_id"] == cid and info["name"] == cid and (audio / f"{cid}.mp4").is_symlink()
    assert not list(audio.glob(".*part*"))
