"""A corrupt feature shard never trains silently: `train` refuses it before the first step and `status`
reports it, both naming the shard and saying to re-extract; a stage whose every step is skipped writes no
best.pt. Corruptions: flipped bytes, NaN tensors, out-of-range codes, a truncated file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from training_helpers import debug_train_args, identity, run_main, write_store

from dvmset.catalog import Catalog
from dvmset.layout import DataRoot
from dvmset.shards import FeatureStore, ShardEntry, check_shards, write_shard

BAD = "shard-00001.safetensors"  # holds train-04, train-05, test-00, test-01


def _flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")  # past the JSON header: tensor bytes only
    for i in range(start + 100, start + 100 + 256):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _rewrite(path: Path, change) -> None:  # noqa: ANN001 - (clip id, tensors) -> tensors
    """Rewrite the shard and its index rows with changed tensors and matching checksums: only the values
    are wrong, as an extractor bug or a bad GPU would make them."""
    from safetensors import safe_open

    store = FeatureStore(path.parent)
    with safe_open(str(path), framework="np") as f:
        rows = json.loads(f.metadata()["clips"])
        entries = [ShardEntry(r["clip_id"], change({n: f.get_tensor(f"{r['clip_id']}/{n}") for n in
                                                     ("global", "rhythm", "codes", "rhythm_global")}),
                              identity(), query=r["query"], source_id=r["source_id"], split=r["split"]) for r in rows]
    path.unlink()
    df = store.index()
    store._save(df[df.shard != path.name])
    store.append(write_shard(path, entries))


def _nan(t: dict) -> dict:
    return {**t, "global": np.full_like(t["global"], np.nan), "rhythm": np.full_like(t["rhythm"], np.nan)}


def _out_of_range(t: dict) -> dict:
    return {**t, "codes": (t["codes"].astype(np.int32) + 5000).astype(np.int16)}  # the debug codebook has 2048


CORRUPTIONS = {
    "flipped-bytes": (_flip_bytes, "do not match the index's sha256"),
    "nan": (lambda p: _rewrite(p, _nan), "NaN or infinite"),
    "out-of-range-codes": (lambda p: _rewrite(p, _out_of_range), "outside the codebook [0, 2048)"),
    "truncated": (_truncate, "unreadable, truncated or garbled"),
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_a_corrupt_shard_is_refused_by_train_and_reported_by_status(kind: str, tmp_path: Path, capsys):
    root = DataRoot(tmp_path / "root").ensure()
    Catalog(root.catalog_url).dispose()
    write_store(root.features_dir)
    corrupt, said = CORRUPTIONS[kind]
    corrupt(root.features_dir / BAD)
    assert {p.shard for p in check_shards(root.features_dir, card=2048)} == {BAD}  # the other shard is fine

    out = tmp_path / "run"
    assert run_main(debug_train_args(root.path, out, "--steps", "2", "--val-every", "1")) == 2
    err = capsys.readouterr().err
    assert BAD in err and said in err and "re-extract" in err and "run `vidmusician features` again" in err, err
    assert "Traceback" not in err and not list(out.rglob("*.pt"))  # refused before the first step

    assert run_main(["status", "--root", str(root.path)]) == 0
    shown = capsys.readouterr().out
    assert f"corrupt {BAD}" in shown and said in shown and "re-extract" in shown, shown
    assert "shard-00000" not in shown
    assert run_main(["status", "--root", str(root.path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["features"]
    assert {c["shard"] for c in report["corrupt"]} == {BAD}


def test_a_stage_whose_every_step_is_skipped_writes_no_best(tmp_path: Path, capsys, monkeypatch):
    features = write_store(tmp_path / "features")
    for shard in ("shard-00000.safetensors", BAD):
        _rewrite(features / shard, _nan)
    monkeypatch.setattr("flows.training.train.check_shards", lambda *a, **k: [])  # a fault the check misses
    out = tmp_path / "run"
    assert run_main(debug_train_args(features, out, "--steps", "3", "--val-every", "1")) == 2
    err = capsys.readouterr().err
    assert "stage 1: no best.pt" in err and "0 of its 3 steps updated the weights" in err, err
    assert not (out / "stage1" / "best.pt").exists()
