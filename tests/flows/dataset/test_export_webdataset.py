"""`export --format webdataset`: shards that webdataset.WebDataset reads as published (mp4, flac music,
json, features as .npy), sized by --shard-size, resumable, takedown-aware; the manifest loads in
Hugging Face datasets and the card's metadata block parses as a hub dataset card."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from feature_helpers import add_clips, entry

from dvmset.export import export_dataset
from dvmset.export_webdataset import INDEX, parse_size, plan_shards, scrub_webdataset
from dvmset.shards import FeatureStore, ShardReader, write_shard
from flows.dataset.webdataset import export_webdataset

wds = pytest.importorskip("webdataset")


@pytest.fixture
def exported(data_root, catalog, clip_factory):
    clip = clip_factory(4.0, cut_every_s=2.0)
    ids = add_clips(catalog, data_root, clip, {f"v{i}": (f"query {i % 2}", 1 + i % 2) for i in range(6)})
    store = FeatureStore(data_root.features_dir)
    store.append(write_shard(store.shard_path(0), [entry(c, seed=k) for k, c in enumerate(ids)]))
    export_dataset(data_root, catalog, "wds", test_fraction=0.3, seed=0)
    return data_root, data_root.export_dir("wds"), ids, clip


def _samples(urls: str) -> dict[str, dict]:
    return {s["__key__"]: s for s in wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode()}


def test_webdataset_reads_every_sample_with_its_video_music_metadata_and_features(exported):
    root, out, ids, clip = exported
    clip_bytes = clip.stat().st_size
    summary = export_webdataset(root, out, shard_size=3 * clip_bytes)  # a few samples per shard
    manifest = pd.read_parquet(out / "manifest.parquet").set_index("clip_id")
    reader = ShardReader(root.features_dir)
    seen: dict[str, dict] = {}
    for split in ("train", "valid", "test"):
        got = _samples(summary.urls(split))
        assert set(got) == set(manifest.index[manifest.split == split])
        seen |= got
    assert set(seen) == set(ids) and summary.samples == len(ids)
    for key, s in seen.items():
        assert s["mp4"] == (root.path / manifest.at[key, "path"]).read_bytes()  # the clip as published
        assert s["json"]["clip_id"] == key and s["json"]["split"] == manifest.at[key, "split"]
        assert s["json"]["source_id"] == manifest.at[key, "source_id"]
        for name, tensor in reader.get(key).items():  # every stored tensor, exactly
            np.testing.assert_array_equal(s[f"{name}.npy"], tensor)
            assert s[f"{name}.npy"].dtype == tensor.dtype
        import soundfile

        music, rate = soundfile.read(io.BytesIO(s["flac"]))
        assert rate == 44100 and music.shape[0] / rate == pytest.approx(4.0, abs=0.1) and np.abs(music).max() > 0.01
    # sized by --shard-size: every shard with more than one sample stays under it; one split per shard
    index = json.loads((summary.folder / INDEX).read_text())
    for shard in index["shards"]:
        assert len(shard["samples"]) == 1 or sum(sum(sz) for _, sz in shard["samples"]) <= 3 * clip_bytes
        assert shard["file"].startswith(shard["split"] + "-")
        with tarfile.open(summary.folder / shard["file"]) as tar:
            assert all(m.mtime == 0 for m in tar.getmembers())
    assert summary.shards == len(index["shards"]) > 2


def test_a_rerun_keeps_complete_shards_and_rewrites_a_missing_one(exported):
    root, out, ids, clip = exported
    first = export_webdataset(root, out, shard_size=3 * clip.stat().st_size)
    tars = sorted(first.folder.glob("*.tar"))
    before = {p.name: p.read_bytes() for p in tars}
    tars[0].unlink()
    (first.folder / ".train-00009.part.tar").write_bytes(b"half")  # a killed write's temp file
    again = export_webdataset(root, out, shard_size=3 * clip.stat().st_size)
    assert again.written == 1 and again.shards == first.shards
    assert {p.name: p.read_bytes() for p in again.folder.glob("*.tar")} == before  # byte for byte the same
    assert not list(again.folder.glob(".*.part.tar"))


def test_a_takedown_rewrites_the_shard_holding_the_clip(exported):
    from dvmset.takedown import scrub_export

    root, out, ids, clip = exported
    summary = export_webdataset(root, out, shard_size=3 * clip.stat().st_size)
    gone = ids[0]
    changed = scrub_export(out, [gone], lambda o, m: None)  # the card is not what this test checks
    assert changed
    keys = {k for split in ("train", "valid", "test") for k in _samples(summary.urls(split))}
    assert keys == set(ids) - {gone}
    for p in summary.folder.glob("*.tar"):
        with tarfile.open(p) as tar:
            assert not [m.name for m in tar.getmembers() if m.name.startswith(gone + ".")]
    assert not (summary.folder / ".music" / f"{gone}.flac").exists()
    assert not scrub_webdataset(out, [gone])  # nothing left to change


def test_the_manifest_loads_in_hugging_face_datasets_and_the_card_parses_as_a_hub_card(exported):
    _, out, ids, _ = exported
    script = f"""
import json, datasets, huggingface_hub
ds = datasets.load_dataset("parquet", data_files={{"train": {str(out / "manifest.parquet")!r}}}, split="train",
                           cache_dir={str(out.parent / "hf-cache")!r})
card = huggingface_hub.DatasetCard.load({str(out / "DATASET.md")!r})
print(json.dumps({{"rows": ds.num_rows, "ids": sorted(ds["clip_id"]), "columns": ds.column_names,
                  "license": card.data.license, "tasks": card.data.task_categories,
                  "size": card.data.size_categories, "configs": card.data.configs}}))
"""
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PATH": "/usr/bin:/bin",
           "PYTHONPATH": ":".join(sys.path)}
    got = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert got.returncode == 0, got.stderr[-3000:]
    out_json = json.loads(got.stdout.strip().splitlines()[-1])
    assert out_json["rows"] == len(ids) and out_json["ids"] == sorted(ids)
    assert {"clip_id", "source_id", "split", "license"} <= set(out_json["columns"])
    assert out_json["license"] == "other"  # sources with no reported licence: not claimed as open
    assert out_json["tasks"] == ["text-to-audio"] and out_json["size"] == ["n<1K"]
    assert out_json["configs"][0]["data_files"][0]["path"] == "manifest.parquet"
    assert (out / "DATASET.md").read_text().startswith("---\n")


def test_plan_shards_and_sizes():
    samples = [("train", f"k{i}", 40, (40,)) for i in range(5)] + [("test", "t0", 500, (500,))]
    plan = plan_shards(samples, 100)
    assert [(p.file, p.keys) for p in plan] == [("test-00000.tar", ["t0"]), ("train-00000.tar", ["k0", "k1"]),
                                                ("train-00001.tar", ["k2", "k3"]), ("train-00002.tar", ["k4"])]
    assert parse_size("500MB") == 500_000_000 and parse_size("1GiB") == 2**30 and parse_size("1234") == 1234
    with pytest.raises(ValueError, match="500MB"):
        parse_size("big")


def test_cli_export_format_webdataset(exported, monkeypatch, capsys):
    from flows.cli import main

    root, out, ids, _ = exported
    code = main(["export", "--root", str(root.path), "--name", "wds", "--format", "webdataset",
                 "--shard-size", "100kB"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert f"webdataset: {len(ids)} samples in" in text and "webdataset.WebDataset(" in text
    assert any(Path(out / "webdataset").glob("train-*.tar"))
