"""`vidmusician train` v2 through the CLI on the debug model: --precision bf16 on CPU refused at once,
config.yaml and a re-run that differs, loss lines without a terminal, EMA weights in best.pt (validated as
such), --accumulate 2 x --batch-size 2 equal to --batch-size 4."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from torch.utils.data import DataLoader
from training_helpers import csv_rows, debug_train_args, run_main, train_log, write_store

from dvmset.dataset import FeatureWindows
from model.training.checkpoint import load_model, read_checkpoint
from model.training.step import evaluate


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_store(tmp_path_factory.mktemp("trainer") / "features", n_valid=2)  # train validates on valid-*


@pytest.mark.parametrize("flag", ["--precision", "--frozen-dtype"])
def test_half_precision_on_cpu_is_refused_before_anything_is_built(store, tmp_path, capsys, flag):
    out = tmp_path / "run"
    assert run_main(debug_train_args(store, out, "--steps", "2", flag, "bf16")) == 2
    assert capsys.readouterr().err.strip() == f"error: {flag} bf16 needs a GPU (--device cuda); on CPU train with {flag} fp32"
    assert not out.exists()  # no run folder, no empty metrics files
    # refused before any data is read (so before a model is built): a missing --data is not what it reports
    assert run_main(debug_train_args(tmp_path / "nowhere", out, "--steps", "2", flag, "fp16")) == 2
    assert "needs a GPU" in capsys.readouterr().err and not out.exists()


@pytest.mark.slow
def test_config_yaml_loss_lines_and_ema_best(store, tmp_path, capsys):
    out = tmp_path / "run"
    args = debug_train_args(store, out, "--stage", "1", "--steps", "6", "--ema", "0.5", "--val-every", "2",
                            "--ckpt-every", "1", "--keep", "10", "--log-every", "2", "--workers", "0")
    with train_log() as logged:
        assert run_main(args) == 0  # no -v: the CLI's default log level
    lines = [line for line in logged if ": loss " in line]  # what a run without a terminal leaves in its log
    assert [line.split(":")[0] for line in lines] == [f"stage 1 step {s}/6 epoch {e}" for s, e in ((2, 0), (4, 1), (6, 1))]
    assert all(" lr " in line and "it/s" in line and "val_loss" in line for line in lines)

    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["run"]["recipe"]["ema_decay"] == 0.5 and config["run"]["recipe"]["accumulate"] == 1
    assert config["run"]["backbone"] == "debug" and config["run"]["log_every"] == 2
    assert config["stages"]["stage1"]["lr"] == 1e-3 and config["stages"]["stage1"]["steps"] == 6
    assert config["features"]["clip_dim"] == 16 and config["features"]["clip_model"] == "tiny"
    assert config["model"]["clip_model"] == "tiny"

    # best.pt holds the EMA weights of its step, and the validation loss that chose it is theirs
    rows = csv_rows(out / "stage1" / "metrics.csv")
    val = {int(r["step"]): float(r["val_loss"]) for r in rows if r["val_loss"]}
    _, best = read_checkpoint(out / "stage1" / "best.pt")
    step = best["extra"]["train"]["counters"]["step"]
    assert val[step] == min(val.values())
    shadow = best["extra"]["train"]["ema"]["shadow"]
    assert all(torch.equal(best["state"][n], shadow[n]) for n in shadow)
    _, raw = read_checkpoint(out / "stage1" / f"ckpt-{step:08d}.pt")
    assert any(not torch.equal(best["state"][n], raw["state"][n]) for n in shadow)  # not the trained weights
    test = FeatureWindows(store, split="valid", window_s=2, seed=0, clip_ids=["valid-00", "valid-01"])
    loader = DataLoader(test, batch_sampler=[[0, 1]])
    assert evaluate(load_model(out / "stage1" / "best.pt"), loader)[0] == pytest.approx(val[step], rel=1e-5)
    assert evaluate(load_model(out / "stage1" / f"ckpt-{step:08d}.pt"), loader)[0] != pytest.approx(val[step], rel=1e-5)
    capsys.readouterr()

    # a re-run with another lr is refused naming that field alone; a longer run resumes
    assert run_main([*args[:-1], "0", "--stage1-lr", "2e-3"]) == 2
    err = capsys.readouterr().err
    assert "run.recipe.lr: 0.001 -> 0.002" in err and "config.yaml" in err and "ema" not in err
    longer = [a if a != "6" else "7" for a in args]
    assert run_main(longer) == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["run"]["recipe"]["steps"] == 7


@pytest.mark.slow
def test_accumulate_2_of_batch_2_trains_as_batch_4(store, tmp_path):
    common = ("--stage", "1", "--steps", "3", "--ckpt-every", "3", "--val-every", "3", "--workers", "0")
    big, acc = tmp_path / "big", tmp_path / "acc"
    assert run_main([*debug_train_args(store, big, *common), "--batch-size", "4"]) == 0
    assert run_main([*debug_train_args(store, acc, *common), "--batch-size", "2", "--accumulate", "2"]) == 0
    _, a = read_checkpoint(big / "stage1" / "ckpt-00000003.pt")
    _, b = read_checkpoint(acc / "stage1" / "ckpt-00000003.pt")
    for name, tensor in a["state"].items():
        torch.testing.assert_close(b["state"][name], tensor, rtol=1e-4, atol=1e-6, msg=name)
    la, lb = csv_rows(big / "stage1" / "metrics.csv"), csv_rows(acc / "stage1" / "metrics.csv")
    assert [float(r["loss"]) for r in lb] == pytest.approx([float(r["loss"]) for r in la], rel=1e-5)
    assert a["extra"]["train"]["counters"]["epoch"] == b["extra"]["train"]["counters"]["epoch"] == 2  # 6 clips: 1 batch of 4 per epoch, epochs 0, 1, 2


@pytest.mark.slow
def test_samples_during_training_go_to_wav_and_tensorboard_with_hparams(store, tmp_path, capsys):
    from evaluate_media import clicks, cut_video, grid  # tests/flows/, on pytest's path
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    from flows.training.train import _sample_rhythm

    root = tmp_path / "root"  # a data root: features/ and the clips' videos in clips/
    shutil.copytree(store, root / "features")
    (root / "clips").mkdir()
    video = cut_video(root / "clips" / "valid-00.mp4", [1.5, 2.5, 3.5], 4.0)
    on_cuts = _sample_rhythm(video, 0, 4, clicks(grid(0.5, 0.5, 4.0), 4.0, sr=32000), 32000)
    assert (on_cuts.n_cuts, on_cuts.cut_hits) == (3, 3) and 0 < on_cuts.chance_recall < 1
    later = _sample_rhythm(video, 2, 2, clicks(grid(0.25, 0.5, 2.0), 2.0, sr=32000), 32000)
    assert (later.n_cuts, later.cut_hits) == (2, 0)  # cuts 0.5 and 1.5 s into the window, beats 0.25 s off them

    out = tmp_path / "run"
    args = debug_train_args(root, out, "--stage", "1", "--steps", "2", "--val-every", "2", "--sample-every", "1",
                            "--samples", "1", "--workers", "0")
    with train_log() as logged:
        assert run_main(args) == 0
    assert sum("sample(s) in" in line and "Rhythm recall" in line for line in logged) == 2
    wavs = sorted((out / "stage1" / "samples").rglob("*.wav"))
    assert [p.relative_to(out / "stage1").as_posix() for p in wavs] == [
        "samples/step-00000001/valid-00.wav", "samples/step-00000002/valid-00.wav"]
    one, sr = sf.read(wavs[0])
    two, _ = sf.read(wavs[1])
    assert len(one) == 2 * sr and np.isfinite(one).all() and np.abs(one).max() > 0  # the 2 s window, not silence
    assert not np.array_equal(one, two)  # same seed, other weights: other music
    events = EventAccumulator(str(out / "stage1" / "tb"), size_guidance={"audio": 0}).Reload()
    assert [e.step for e in events.Audio("stage1/sample/valid-00")] == [1, 2]
    scalars = EventAccumulator(str(out / "stage1" / "tb"), size_guidance={"scalars": 0}).Reload()
    for tag in ("stage1/sample_rhythm_recall", "stage1/sample_rhythm_chance"):
        values = scalars.Scalars(tag)
        assert [v.step for v in values] == [1, 2] and all(0.0 <= v.value <= 1.0 for v in values)
    tags = {v.tag for f in (out / "stage1" / "tb").glob("events.out.tfevents.*")
            for e in EventFileLoader(str(f)).Load() for v in e.summary.value}
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= tags  # the HParams tab has the recipe
