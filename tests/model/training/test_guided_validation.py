"""The guided validation loss on the debug model: the cross-entropy of the valid windows under the logits
`generate` samples from, null + c (cond - null), null being the same batch with keep=False. At c = 1 it is
val_loss; at c = 3 it is what two teacher-forced forwards give by hand, and far from val_loss for a model
whose conditional has moved off the frozen null; under DDP it is summed over the ranks as val_loss is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import default_collate
from training_helpers import write_store

from dvmset.dataset import FeatureWindows
from model.training.step import evaluate, validate


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_store(tmp_path_factory.mktemp("features") / "features")


@pytest.fixture(scope="module")
def windows(store):
    return FeatureWindows(store, split="train", window_s=2, offset_s=0)


@pytest.fixture
def batches(windows):
    """Two collated batches of unequal size (2 and 1 windows), as a validation loader gives them."""
    return [default_collate([windows[0], windows[1]]), default_collate([windows[2]])]


@pytest.fixture
def trained_like(make_model, perturb):
    """A model whose conditional differs from the null: semantic path and rhythm module moved off their init."""
    model = make_model()
    perturb(model.semantic.embedding_manager, scale=2.0, seed=5)
    perturb(model.rhythm, scale=2.0)
    return model


def _by_hand(model, batches, c: float) -> float:
    """CE over every valid token of every batch per codebook, averaged over codebooks, of null + c (cond - null):
    the conditional and null logits from two teacher-forced forwards (stage 1: the rhythm module out of the graph)."""
    model.eval()
    logits, targets = [], []
    with torch.no_grad():
        for b in batches:
            rows = b["codes"].shape[0]
            drop = torch.zeros(rows, dtype=torch.bool)
            if model.stage == 1:
                cond = model.lm.compute_predictions(b["codes"], [], condition_tensors=model.condition_tensors(b["global"]))
                null = model.lm.compute_predictions(b["codes"], [],
                                                    condition_tensors=model.condition_tensors(b["global"], drop))
            else:
                cond = model(b["global"], b["rhythm"], b["codes"])
                null = model(b["global"], b["rhythm"], b["codes"], keep=drop)
            assert torch.equal(cond.mask, null.mask)
            guided = null.logits + c * (cond.logits - null.logits)  # [B, K, T, card]
            k_all = range(b["codes"].shape[1])
            logits.append([guided[:, k][cond.mask[:, k]] for k in k_all])  # [N_k, card] per codebook
            targets.append([b["codes"][:, k].long()[cond.mask[:, k]] for k in k_all])
    lg = [torch.cat([part[k] for part in logits]) for k in range(len(logits[0]))]
    tg = [torch.cat([part[k] for part in targets]) for k in range(len(targets[0]))]
    return torch.stack([F.cross_entropy(x, y) for x, y in zip(lg, tg, strict=True)]).mean().item()


def test_at_coefficient_1_the_guided_loss_is_val_loss_exactly(trained_like, batches):
    got = validate(trained_like, batches, cfg_coef=1.0)
    assert got.guided == got.loss and got.guided_per_codebook == got.per_codebook and got.items == 3
    assert evaluate(trained_like, batches) == (got.loss, got.per_codebook, 3)  # evaluate unchanged
    assert trained_like.training  # the model's mode is restored


@pytest.mark.parametrize("stage", [1, 2])
def test_at_coefficient_3_the_guided_loss_is_the_guided_logits_cross_entropy(trained_like, batches, stage):
    trained_like.set_stage(stage)
    got = validate(trained_like, batches, cfg_coef=3.0)
    assert got.loss == pytest.approx(_by_hand(trained_like, batches, 1.0), rel=1e-5)
    assert got.guided == pytest.approx(_by_hand(trained_like, batches, 3.0), rel=1e-5)
    assert got.guided > got.loss + 0.1  # a conditional moved off the frozen null: guidance amplifies the difference
    assert got.loss == validate(trained_like, batches, cfg_coef=1.0).loss  # val_loss does not depend on c


def test_the_unconditional_reference_is_guided_to_itself(batches):
    """Table 2's frozen-backbone reference has cond == null: every coefficient gives val_loss."""
    from dataclasses import replace

    from model.config import VidMusicianConfig
    from model.vidmusician import VidMusician

    config = VidMusicianConfig.debug(clip_dim=16).with_rhythm(enabled=False)
    ref = VidMusician.from_config(replace(config, unconditional=True), seed=0)
    got = validate(ref, batches, cfg_coef=3.0)
    assert got.guided == pytest.approx(got.loss, abs=1e-6)


def _perturbed_model():
    from model.config import VidMusicianConfig
    from model.vidmusician import VidMusician

    model = VidMusician.from_config(VidMusicianConfig.debug(clip_dim=16), seed=0)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in model.semantic.embedding_manager.parameters():
            p.add_(torch.randn(p.shape, generator=g))
    return model


def _ddp_worker(rank: int, world: int, store_dir: str, init: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    try:
        ds = FeatureWindows(Path(store_dir), split="train", window_s=2, offset_s=0)
        mine = list(range(rank, 3, world))  # rank 0: windows 0 and 2, rank 1: window 1
        got = validate(_perturbed_model(), [default_collate([ds[i] for i in mine])], cfg_coef=3.0)
        torch.save({"loss": got.loss, "guided": got.guided, "items": got.items}, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes: about a minute on a shared 2-core machine
def test_under_ddp_the_guided_loss_is_summed_over_ranks(store, windows, tmp_path):
    """Two gloo processes, each validating its share of three windows, report the losses of all three."""
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, str(store), str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    one = validate(_perturbed_model(), [default_collate([windows[i] for i in range(3)])], cfg_coef=3.0)
    assert r0 == r1 and r0["items"] == 3
    assert r0["loss"] == pytest.approx(one.loss, rel=1e-5) and r0["guided"] == pytest.approx(one.guided, rel=1e-5)
    assert r0["guided"] > r0["loss"]
