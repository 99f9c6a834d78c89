"""`vidmusician train --data ROOT/exports/NAME` reads that export's own split, through the CLI: another export
(which rewrites the shared feature index's split) changes nothing; best.pt is chosen on `valid`, never on
`test`; the checkpoint records the manifest's hash and split, and a resume on a changed manifest is refused."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from feature_helpers import add_clips
from training_helpers import CLIP_D, clip_tensors, debug_train_args, identity, run_main

from dvmset.shards import FeatureStore, ShardEntry, write_shard
from model.training.state import read_training

N_SOURCES = 10  # one clip each, one query: with 0.2 / 0.2, two test, two valid and six train videos


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.delenv("VIDMUSICIAN_DB", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def root(data_root, catalog, clip_factory) -> Path:
    """A data root whose accepted clips have (tiny, random) training features."""
    ids = add_clips(catalog, data_root, clip_factory(4.0, cut_every_s=2.0),
                    {f"v{i}": ("query 0", 1) for i in range(N_SOURCES)})
    rng = np.random.default_rng(0)
    store = FeatureStore(data_root.features_dir)
    store.append(write_shard(store.shard_path(0), [
        ShardEntry(c, clip_tensors(4, CLIP_D, rng), identity(), query="query 0", source_id=c.split("-")[0])
        for c in ids]))
    return data_root.path


def _export(root: Path, *args: str) -> None:
    assert run_main(["export", "--root", str(root), *args]) == 0


def _train(export: Path, out: Path, steps: int) -> int:
    return run_main(debug_train_args(export, out, "--stage", "1", "--steps", str(steps), "--ckpt-every", "2",
                                     "--val-every", "2", "--workers", "0"))


def _splits(manifest: Path) -> dict[str, list[str]]:
    m = pd.read_parquet(manifest)
    return {p: sorted(m[m.split == p].clip_id) for p in ("train", "valid", "test")}


def test_another_export_cannot_change_what_a_run_trains_and_validates_on(root, tmp_path, capsys):
    _export(root, "--name", "demo", "--test-fraction", "0.2", "--valid-fraction", "0.2")
    demo = _splits(root / "exports" / "demo" / "manifest.parquet")
    assert [len(demo[p]) for p in ("train", "valid", "test")] == [6, 2, 2]
    # the reproduction: an export with no test split, reshuffled, rewrites the shared index's split
    _export(root, "--name", "notest", "--test-fraction", "0", "--valid-fraction", "0", "--reshuffle")
    index = pd.read_parquet(root / "features" / "index.parquet").set_index("clip_id")
    assert set(index.split) == {"train"}  # demo's test and valid clips are "train" in the index now

    out = tmp_path / "run"
    assert _train(root / "exports" / "demo", out, 4) == 0, capsys.readouterr().err
    train = read_training(out / "stage1" / "ckpt-00000004.pt")
    data = train["extra"]["data"]
    assert data["splits"] == demo  # demo's own split, test included as the manifest has it, in the checkpoint
    assert data["export"] == str((root / "exports" / "demo").resolve())
    import hashlib

    assert data["manifest_sha256"] == hashlib.sha256((root / "exports" / "demo" / "manifest.parquet")
                                                     .read_bytes()).hexdigest()
    with (out / "stage1" / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    val = [r["val_loss"] for r in rows if r["val_loss"]]
    assert len(val) == 2  # validated at steps 2 and 4, on demo's valid clips
    best = read_training(out / "stage1" / "best.pt")["best"]
    assert best["val"] == min(float(v) for v in val)  # best.pt chosen on valid

    # the same data: a longer run resumes
    assert _train(root / "exports" / "demo", out, 6) == 0, capsys.readouterr().err
    # demo re-exported with another split: a resume is refused, with what changed, before anything is written
    _export(root, "--name", "demo", "--test-fraction", "0.3", "--valid-fraction", "0.1", "--reshuffle",
            "--seed", "4")
    now = _splits(root / "exports" / "demo" / "manifest.parquet")
    assert now != demo
    before = sorted(p.name for p in (out / "stage1").iterdir())
    capsys.readouterr()
    assert _train(root / "exports" / "demo", out, 8) == 2
    err = capsys.readouterr().err
    assert "ckpt-00000006.pt was trained on" in err and "which has changed since" in err
    assert "clips moved split" in err and "another --out" in err
    assert sorted(p.name for p in (out / "stage1").iterdir()) == before


def test_the_split_comes_from_the_manifest_not_the_index(root):
    """The training data functions, on an export whose manifest and index disagree: the manifest wins, and the
    test split is never among the clips training reads."""
    from flows.training.train import data_source, training_data
    from model.training.config import TrainConfig

    _export(root, "--name", "a", "--test-fraction", "0.2", "--valid-fraction", "0.2")
    _export(root, "--name", "b", "--test-fraction", "0.2", "--valid-fraction", "0.2", "--reshuffle", "--seed", "9")
    a, b = (_splits(root / "exports" / n / "manifest.parquet") for n in ("a", "b"))
    assert a != b
    cfg = TrainConfig(window_s=2, batch_size=2)
    source = data_source(root / "exports" / "a")
    train_ds, val_ds = training_data(source, root / "exports" / "a", cfg, "all_tokens")
    assert train_ds.clip_ids == a["train"] and val_ds is not None and val_ds.clip_ids == a["valid"]
    assert not set(a["test"]) & (set(train_ds.clip_ids) | set(val_ds.clip_ids))


def test_without_a_valid_split_train_says_so_and_never_validates_on_test(root, tmp_path, caplog, capsys):
    _export(root, "--name", "nov", "--test-fraction", "0.2", "--valid-fraction", "0")
    assert "no valid split" in capsys.readouterr().err  # the export says what train will do
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="flows.training.train"):
        assert _train(root / "exports" / "nov", out, 2) == 0
    assert "no validation loss, best.pt is the latest checkpoint; the test split is not used instead" in caplog.text
    with (out / "stage1" / "metrics.csv").open() as fh:
        assert not any(r.get("val_loss") for r in csv.DictReader(fh))
    assert read_training(out / "stage1" / "best.pt")["best"]["val"] is None
