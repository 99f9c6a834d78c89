"""Export: split by source video and stratified by query; manifest, audiocraft JSONL, card, split write-back."""

from __future__ import annotations

import json
import os
import subprocess
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
from feature_helpers import add_clips, entry, synthetic
from sqlalchemy import select

from dvmset.constants import TEST_FRACTION, VALID_FRACTION
from dvmset.export import SplitItem, export_dataset, plan_split
from dvmset.records import ClipStatus
from dvmset.shards import FeatureStore, ShardEntry, write_shard
from dvmset.tables import Annotator, Clip, Decision, Source
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
def test_no_source_in_two_splits_and_every_query_in_each(seed):
    items = random_items(seed)
    split = plan_split(items, seed=seed)
    assert set(split) == {it.clip_id for it in items}
    assert set(split.values()) == {"train", "valid", "test"}
    assert all(len(s) == 1 for s in sources_by_split(items, split).values())
    per_query = defaultdict(lambda: defaultdict(set))
    for it in items:
        per_query[it.query][split[it.clip_id]].add(it.source_id)
    for q, parts in per_query.items():
        n_sources = len(parts["train"] | parts["valid"] | parts["test"])
        if n_sources >= 3:
            assert parts["train"] and parts["valid"] and parts["test"], q
        elif n_sources == 2:
            assert parts["train"] and parts["test"] and not parts["valid"], q
        else:
            assert not parts["test"] and not parts["valid"], q  # a lone source trains


def test_valid_fraction_zero_gives_the_two_split_plan():
    items = random_items(4)
    split = plan_split(items, 0.2, seed=3, valid_fraction=0.0)
    assert {"train", "test"} <= set(split.values()) <= {"train", "valid", "test"}
    with pytest.raises(ValueError, match="leave clips to train"):
        plan_split(items, 0.5, valid_fraction=0.5)
    with pytest.raises(ValueError, match="valid_fraction"):
        plan_split(items, 0.1, valid_fraction=-0.1)


def test_an_old_two_split_record_lends_train_videos_to_valid_and_never_moves_test():
    """An export recorded before valid splits existed: re-exported, its test videos stay test; valid is drawn
    from its train videos only; once a valid split is recorded, nothing moves at all."""
    items = random_items(5)
    old = plan_split(items, 0.2, seed=0, valid_fraction=0.0)
    fixed = {it.source_id: old[it.clip_id] for it in items}
    new = plan_split(items, 0.2, seed=0, fixed=fixed, valid_fraction=0.1)
    assert {c for c, s in new.items() if s == "test"} == {c for c, s in old.items() if s == "test"}
    assert {old[c] for c, s in new.items() if s == "valid"} == {"train"}
    frac = sum(s == "valid" for s in new.values()) / len(new)
    assert 0.05 < frac < 0.15, frac
    again = plan_split(items, 0.2, seed=7, fixed={it.source_id: new[it.clip_id] for it in items}, valid_fraction=0.3)
    assert again == new


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
    valid = sum(v == "valid" for v in split.values()) / len(split)
    assert abs(valid - VALID_FRACTION) < 0.015, valid
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
    assert sorted(m.clip_id) == sorted(ids) and summary.train + summary.valid + summary.test == len(ids)
    assert (m.groupby("source_id").split.nunique() == 1).all()
    assert set(m[m.split == "test"]["query"]) == set(m["query"])  # every query tested
    assert set(m[m.split == "valid"]["query"]) == set(m["query"])  # and validated (three videos each)
    assert (m.sample_rate == 44100).all()  # the clip files' AAC rate, read by the command's audio_rate
    assert list(m.description) == [f"{q}. title {c.split('-')[0]}" for q, c in zip(m["query"], m.clip_id,
                                                                                   strict=True)]
    with catalog.session() as s:
        db = dict(s.execute(select(Clip.id, Clip.split)).tuples().all())
    assert all(db[c] == sp for c, sp in zip(m.clip_id, m.split, strict=True))
    assert db["r0-00000"] is None  # rejected clips are not split
    idx = store.index().set_index("clip_id")
    assert all(idx.at[c, "split"] == db[c] for c in ids[:5])
    assert m.set_index("clip_id").at[ids[0], "shard"] == "shard-00000.safetensors"
    assert m.shard.notna().all() and summary.no_features == ()

    from audiocraft.data.audio_dataset import load_audio_meta

    metas = {p: load_audio_meta(out / f"{p}.jsonl") for p in ("train", "valid", "test")}
    assert [len(metas[p]) for p in metas] == [summary.train, summary.valid, summary.test]
    for meta in metas["train"] + metas["valid"] + metas["test"]:
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
        assert row == [str(in_split.get("train", 0)), str(in_split.get("valid", 0)), str(in_split.get("test", 0)),
                       str(accepted), str(rejected), str(accepted + rejected),
                       f"{accepted / (accepted + rejected):.1%}"], q
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
    assert [int(c) for c in cells[1:5]] == [summary.train, summary.valid, summary.test, len(ids)]
    assert summary.train + summary.valid + summary.test == len(ids) and summary.test >= 1 and summary.valid >= 1


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
    summary = export_dataset(data_root, catalog, "ac", test_fraction=0.3, seed=0, audio_rate=audio_rate)
    out = data_root.export_dir("ac")
    real_rate = int(json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries", "stream=sample_rate", "-of", "json",
         str(clip)], capture_output=True, text=True, check=True).stdout)["streams"][0]["sample_rate"])
    for part, n in (("train", summary.train), ("valid", summary.valid), ("test", summary.test)):
        ds = AudioDataset.from_meta(out / "egs" / part, segment_duration=2.0, sample_rate=32000, channels=1,
                                    num_samples=4, return_info=True)
        assert len(ds.meta) == n and n > 0
        assert (out / "egs" / part / "data.jsonl").read_text() == (out / f"{part}.jsonl").read_text()
        assert os.readlink(out / "egs" / part / "data.jsonl") == f"../../{part}.jsonl"  # one file, relative
        for meta in ds.meta:
            assert isinstance(meta.info_path, PathInZip)
            with open_file_in_zip(meta.info_path) as f:
                info = json.loads(f.read())
            assert info == json.loads(open(meta.path[:-4] + ".json").read())  # the JSON beside the audio
            assert info["clip_id"] in ids and meta.duration == 4.0  # the catalog's duration
            assert meta.sample_rate == real_rate
        wav, seg = ds[0]
        assert wav.shape == (1, 64000) and seg.sample_rate == 32000 and float(wav.abs().max()) > 0.01
        assert seg.meta.sample_rate == real_rate  # return_info=True: the file's own rate reaches the trainer
    # MusicDataset maps paths through audiocraft's team config, which the PyPI wheel does not ship:
    # a team file without dataset mappers, as a user outside audiocraft's repo points AUDIOCRAFT_CONFIG at
    from audiocraft.environment import AudioCraftEnvironment

    (tmp_path / "team.yaml").write_text("default:\n  dataset_mappers: {}\n")
    monkeypatch.setenv("AUDIOCRAFT_CONFIG", str(tmp_path / "team.yaml"))
    monkeypatch.setenv("AUDIOCRAFT_CLUSTER", "default")
    monkeypatch.setattr(AudioCraftEnvironment, "_instance", None)
    manifest = pd.read_parquet(out / "manifest.parquet").set_index("clip_id")
    for part in ("train", "valid", "test"):
        n = len((out / "egs" / part / "data.jsonl").read_text().splitlines())
        music = MusicDataset.from_meta(out / "egs" / part, segment_duration=2.0, sample_rate=32000, channels=1,
                                       num_samples=n, return_info=True, shuffle=False)  # item k: clip k
        assert len(music.meta) == n > 0
        for k in range(len(music)):
            _, info = music[k]  # with MusicGen's default info_fields_required: every MusicInfo key is there
            source = info.name.split("-")[0]
            assert info.description == f"query {int(source[1:]) % 2}. title {source}"  # what conditions MusicGen
            assert info.description == manifest.at[info.name, "description"]
            assert info.meta.sample_rate == real_rate == manifest.at[info.name, "sample_rate"]
            assert manifest.at[info.name, "split"] == part


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


def test_dataset_card_says_what_made_the_data_and_how_it_was_split(data_root, catalog, clip_factory):
    """DATASET.md names the separator (and where vocals were not removed), the loudness target, the CLIP and
    codec of the features, the audio rate, the licences, what the QC hints mean with this export's counts, and
    the splits with how they were drawn; every number here is worked out from what the test put in."""
    clip = clip_factory(4.0, cut_every_s=2.0)
    ids = add_clips(catalog, data_root, clip, {f"v{i}": ("query 0", 1) for i in range(6)})
    qc = {0: dict(silence_ratio=0.2, still_s=12.0, scene_cuts=0, loudness_lufs=-14.0, limiting_db=4.0,
                  vocal_energy=0.3),
          1: dict(silence_ratio=0.01, still_s=0.0, scene_cuts=3, loudness_lufs=-35.0, limiting_db=0.5,
                  vocal_energy=0.05)}
    with catalog.session() as s:
        for k, c in enumerate(ids):
            clip_row = s.get(Clip, c)
            source = s.get(Source, clip_row.source_id)
            source.separator = "none" if k < 2 else "htdemucs"
            source.loudness_out_lufs = -14.0 + 0.1 * k
            source.license = "Creative Commons Attribution license (reuse allowed)" if k < 3 else None
            clip_row.lineage = {"format": "vidmusician-lineage/1", "steps": [
                {"step": "loudness", "tool": "pyloudnorm", "version": "0.1.1",
                 "params": {"target_lufs": -14.0, "source_gain_db": 1.0, "clip_gain_db": 0.0}}]}
            for col, v in qc.get(k, {}).items():
                setattr(clip_row, col, v)
    ident = {"format": "vidmusician-features/2", "clip_model": "ViT-L-14", "pretrained": "openai",
             "codec": "facebook/musicgen-small", "clip_s": 60, "fps": 25, "token_rate": 50, "sample_rate": 32000}
    store = FeatureStore(data_root.features_dir)
    store.append(write_shard(store.shard_path(0), [ShardEntry(c, synthetic(seed=k), json.dumps({"identity": ident}))
                                                    for k, c in enumerate(ids)]))
    summary = export_dataset(data_root, catalog, "card", test_fraction=0.2, valid_fraction=0.2, seed=3,
                             audio_rate=audio_rate)
    card = (data_root.export_dir("card") / "DATASET.md").read_text()
    assert (summary.train, summary.valid, summary.test) == (4, 1, 1)
    lines = card.splitlines()
    assert "- **Vocals**: removed with htdemucs in 4 clips; **not removed** (separation skipped) in 2 clips: they " \
           "may carry speech or singing." in lines
    assert "- **Loudness**: music normalised to -14 LUFS (pyloudnorm, BS.1770) before cutting; measured after " \
           "normalisation: median -13.8 LUFS over 6 clips' sources." in lines
    assert "- **Features** (6 clips): CLIP `ViT-L-14` (openai) at 25 fps, codes from codec " \
           "`facebook/musicgen-small` at 50 Hz (32000 Hz audio), format vidmusician-features/2." in lines
    assert "- **Audio files**: AAC in the clip MP4s at 44100 Hz (6 clips) (the manifest's and the JSONL's " \
           "`sample_rate`)." in lines
    assert "Creative Commons Attribution license (reuse allowed): 3 clips, not stated by the source: 3 clips." in card
    hints = {cells[0]: cells[3:] for line in lines if line.startswith("| ")
             for cells in [[c.strip() for c in line.strip("|").split("|")]] if len(cells) == 5}
    assert hints["silence_ratio"] == ["1", "4"] and hints["still_s"] == ["1", "4"]
    assert hints["scene_cuts"] == ["1", "4"] and hints["loudness_lufs"] == ["1", "4"]
    assert hints["limiting_db"] == ["1", "4"] and hints["vocal_energy"] == ["1", "4"]
    assert "This export: 4 / 1 / 1 (train / valid / test)." in card
    assert "The paper: 3,571 train / 268 test of 3,839 clips and no validation split." in card
    assert "valid fraction 0.2000, seed 3" in card and "No valid split" not in card

    export_dataset(data_root, catalog, "novalid", valid_fraction=0.0, seed=3, keep_existing=False)
    assert "**No valid split**" in (data_root.export_dir("novalid") / "DATASET.md").read_text()


def test_re_exporting_keeps_the_exports_own_split_after_another_export_reshuffled(data_root, catalog, clip_factory):
    """`export --name b --reshuffle` records other splits in the catalog; `export --name a` again keeps a's
    manifest split for a's videos (what a run on exports/a trained on), and new videos join it."""
    clip = clip_factory(4.0, cut_every_s=2.0)
    add_clips(catalog, data_root, clip, {f"v{i}": ("q", 1) for i in range(10)})

    def split_of(name):
        m = pd.read_parquet(data_root.export_dir(name) / "manifest.parquet")
        return dict(zip(m.clip_id, m.split, strict=True))

    export_dataset(data_root, catalog, "a", test_fraction=0.2, valid_fraction=0.2, seed=0)
    a = split_of("a")
    export_dataset(data_root, catalog, "b", test_fraction=0.2, valid_fraction=0.2, seed=9, keep_existing=False)
    assert split_of("b") != a
    add_clips(catalog, data_root, clip, {"w0": ("q", 1)})
    export_dataset(data_root, catalog, "a", test_fraction=0.2, valid_fraction=0.2, seed=0)
    again = split_of("a")
    assert {c: again[c] for c in a} == a and "w0-00000" in again


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
    assert {"train", "test"} <= set(split.values()) <= {"train", "valid", "test"}
    for cid in ids:
        info = json.loads((audio / f"{cid}.json").read_text())
        assert info["clip_id"] == cid and info["name"] == cid and (audio / f"{cid}.mp4").is_symlink()
    assert not list(audio.glob(".*part*"))


def test_export_written_a_batch_at_a_time_equals_one_batch(data_root, catalog, tmp_path, monkeypatch):
    """24 clips in batches of 5: the manifest comes in row groups of at most 5 rows, and every file equals the
    export written in one batch (manifest frame-equal; JSONL, both layouts, and the info zip byte-equal)."""
    import pyarrow.parquet as pq

    from dvmset import export

    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\0" * 256)
    add_clips(catalog, data_root, junk, {f"v{i:02d}": (f"q{i % 3}", 2) for i in range(12)})
    out = data_root.export_dir("e")
    files = ["train.jsonl", "valid.jsonl", "test.jsonl", *(f"egs/{p}/data.jsonl" for p in ("train", "valid", "test")),
             "audio/info.zip"]

    def written() -> tuple[pd.DataFrame, dict[str, bytes]]:
        export_dataset(data_root, catalog, "e", test_fraction=0.3, seed=0)
        return pd.read_parquet(out / "manifest.parquet"), {f: (out / f).read_bytes() for f in files}

    whole, whole_files = written()
    assert pq.ParquetFile(out / "manifest.parquet").metadata.num_row_groups == 1
    monkeypatch.setattr(export, "BATCH", 5)
    batched, batched_files = written()
    meta = pq.ParquetFile(out / "manifest.parquet").metadata
    assert [meta.row_group(g).num_rows for g in range(meta.num_row_groups)] == [5, 5, 5, 5, 4]
    pd.testing.assert_frame_equal(batched, whole)
    assert batched_files == whole_files and len(whole) == 24 and whole_files["train.jsonl"]
