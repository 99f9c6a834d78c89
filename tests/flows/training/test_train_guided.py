"""`vidmusician train` reports val_loss_guided (the valid split's loss under the guided logits `generate`
samples from) at each validation, records its coefficient in config.yaml, leaves the column empty at
--val-cfg-coef 1, and resumes a run started before the column existed."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml
from training_helpers import csv_rows, debug_train_args, run_main, train_log, write_store

from flows.training.generate_config import GenerateConfig
from model.training.checkpoint import load_model
from model.training.step import validate


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_store(tmp_path_factory.mktemp("guided") / "features", n_valid=2)  # train validates on valid-*


def _args(store: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return debug_train_args(store, out, "--stage", "1", "--steps", str(steps), "--val-every", "1",
                            "--ckpt-every", "1", "--keep", "5", "--log-every", "1", "--workers", "0", *extra)


def test_each_validation_writes_the_guided_loss_at_generates_coefficient(store, tmp_path):
    out = tmp_path / "run"
    with train_log() as logged:
        assert run_main(_args(store, out, 2)) == 0
    coef = GenerateConfig(checkpoint=out, out_dir=out).cfg_coef  # generate's default, whatever it is
    assert yaml.safe_load((out / "config.yaml").read_text())["run"]["val_cfg_coef"] == coef
    rows = csv_rows(out / "stage1" / "metrics.csv")
    assert [r["step"] for r in rows] == ["1", "2"]
    assert all(float(r["val_loss_guided"]) != float(r["val_loss"]) for r in rows)  # cond differs from null
    lines = [m for m in logged if ": loss " in m]
    assert len(lines) == 2 and all("val_loss_guided" in line for line in lines)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "stage1" / "tb")).Reload()
    assert [(e.step, e.value) for e in events.Scalars("stage1/val_loss_guided")] == [
        (int(r["step"]), pytest.approx(float(r["val_loss_guided"]), rel=1e-6)) for r in rows]

    # the number is the guided loss of the valid windows with the weights of that step (batch 2: one batch)
    from torch.utils.data import DataLoader

    from dvmset.dataset import FeatureWindows

    valid = FeatureWindows(store, split="valid", window_s=2, seed=0, clip_ids=["valid-00", "valid-01"])
    got = validate(load_model(out / "stage1" / "ckpt-00000002.pt"), DataLoader(valid, batch_sampler=[[0, 1]]),
                   cfg_coef=coef)
    assert float(rows[1]["val_loss_guided"]) == pytest.approx(got.guided, rel=1e-5)
    assert float(rows[1]["val_loss"]) == pytest.approx(got.loss, rel=1e-5)


def test_coefficient_1_leaves_the_column_empty_and_val_loss_unchanged(store, tmp_path):
    on, off = tmp_path / "on", tmp_path / "off"
    assert run_main(_args(store, on, 2, "--val-cfg-coef", "2")) == 0
    with train_log() as logged:
        assert run_main(_args(store, off, 2, "--val-cfg-coef", "1")) == 0
    assert yaml.safe_load((off / "config.yaml").read_text())["run"]["val_cfg_coef"] == 1.0
    a, b = csv_rows(on / "stage1" / "metrics.csv"), csv_rows(off / "stage1" / "metrics.csv")
    assert "val_loss_guided" in b[0] and all(r["val_loss_guided"] == "" for r in b)  # off: no number
    assert [r["val_loss"] for r in a] == [r["val_loss"] for r in b]  # the guided loss picks and changes nothing
    lines = [m for m in logged if ": loss " in m]
    assert len(lines) == 2 and not any("val_loss_guided" in line for line in lines)


def test_a_run_started_before_the_guided_loss_resumes(store, tmp_path):
    """A run whose config.yaml has no val_cfg_coef and whose metrics.csv has no val_loss_guided column (written
    before this option existed) resumes: the config is not refused, its rows keep their values under the new header."""
    out = tmp_path / "run"
    assert run_main(_args(store, out, 2)) == 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    del config["run"]["val_cfg_coef"]
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    metrics = out / "stage1" / "metrics.csv"
    old = csv_rows(metrics)
    fields = [f for f in old[0] if f != "val_loss_guided"]
    with metrics.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows({k: r[k] for k in fields} for r in old)

    assert run_main(_args(store, out, 3)) == 0
    rows = csv_rows(metrics)
    assert [r["step"] for r in rows] == ["1", "2", "3"] and None not in rows[-1].values()
    assert [r["val_loss"] for r in rows[:2]] == [r["val_loss"] for r in old]
    assert [r["val_loss_guided"] for r in rows[:2]] == ["", ""] and float(rows[2]["val_loss_guided"]) > 0
    coef = GenerateConfig(checkpoint=out, out_dir=out).cfg_coef
    assert yaml.safe_load((out / "config.yaml").read_text())["run"]["val_cfg_coef"] == coef


def test_an_ablate_row_records_its_best_weights_guided_loss_at_its_generate_coefficient(store, tmp_path):
    """Table 2's row: the guided loss of its best weights at the coefficient its music is sampled with (not
    train's --val-cfg-coef, which is no setting of the row's numbers); a row from before it shows —."""
    from torch.utils.data import DataLoader

    from dvmset.dataset import FeatureWindows
    from flows.training.ablate import ROWS, AblateRun, default_evaluate, default_generate, row_settings
    from flows.training.ablate_row import _train, row_record
    from flows.training.run import TrainRun
    from flows.training.table2 import table_markdown
    from model.training.config import TrainConfig
    from model.training.state import read_training

    recipe = TrainConfig(batch_size=2, steps=2, warmup_steps=0, window_s=2, lr=1e-3)
    run = TrainRun(data=store, out=tmp_path / "run", stages=(1,), recipe=recipe, backbone="debug", workers=0,
                   val_every=1, rhythm=False, val_cfg_coef=1.0)
    best, val_loss, guided, start = _train(run, 2.0)
    assert val_loss == read_training(best)["best"]["val"] and start == {}
    valid = FeatureWindows(store, split="valid", window_s=2, seed=0, clip_ids=["valid-00", "valid-01"])
    got = validate(load_model(best), DataLoader(valid, batch_sampler=[[0, 1]]), cfg_coef=2.0)
    assert guided == pytest.approx(got.guided, rel=1e-5) and guided != pytest.approx(val_loss, rel=1e-3)

    ablate = AblateRun(tmp_path / "export", tmp_path / "out", ("full",), TrainRun(data=tmp_path, out=tmp_path))
    settings = row_settings(ablate, ROWS["full"], default_generate(ablate, "tiny"), default_evaluate(ablate))
    other = AblateRun(tmp_path / "export", tmp_path / "out", ("full",),
                      TrainRun(data=tmp_path, out=tmp_path, val_cfg_coef=1.0))
    assert row_settings(other, ROWS["full"], default_generate(other, "tiny"), default_evaluate(other)) == settings

    new = row_record(ROWS["no-rcm"], settings, "f" * 16, best, val_loss, {}, [], guided)
    old = {**new, "row": "old"}
    del old["val_loss_guided"]  # a done.json written before the column
    table = table_markdown([new, old])
    assert f"| {val_loss:.4f} | {guided:.4f} | `{best}` |" in table and f"| {val_loss:.4f} | — | `{best}` |" in table
