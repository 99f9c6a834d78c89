"""The features, export and train entry flows (what their deployments run on a worker) called with
parameters that went through JSON, as the Prefect API sends them: accepted clips -> shards -> an export
-> both training stages on the debug model. (The curate entry flow runs through a real server and
workers in test_workers.py, and on Dask in test_dask.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from feature_helpers import add_clips

from dvmset.dataset import FeatureWindows
from dvmset.shards import FeatureStore
from model.training.checkpoint import load_model

pytestmark = pytest.mark.slow


def _through_json(**params):  # noqa: ANN003, ANN202 - what a deployment's parameters are once they arrive
    return json.loads(json.dumps(params))


def test_features_export_and_train_entry_flows_chain_on_json_parameters(data_root, catalog, clip_factory, tiny_codec,
                                                                        prefect_harness, tmp_path: Path):
    from flows.cluster import entry

    clip = clip_factory(4.0, cut_every_s=2.0)
    ids = add_clips(catalog, data_root, clip, {"a": ("q1", 2), "b": ("q1", 1), "c": ("q2", 1), "d": ("q2", 1)})
    where = {"root": str(data_root.path), "db": catalog.url}

    feats = entry.features(**_through_json(
        settings={"clip_model": "tiny", "codec": "tiny", "clip_s": 4, "clips_per_shard": 2}, **where))
    assert sorted(FeatureStore(data_root.features_dir).index().clip_id) == sorted(ids)
    assert feats["config"]["clip_model"] == "tiny" and json.loads(json.dumps(feats)) == feats  # the result travels too

    made = entry.export(**_through_json(name="ds", test_fraction=0.4, seed=0, **where))
    manifest = pd.read_parquet(Path(made["path"]) / "manifest.parquet")
    assert sorted(manifest.clip_id) == sorted(ids) and made["train"] + made["valid"] + made["test"] == len(ids) and made["test"] > 0

    best = entry.train(**_through_json(
        data=made["path"], out=str(tmp_path / "run"),
        recipe={"steps": 2, "window_s": 2, "batch_size": 2, "warmup_steps": 1, "lr": 1e-3},
        settings={"backbone": "debug", "device": "cpu", "workers": 0, "val_every": 1, "ckpt_every": 1}))
    assert set(best) == {"1", "2"}
    assert Path(best["2"]) == tmp_path / "run" / "stage2" / "best.pt"
    model = load_model(best["2"])
    assert model.backbone_name == "debug"
    assert model.config.semantic.clip_dim == FeatureWindows(data_root.features_dir, window_s=2).spec().clip_dim
