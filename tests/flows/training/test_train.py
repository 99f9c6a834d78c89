"""`vidmusician train` through the CLI on the debug model: a SIGKILLed run re-run with the same command ends
bitwise equal to an uninterrupted one (also with 2 loader workers); both stages; torchrun with gloo."""

from __future__ import annotations

import csv
import logging
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from training_helpers import REPO, cli_env, debug_train_args, run_cli, run_main, write_store

from model.config import VidMusicianConfig
from model.training.checkpoint import load_model, read_checkpoint
from model.training.config import TrainConfig
from model.vidmusician import VidMusician

STEPS = 16


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_store(tmp_path_factory.mktemp("train") / "features")


def _args(store: Path, out: Path, workers: int) -> list[str]:
    return debug_train_args(store, out, "--stage", "1", "--steps", str(STEPS), "--ckpt-every", "4",
                            "--val-every", "6", "--keep", "2", "--workers", str(workers))


@pytest.fixture(scope="module")
def straight(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "run"
    assert run_main(_args(store, out, workers=0)) == 0
    return out


def _final(out: Path, stage: int = 1) -> tuple[dict, dict]:
    _, pkg = read_checkpoint(out / f"stage{stage}" / f"ckpt-{STEPS:08d}.pt")
    return pkg["state"], pkg["extra"]["train"]


def _assert_same_run(a: Path, b: Path) -> None:
    state_a, train_a = _final(a)
    state_b, train_b = _final(b)
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    opt_a, opt_b = train_a["optimizer"]["state"], train_b["optimizer"]["state"]
    assert opt_a.keys() == opt_b.keys()
    for k in opt_a:
        assert all(torch.equal(torch.as_tensor(opt_a[k][f]), torch.as_tensor(opt_b[k][f])) for f in opt_a[k])
    assert train_a["scheduler"]["_last_lr"] == train_b["scheduler"]["_last_lr"]
    assert train_a["counters"] == train_b["counters"]
    assert torch.equal(train_a["rng"]["cfg_dropout"], train_b["rng"]["cfg_dropout"])
    assert train_a["best"] == train_b["best"]


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_sigkill_then_same_command_resumes_bitwise(store, straight, tmp_path, workers):
    out = tmp_path / "run"
    args = _args(store, out, workers)
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", *args], cwd=REPO, env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = out / "stage1" / "ckpt-00000004.pt"
    deadline = time.monotonic() + 300
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    still_running = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert still_running and first.exists(), "the run ended before it could be killed mid-run"
    assert not (out / "stage1" / f"ckpt-{STEPS:08d}.pt").exists()

    again = run_cli(args)
    assert again.returncode == 0, again.stderr[-3000:]
    _assert_same_run(straight, out)
    with (out / "stage1" / "metrics.csv").open() as fh:
        steps = [int(r["step"]) for r in csv.DictReader(fh)]
    assert steps == list(range(1, STEPS + 1))  # rows the killed run wrote past its checkpoint were dropped
    with (straight / "stage1" / "metrics.csv").open() as fh, (out / "stage1" / "metrics.csv").open() as gh:
        losses = [(r["loss"], r["val_loss"]) for r in csv.DictReader(fh)]
        assert losses == [(r["loss"], r["val_loss"]) for r in csv.DictReader(gh)]
    kept = sorted(p.name for p in (out / "stage1").glob("ckpt-*.pt"))
    assert kept == [f"ckpt-{STEPS - 4:08d}.pt", f"ckpt-{STEPS:08d}.pt"]  # --keep 2


@pytest.mark.slow
def test_both_stages_then_rerun_is_a_no_op(store, tmp_path, capsys):
    out = tmp_path / "run"
    args = debug_train_args(store, out, "--stage", "both", "--steps", "6", "--ckpt-every", "1", "--keep", "6",
                            "--val-every", "3", "--workers", "0")
    assert run_main(args) == 0
    assert "stage 2: best weights" in capsys.readouterr().out
    with (out / "stage2" / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert float(rows[0]["lr"]) == 0.0 and float(rows[-1]["lr"]) == pytest.approx(1e-4)  # fresh warm-up
    _, pkg1 = read_checkpoint(out / "stage1" / "best.pt")
    _assert_starts_from(pkg1["state"], out / "stage2")
    _, pkg2 = read_checkpoint(out / "stage2" / "ckpt-00000003.pt")
    rhythm = [k for k in pkg1["state"] if k.startswith("rhythm.")]
    assert any(not torch.equal(pkg1["state"][k], pkg2["state"][k]) for k in rhythm)  # rhythm trains in stage 2
    model = load_model(out / "stage2" / "best.pt")
    assert model.backbone_name == "debug" and model.config.semantic.clip_dim == 16
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")}
    assert run_main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")} == mtimes


def _assert_starts_from(stage1: dict, stage2_dir: Path) -> None:
    """Stage 2's first update runs at lr 0 (the warm-up's step 0), so its first checkpoint still holds the
    weights stage 2 started from: stage 1's best semantic module, and a rhythm module not trained yet."""
    _, first = read_checkpoint(stage2_dir / "ckpt-00000001.pt")
    semantic = [k for k in stage1 if k.startswith("semantic.")]
    assert semantic and all(torch.equal(first["state"][k], stage1[k]) for k in semantic)
    fresh = VidMusician.from_config(VidMusicianConfig.debug(clip_dim=16)).trainable_state()
    assert any(not torch.equal(stage1[k], fresh[k]) for k in semantic)  # stage 1 did move them


@pytest.mark.slow
def test_stage2_alone_starts_from_stage1_best_and_warns_of_a_long_warmup(store, straight, tmp_path, caplog):
    out = tmp_path / "run"
    (out / "stage1").mkdir(parents=True)
    shutil.copyfile(straight / "stage1" / "best.pt", out / "stage1" / "best.pt")
    args = debug_train_args(store, out, "--stage", "2", "--steps", "2", "--ckpt-every", "1", "--keep", "2",
                            "--val-every", "2", "--workers", "0")  # --warmup 4 > 2 steps
    with caplog.at_level(logging.WARNING, logger="flows.training.train"):
        assert run_main(args) == 0
    _, pkg1 = read_checkpoint(out / "stage1" / "best.pt")
    _assert_starts_from(pkg1["state"], out / "stage2")
    warned = [r.getMessage() for r in caplog.records if "warm-up" in r.getMessage()]
    assert len(warned) == 1 and "--warmup" in warned[0] and "stage 2" in warned[0]


def test_stage2_alone_without_stage1_weights_is_refused(store, tmp_path, capsys):
    args = debug_train_args(store, tmp_path / "run", "--stage", "2", "--steps", "2", "--workers", "0")
    assert run_main(args) == 2
    err = capsys.readouterr().err
    assert "--init" in err and "--stage both" in err and not (tmp_path / "run" / "stage2").exists()


def test_warmup_longer_than_the_run_names_the_flag():
    cfg = TrainConfig.debug(warmup_steps=6000, steps=6)
    note = cfg.warmup_warning(6)
    assert note is not None and "--warmup" in note and "6000" in note
    assert cfg.warmup_warning(6000) is None and TrainConfig.debug(warmup_steps=0).warmup_warning(1) is None


@pytest.mark.slow
def test_prefect_train_flow_trains_two_steps(store, tmp_path, prefect_harness):
    from flows.training.run import TrainRun
    from flows.training.train import train_flow

    run = TrainRun(data=store, out=tmp_path / "run", stages=(1,), recipe=TrainConfig.debug(steps=2), backbone="debug",
                   val_every=1, ckpt_every=1, workers=0)
    best = train_flow(run)
    assert set(best) == {1} and Path(best[1]) == tmp_path / "run" / "stage1" / "best.pt"
    assert load_model(best[1]).backbone_name == "debug"
    assert (tmp_path / "run" / "stage1" / "ckpt-00000002.pt").is_file()


def test_mismatched_features_are_refused_with_the_flag(tmp_path, capsys):
    data = write_store(tmp_path / "features", n_train=2, n_test=0, dim=24)
    assert run_main(debug_train_args(data, tmp_path / "run", "--steps", "1", "--clip-dim", "16", "--workers", "0")) == 2
    assert "--clip-dim 24" in capsys.readouterr().err and not (tmp_path / "run" / "stage1").exists()


@pytest.mark.slow
def test_torchrun_two_ranks_equal_and_match_one_process_with_the_doubled_batch(store, tmp_path):
    worker = str(Path(__file__).with_name("ddp_train_worker.py"))
    steps = "4"
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          worker, str(store), str(tmp_path / "ddp"), "4", steps],
                         cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert ddp.returncode == 0, ddp.stderr[-4000:]
    sys.path.insert(0, str(Path(worker).parent))
    try:
        from ddp_train_worker import main as one_process
    finally:
        sys.path.pop(0)
    before = torch.get_num_threads()
    try:
        one_process(str(store), str(tmp_path / "one"), "4", steps)  # world size 1, in this process
    finally:
        torch.set_num_threads(before)
    r0, r1 = (torch.load(tmp_path / "ddp" / f"rank{r}.pt") for r in (0, 1))
    single = torch.load(tmp_path / "one" / "rank0.pt")
    assert all(torch.equal(r0[k], r1[k]) for k in r0)
    fresh = VidMusician.from_config(VidMusicianConfig.debug(clip_dim=16)).trainable_state()
    assert any(not torch.equal(r0[k], fresh[k]) for k in r0)  # it trained
    moved = [k for k in r0 if not torch.equal(r0[k], single[k])]
    assert all(torch.allclose(r0[k], single[k], rtol=1e-4, atol=1e-6) for k in r0), moved
    _, pkg = read_checkpoint(tmp_path / "ddp" / "stage1" / "ckpt-00000004.pt")  # rank 0 wrote it
    assert all(torch.equal(pkg["state"][k], r0[k]) for k in r0)


def test_data_may_be_a_features_dir_a_root_or_an_export(tmp_path):
    import pandas as pd

    from flows.training.train import features_source

    features = write_store(tmp_path / "root" / "features", n_train=3, n_test=1)
    export = tmp_path / "root" / "exports" / "mix"
    export.mkdir(parents=True)
    pd.DataFrame({"clip_id": ["train-00", "test-00"], "split": ["train", "test"]}).to_parquet(
        export / "manifest.parquet")
    assert features_source(features) == (features, None)
    assert features_source(tmp_path / "root") == (features, None)
    assert features_source(export) == (features, ["train-00", "test-00"])
    with pytest.raises(FileNotFoundError, match="--data ROOT"):
        features_source(tmp_path)


def test_resumed_metrics_drop_rows_past_the_checkpoint_and_a_torn_row(tmp_path):
    from flows.training.output import MetricsWriter

    w = MetricsWriter(tmp_path, n_codebooks=2, resume_step=None, tensorboard=False)
    for step in range(1, 6):
        w.write({"stage": 1, "step": step, "epoch": 0, "loss": 8.0 - step / 10})
    w.close()
    with (tmp_path / "metrics.csv").open("a") as fh:
        fh.write("1,6,0,7.3")  # the killed process's last, unfinished row
    w = MetricsWriter(tmp_path, n_codebooks=2, resume_step=4, tensorboard=False)
    w.write({"stage": 1, "step": 5, "epoch": 0, "loss": 7.5})
    w.close()
    with (tmp_path / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5] and rows[-1]["loss"] == "7.5"
    assert all(None not in r.values() for r in rows)
