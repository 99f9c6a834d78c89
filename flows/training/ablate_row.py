"""The work of one Table 2 row (flows.training.ablate): train it (or build its reference checkpoint), generate
the export's test split with its best checkpoint, evaluate that, and return the row's record."""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from flows.evaluation.evaluate import EvaluateConfig
from flows.training.generate_config import GenerateConfig
from model.ablation import Row

if TYPE_CHECKING:
    from flows.training.ablate import AblateRun, RowHook

log = logging.getLogger(__name__)
TEST_DIR = "test"  # OUT/test/{clip_id}.mp4: the split's clips, the reference music and videos of every row
FEATURE_CACHE = ".features"  # OUT/.features: the test videos' conditions, computed once for every row


def prepare(run: AblateRun) -> str | None:
    """Check the export, link its split's clips into OUT/test/; the CLIP model the features were made with."""
    from flows.training.ablate import AblateError
    from flows.training.generate import GenerateError, jobs_for_export

    data = Path(run.data)
    if not (data / "manifest.parquet").is_file():
        raise AblateError(f"{data}: ablate needs an export (ROOT/exports/NAME, with manifest.parquet): its "
                          f"{run.split} clips are generated for; make one with `vidmusician export`")
    try:
        jobs = jobs_for_export(data, run.split)
    except GenerateError as err:
        raise AblateError(str(err)) from err
    test = Path(run.out) / TEST_DIR
    test.mkdir(parents=True, exist_ok=True)
    for job in jobs:
        link = test / f"{job.name}{job.video.suffix}"
        target = job.video.resolve()
        if link.is_symlink() and Path(os.readlink(link)) == target:
            continue
        tmp = test / f".{job.name}.{os.getpid()}.link"  # rows on other workers may link at the same time
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target)
        os.replace(tmp, link)
    return features_clip_model(run)


def features_clip_model(run: AblateRun) -> str | None:
    """The CLIP model the export's features were made with (what generation must use too)."""
    from dvmset.dataset import FeatureWindows
    from flows.training.train import features_source

    features, ids = features_source(Path(run.data))
    return FeatureWindows(features, window_s=run.train.recipe.window_s, clip_ids=ids).spec().clip_model


def finish_row(run: AblateRun, row: Row, directory: Path, generate: GenerateConfig, evaluate: EvaluateConfig,
               settings: dict, fingerprint: str, on_row: RowHook | None) -> dict:
    from flows.evaluation.evaluate import evaluate as run_evaluation
    from flows.evaluation.report import report_json, write_report
    from flows.training.ablate import row_train_run
    from flows.training.generate import generate_batch, jobs_for_export

    def note(what: str) -> None:
        if on_row is not None:
            on_row(row.name, what)

    note("start")
    train_run = row_train_run(run, row)
    start: dict = {}
    if row.reference is None:
        best, val_loss, guided, start = _train(train_run, generate.cfg_coef)
    else:
        best, val_loss, guided = _reference(train_run, row, generate.cfg_coef)
    note("trained")
    gen_dir = directory / "generated"
    results = generate_batch(jobs_for_export(Path(run.data), run.split),
                             replace(generate, checkpoint=best, out_dir=gen_dir, mux=False,
                                     cache_dir=generate.cache_dir or Path(run.out) / FEATURE_CACHE))
    failed = [f"{r.name}: {r.error}" for r in results if not r.ok]
    note("generated")
    test = Path(run.out) / TEST_DIR
    report = run_evaluation(replace(evaluate, generated=gen_dir, reference=test, videos=test))
    write_report(report, directory / "evaluation")
    metrics = report_json(report)["metrics"]
    return {**row_record(row, settings, fingerprint, best, val_loss, metrics, failed, guided), **start}


def row_record(row: Row, settings: dict, fingerprint: str, best: Path, val_loss: float | None, metrics: dict,
               failed: list[str], val_loss_guided: float | None = None) -> dict:
    """A row of table2.json: name, switches, settings and their fingerprint, best checkpoint, validation loss
    (and val_loss_guided: the best weights' validation loss under the guided logits the row's music was
    sampled from, at its generate cfg_coef), and per metric {value, ci95, chance, n} (or {skipped: reason}).
    Two-stage rows add stage1_val_loss and stage2_step0_val_loss (stage 1's best weights with the rhythm
    module as initialised: equal with IT)."""
    cells = {}
    for name, m in metrics.items():
        if m.get("skipped"):
            cells[name] = {"value": None, "ci95": None, "chance": None, "n": 0, "skipped": m["skipped"]}
        else:
            cells[name] = {"value": m.get("value"), "ci95": m.get("ci95"), "chance": m.get("chance"), "n": m.get("n", 0),
                           "extra": {k: v for k, v in m.items() if k not in ("value", "ci95", "chance", "n")}}
    return {"row": row.name, "title": row.title, "reference": row.reference, "columns": row.switches.columns(),
            "switches": row.switches.as_dict(), "stages": list(row.stages), "settings": settings,
            "fingerprint": fingerprint, "best_checkpoint": str(best), "val_loss": val_loss,
            "val_loss_guided": val_loss_guided, "metrics": cells,
            "paper": None if row.paper is None else dict(row.paper), "generation_failures": failed}


def _train(train_run, cfg_coef: float) -> tuple[Path, float | None, float | None, dict]:  # noqa: ANN001 - TrainRun
    """Train the row (resuming); (best checkpoint, its validation loss, its guided validation loss at
    `cfg_coef`, the stage-2 start's losses)."""
    from flows.training.train import run_training
    from model.training.checkpoint import load_model, load_trainable
    from model.training.state import read_training

    result = run_training(train_run)
    best = result.best[max(result.best)]
    load_trainable(result.model, best)  # the trained model, its best weights (no second backbone loaded)
    guided = _validation(train_run, result.model, cfg_coef)
    start = {}
    if set(result.best) == {1, 2}:  # where stage 2 starts: stage 1's best, the rhythm module as initialised
        stage1 = result.best[1]
        start = {"stage1_val_loss": read_training(stage1)["best"]["val"],
                 "stage2_step0_val_loss": _val_loss(train_run, load_model(stage1, device=train_run.device))}
    return best, read_training(best)["best"]["val"], None if guided is None else guided.guided, start


def _val_loss(train_run, model) -> float | None:  # noqa: ANN001 - TrainRun, VidMusician
    """The validation loss on the valid split, batched as `train` validates (stage 2: rhythm on)."""
    got = _validation(train_run, model, 1.0)
    return None if got is None else got.loss


def _validation(train_run, model, cfg_coef: float):  # noqa: ANN001, ANN202 - TrainRun, VidMusician -> Validation | None
    """The valid split's losses (`model.training.step.validate`; guided at `cfg_coef`), batched as `train`
    validates; None without a valid split."""
    import torch

    from dvmset.records import VALID
    from flows.training.train import _loader, _windows, data_source
    from model.training.step import validate

    recipe = train_run.recipe
    val = _windows(data_source(train_run.data), VALID, recipe, model.config.rhythm.source)
    if val is None:
        return None
    batches = [list(range(i, min(i + recipe.batch_size, len(val)))) for i in range(0, len(val), recipe.batch_size)]
    with torch.no_grad():
        return validate(model, _loader(val, batches, 0, 0, torch.device(train_run.device)), recipe.precision, cfg_coef)


def _reference(train_run, row: Row, cfg_coef: float) -> tuple[Path, float | None, float | None]:  # noqa: ANN001 - TrainRun
    """The untrained stage-2 model, or the frozen backbone alone: a checkpoint of nothing trained, and its
    validation loss on the valid split, plain and guided at `cfg_coef`."""
    from dvmset.dataset import FeatureWindows
    from flows.training.train import features_source, model_config
    from model.training.checkpoint import save_trainable
    from model.training.data import check_features
    from model.vidmusician import VidMusician

    features, ids = features_source(train_run.data)
    recipe = train_run.recipe
    spec = FeatureWindows(features, window_s=recipe.window_s, clip_ids=ids).spec()
    config = model_config(train_run, train_run.clip_dim or spec.clip_dim)
    if row.reference == "backbone":
        config = replace(config, unconditional=True)
    model = VidMusician.from_config(config, device=train_run.device, seed=recipe.seed)
    check_features(spec, model)
    path = save_trainable(model, Path(train_run.out) / "model.pt")
    got = _validation(train_run, model, cfg_coef)
    return path, *((None, None) if got is None else (got.loss, got.guided))
