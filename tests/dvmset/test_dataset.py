"""Training windows: aligned across global / rhythm / codes, random or fixed offsets, DDP-ready."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from feature_helpers import entry
from torch.utils.data import DataLoader, DistributedSampler

from dvmset.dataset import FeatureWindows
from dvmset.shards import FeatureStore, write_shard


@pytest.fixture
def features_dir(tmp_path):
    store = FeatureStore(tmp_path)
    ids = [f"s{i}-00000" for i in range(5)]
    store.append(write_shard(store.shard_path(0), [entry(c, i, split="train" if i < 4 else "test")
                                                   for i, c in enumerate(ids[:3])]))
    store.append(write_shard(store.shard_path(1), [entry(c, i, split="train" if i < 4 else "test")
                                                   for i, c in enumerate(ids[3:], start=3)]))
    return tmp_path


def assert_aligned(item: dict, window_s: int) -> None:
    o = item["offset_s"]
    assert item["global"].shape == (window_s, 8) and item["global"].dtype == torch.float32
    assert item["rhythm"].shape == (window_s * 50,) and item["codes"].shape == (2, window_s * 50)
    assert item["codes"].dtype == torch.int64
    # global[t] ~ second o + t; rhythm[i] = (50 o + i) / 50; codes[:, i] = 50 o + i (+10000 k)
    np.testing.assert_array_equal(item["global"][:, 0].floor().numpy(), np.arange(o, o + window_s))
    np.testing.assert_allclose(item["rhythm"].numpy(), np.arange(50 * o, 50 * (o + window_s)) / 50)
    np.testing.assert_array_equal(item["codes"][0].numpy(), np.arange(50 * o, 50 * (o + window_s)))
    np.testing.assert_array_equal(item["codes"][1].numpy() - item["codes"][0].numpy(), 10000)


def test_windows_stay_aligned_with_random_offsets(features_dir):
    ds = FeatureWindows(features_dir, split="train", window_s=3, seed=1)
    assert len(ds) == 4
    offsets = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            assert 0 <= item["offset_s"] <= 3
            assert_aligned(item, 3)
            offsets.add(item["offset_s"])
    assert len(offsets) > 1  # offsets vary
    ds.set_epoch(2)
    assert [ds[i]["offset_s"] for i in range(4)] == [ds[i]["offset_s"] for i in range(4)]  # repeatable


def test_fixed_offset_and_split_filter(features_dir):
    ds = FeatureWindows(features_dir, split="test", window_s=2, offset_s=4)
    assert ds.clip_ids == ["s4-00000"]
    item = ds[0]
    assert item["offset_s"] == 4
    assert_aligned(item, 2)
    with pytest.raises(ValueError, match="window"):
        FeatureWindows(features_dir, window_s=7)  # clips are 6 s long


def test_distributed_sampler_partitions_the_clips(features_dir):
    ds = FeatureWindows(features_dir, window_s=3)
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=0)
        sampler.set_epoch(1)
        loader = DataLoader(ds, batch_size=2, sampler=sampler, num_workers=0)
        for batch in loader:
            assert batch["global"].shape == (len(batch["clip_id"]), 3, 8)
            assert batch["codes"].shape == (len(batch["clip_id"]), 2, 150)
            seen += list(batch["clip_id"])
    # 5 clips on 2 ranks: DistributedSampler pads to 6 by repeating one clip
    assert set(seen) == set(ds.clip_ids) and len(seen) == 6


def test_dataloader_workers_open_their_own_handles(features_dir):
    ds = FeatureWindows(features_dir, window_s=2, offset_s=1)
    ds[0]  # opens a handle in this process; it must not travel to workers
    loader = DataLoader(ds, batch_size=5, num_workers=2)
    (batch,) = list(loader)
    assert sorted(batch["clip_id"]) == sorted(ds.clip_ids)
    assert (batch["codes"][:, 0, 0] == 50).all()


def test_the_global_rhythm_ablation_reads_its_own_aligned_signal(features_dir):
    ds = FeatureWindows(features_dir, window_s=2, seed=3, rhythm_source="global")
    for i in range(len(ds)):
        item = ds[i]
        o = item["offset_s"]  # rhythm_global[i] = rhythm[i] + 1000 in the synthetic tensors
        np.testing.assert_allclose(item["rhythm"].numpy(), np.arange(50 * o, 50 * (o + 2)) / 50 + 1000)
        np.testing.assert_array_equal(item["codes"][0].numpy(), np.arange(50 * o, 50 * (o + 2)))
    with pytest.raises(ValueError, match="rhythm_source"):
        FeatureWindows(features_dir, rhythm_source="cls")
