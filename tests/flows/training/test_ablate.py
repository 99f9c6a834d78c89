"""Table 2 through the real commands on the debug backbone: `train`'s ablation switches are recorded in the
checkpoint and honoured by `generate` (a no-RCM checkpoint ignores rhythm, an AT one reads rhythm_global);
IT keeps stage 2's step 0 equal to stage 1; `ablate` SIGKILLed mid-row and re-run retrains no finished row
and writes the same table as an uninterrupted run; a changed setting under a row is refused."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from ablation_helpers import TINY_CLIP_D, debug_ablate_args, tiny_export
from training_helpers import REPO, cli_env, debug_train_args, run_main, write_store

from flows.training.generate import GenerateConfig, Generator
from model.longform import generate_long
from model.training.checkpoint import load_model, read_checkpoint, save_trainable
from model.training.state import read_training
from pipeline.synth import make_sample_video
from pipeline.video_features import video_conditions


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return write_store(tmp_path_factory.mktemp("abl-store") / "features", n_train=4, n_test=2, dim=TINY_CLIP_D)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return make_sample_video(tmp_path_factory.mktemp("abl-video") / "cuts.mp4", 2.0, size="64x48", fps=25,
                             cut_every_s=0.5)


def _train(store: Path, out: Path, *extra: str) -> Path:
    args = debug_train_args(store, out, "--steps", "2", "--val-every", "1", "--workers", "0", *extra)
    if "--one-stage" in extra:  # one stage trains at --stage1-lr; --stage2-lr is refused with it
        i = args.index("--stage2-lr")
        del args[i:i + 2]
    assert run_main(args) == 0
    return out


def test_each_switch_is_recorded_in_the_checkpoint_and_one_stage_trains_once(store, tmp_path):
    out = _train(store, tmp_path / "mix", "--t5-from-scratch", "--no-init-technique", "--one-stage",
                 "--rhythm-source", "global", "--rhythm-style", "musicongen")
    assert not (out / "stage1").exists()  # one stage: both modules from the start, in RUN/stage2
    config, pkg = read_checkpoint(out / "stage2" / "best.pt")
    assert config.semantic.from_scratch and config.rhythm.enabled and not config.rhythm.init_technique
    assert config.rhythm.source == "global" and config.rhythm.style == "musicongen"
    assert any(n.startswith("semantic.t5.") and "lora_" not in n for n in pkg["state"])  # the whole T5 trained
    assert any(".self_attn." in n for n in pkg["state"])  # MusiConGen's trained self-attentions
    recipe = json.loads(read_training(out / "stage2" / "best.pt")["config"])
    assert recipe["lr"] == 1e-3 and recipe["steps"] == 4  # stage 1's lr, both stages' length

    plain = _train(store, tmp_path / "norcm", "--no-rhythm")
    assert not (plain / "stage2").exists()
    config, pkg = read_checkpoint(plain / "stage1" / "best.pt")
    assert not config.rhythm.enabled and not any(n.startswith("rhythm.") for n in pkg["state"])

    assert run_main(debug_train_args(store, tmp_path / "bad", "--no-rhythm", "--rhythm-source", "global")) == 2
    assert run_main(debug_train_args(store, tmp_path / "bad", "--no-rhythm", "--stage", "both")) == 2
    assert not (tmp_path / "bad").exists()


def _logits_both_ways(ckpt: Path, store_seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """(stage-1 logits: the LM without the rhythm hooks, stage-2 step-0 logits: with them) of the model that
    stage 2 starts from (stage 1's best weights, the rhythm module at its initialisation)."""
    model = load_model(ckpt)
    g = torch.Generator().manual_seed(store_seed)
    feats, rhythm = torch.randn(2, 2, TINY_CLIP_D, generator=g), torch.rand(2, 100, generator=g)
    codes = torch.randint(0, 2048, (2, 4, 100), generator=g)
    with torch.no_grad():
        one = model.lm.compute_predictions(codes, [], condition_tensors=model.condition_tensors(feats))
        two = model(feats, rhythm, codes)
    return one.logits[one.mask], two.logits[two.mask]


def test_with_it_stage_two_step_zero_equals_stage_one_without_it_it_does_not(store, tmp_path):
    it = _train(store, tmp_path / "it", "--stage", "1")
    no_it = _train(store, tmp_path / "noit", "--stage", "1", "--no-init-technique")
    a1, a2 = _logits_both_ways(it / "stage1" / "best.pt")
    assert torch.equal(a1, a2)
    b1, b2 = _logits_both_ways(no_it / "stage1" / "best.pt")
    assert torch.equal(b1, a1)  # stage 1 never sees the rhythm module, however it was initialised
    assert (b2 - b1).abs().max() > 1e-3


def _perturbed(config_changes: dict, path: Path) -> Path:
    from dataclasses import replace

    from model.config import VidMusicianConfig
    from model.vidmusician import VidMusician

    cfg = VidMusicianConfig.debug(clip_dim=TINY_CLIP_D)
    cfg = replace(cfg, rhythm=replace(cfg.rhythm, **config_changes))
    model = VidMusician.from_config(cfg, seed=0)
    torch.manual_seed(1)
    with torch.no_grad():  # away from the identity init, as after training: rhythm now changes the music
        for p in model.trainable_state().values():
            p.add_(0.2 * torch.randn_like(p))
    return save_trainable(model, path)


def _gen(ckpt: Path, out: Path) -> Generator:
    return Generator.load(GenerateConfig(checkpoint=ckpt, out_dir=out, clip_model="tiny", window_s=2, top_k=50,
                                         mux=False, cache_dir=out / "cache"))


def test_generate_follows_the_checkpoint_no_rcm_ignores_rhythm_at_reads_the_global_signal(video, tmp_path):
    no_rcm = _gen(_perturbed({"enabled": False}, tmp_path / "norcm.pt"), tmp_path / "g1")
    full = _gen(_perturbed({}, tmp_path / "full.pt"), tmp_path / "g2")
    at = _gen(_perturbed({"source": "global"}, tmp_path / "at.pt"), tmp_path / "g3")
    cond = video_conditions(video, full.encoder, encoder_key=full.cfg.encoder_key)
    assert (cond.rhythm != cond.rhythm_global).any()  # the two signals differ on this video

    span, _, glob, rhythm = no_rcm.conditions(video)
    assert rhythm is None
    noise = torch.rand(1, int(span * 50))
    codes = [generate_long(no_rcm.model, glob, r, span, no_rcm.cfg.longform, no_rcm.cfg.sampling, seed=0).codes
             for r in (None, noise, torch.zeros_like(noise))]
    assert torch.equal(codes[0], codes[1]) and torch.equal(codes[0], codes[2])  # rhythm input: no effect

    _, _, glob, rhythm = full.conditions(video)
    assert torch.equal(rhythm[0], torch.from_numpy(cond.rhythm))
    with_r, with_noise = (generate_long(full.model, glob, r, span, full.cfg.longform, full.cfg.sampling, seed=0).codes
                          for r in (rhythm, noise))
    assert not torch.equal(with_r, with_noise)  # the full model does listen to rhythm
    _, _, _, rhythm_at = at.conditions(video)
    assert torch.equal(rhythm_at[0], torch.from_numpy(cond.rhythm_global))


def test_a_changed_setting_under_a_started_row_is_refused_with_what_differs(tmp_path):
    from dataclasses import replace

    from flows.training.ablate import (
        AblateError,
        AblateRun,
        claim_row_dir,
        default_evaluate,
        default_generate,
        row_settings,
    )
    from flows.training.run import TrainRun
    from model.ablation import ROWS

    train = TrainRun(data=tmp_path, out=tmp_path, backbone="debug")
    run = AblateRun(tmp_path / "export", tmp_path / "out", ("full",), train)
    settings = row_settings(run, ROWS["full"], default_generate(run, "tiny"), default_evaluate(run))
    assert claim_row_dir(tmp_path / "row", settings) is None
    assert claim_row_dir(tmp_path / "row", settings) is None  # the same settings: carry on
    other = replace(run, train=replace(train, recipe=replace(train.recipe, seed=7)))
    changed = row_settings(other, ROWS["full"], default_generate(run, "tiny"), default_evaluate(run))
    with pytest.raises(AblateError, match=r"train\.recipe\.seed: 0 -> 7"):
        claim_row_dir(tmp_path / "row", changed)
    moved = replace(run, out=tmp_path / "elsewhere", train=replace(train, workers=3, keep=9))
    assert row_settings(moved, ROWS["full"], default_generate(moved, "tiny"), default_evaluate(moved)) == settings


def _files(directory: Path) -> dict[str, int]:
    return {str(p.relative_to(directory)): p.stat().st_mtime_ns for p in sorted(directory.rglob("*")) if p.is_file()}


def _table(out: Path) -> list[dict]:
    rows = json.loads((out / "table2.json").read_text())["rows"]
    for r in rows:
        r["best_checkpoint"] = str(Path(r["best_checkpoint"]).relative_to(out))
    return rows


@pytest.mark.slow
def test_ablate_killed_mid_row_rerun_retrains_nothing_finished_and_writes_the_same_table(tmp_path, capsys):
    export = tiny_export(tmp_path / "root", clip_s=2)  # one 2 s window per test clip
    args = ["--rows", "no-rcm,full"]
    straight = tmp_path / "straight"
    assert run_main(debug_ablate_args(export, straight, *args)) == 0, capsys.readouterr().err
    table = (straight / "table2.md").read_text()
    assert "| no-rcm | ✓ | ✗ | — |" in table and "| full | ✓ | ✓ | ✓ | ✓ | ✓ | ✓ |" in table
    rows = _table(straight)
    assert [r["row"] for r in rows] == ["no-rcm", "full"]
    assert all(r["metrics"]["rhythm"]["n"] == 2 and r["val_loss"] is not None for r in rows)
    assert rows[0]["best_checkpoint"] == "rows/no-rcm/run/stage1/best.pt"
    assert rows[1]["best_checkpoint"] == "rows/full/run/stage2/best.pt"
    assert rows[1]["stage2_step0_val_loss"] == rows[1]["stage1_val_loss"] is not None  # IT: stage 2 starts equal
    assert "stage2_step0_val_loss" not in rows[0]

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", *debug_ablate_args(export, out, *args)], cwd=REPO,
                            env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    mid = out / "rows" / "full" / "run" / "stage1" / "ckpt-00000002.pt"
    deadline = time.monotonic() + 900
    while not mid.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    still_running = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert still_running and mid.exists(), proc.stderr.read().decode()[-3000:]
    assert (out / "rows" / "no-rcm" / "done.json").is_file() and not (out / "rows" / "full" / "done.json").exists()
    finished, partial = _files(out / "rows" / "no-rcm"), _files(out / "rows" / "full" / "run" / "stage1")

    assert run_main(debug_ablate_args(export, out, *args)) == 0, capsys.readouterr().err
    assert "no-rcm: cached" in capsys.readouterr().out
    assert _files(out / "rows" / "no-rcm") == finished  # the finished row: not a file touched
    after = _files(out / "rows" / "full" / "run" / "stage1")
    assert all(after[k] == v for k, v in partial.items() if "ckpt-00000002" in k)  # resumed, not restarted
    assert _table(out) == rows
    for row in ("no-rcm", "full"):
        for wav in (straight / "rows" / row / "generated").glob("*.wav"):
            again = out / "rows" / row / "generated" / wav.name  # samples, not bytes: a float WAV's PEAK chunk
            assert np.array_equal(sf.read(wav, dtype="float32")[0], sf.read(again, dtype="float32")[0])  # has a time

    rc = run_main(debug_ablate_args(export, out, *args, "--seed", "1"))
    err = capsys.readouterr().err
    assert rc == 2 and "train.recipe.seed: 0 -> 1" in err and "delete" in err


@pytest.mark.parametrize("extra", [(), ("--gen-seed", "3", "--metrics", "rhythm,fd", "--panns", "/models/p.pth")])
def test_via_server_parameters_rebuild_the_same_run_on_a_worker(tmp_path, monkeypatch, extra):
    from flows.cli import build_parser
    from flows.cluster.entry import ablate_run
    from flows.commands.ablate import ablate_run_from_args, remote_params

    for env in ("VIDMUSICIAN_PANNS_CKPT", "VIDMUSICIAN_CLAP_CKPT", "VIDMUSICIAN_IMAGEBIND_CKPT"):
        monkeypatch.delenv(env, raising=False)
    args = build_parser().parse_args(debug_ablate_args(tmp_path / "export", tmp_path / "out", "--rows", "full,at",
                                                       "--seed", "5", "--precision", "fp32", *extra))
    local = ablate_run_from_args(args)
    params = json.loads(json.dumps(remote_params(local, args)))  # as the Prefect API carries them
    assert params.pop("row_deployment") == "vidmusician-ablate-row/ablate-row"  # each row its own run
    assert ablate_run(**params) == local


@pytest.mark.slow
def test_the_ablate_entry_flow_runs_rows_as_subflows_on_json_parameters(tmp_path, prefect_harness):
    from prefect import get_client

    from flows.cluster.entry import ablate

    export = tiny_export(tmp_path / "root", clip_s=2)
    params = json.loads(json.dumps({
        "data": str(export), "out": str(tmp_path / "out"), "rows": ["backbone", "untrained"],
        "recipe": {"window_s": 2, "batch_size": 2, "seed": 0}, "settings": {"backbone": "debug", "device": "cpu"},
        "generate": {"window_s": 2, "top_k": 50}, "evaluate": {"metrics": ["rhythm"]}}))
    got = ablate(**params)
    assert got["rows"] == ["backbone", "untrained"] and Path(got["table2.json"]).is_file()
    rows = json.loads(Path(got["table2.json"]).read_text())["rows"]
    assert [r["settings"]["generate"]["clip_model"] for r in rows] == ["tiny", "tiny"]  # the features' CLIP
    assert all(r["metrics"]["rhythm"]["n"] == 2 and r["val_loss"] is not None for r in rows)
    with get_client(sync_client=True) as client:
        names = [r.name for r in client.read_flows()]
    assert "ablate-row" in names and "vidmusician-ablate" in names
