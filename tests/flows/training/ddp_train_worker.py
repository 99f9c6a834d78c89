"""Run by test_train_ddp under torchrun (and once without): train stage 1 of the debug model, then save
this rank's trainable weights to OUT/rank{R}.pt so the test can compare every rank's copy."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from flows.training.run import TrainRun
from flows.training.train import run_training
from model.training.config import TrainConfig


def main(data: str, out: str, batch: str, steps: str) -> None:
    torch.set_num_threads(1)
    recipe = TrainConfig.debug(stage=1, batch_size=int(batch), steps=int(steps), cfg_dropout=0.5)
    run = TrainRun(data=Path(data), out=Path(out), stages=(1,), recipe=recipe, backbone="debug", workers=0,
                   val_every=1000, ckpt_every=1000)
    result = run_training(run)
    torch.save({n: p.detach().clone() for n, p in result.model.trainable_state().items()},
               Path(out) / f"rank{result.rank}.pt")


if __name__ == "__main__":
    main(*sys.argv[1:])
