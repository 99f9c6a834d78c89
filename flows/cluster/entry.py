"""Entry flows for deployments and Dask: JSON-only parameters (what travels through the Prefect API).

Settings come in as plain dicts of the run's config (``CurateConfig``, ``FeaturesConfig``, the train
recipe); the heavy resources — the separator, CLIP, the codec — are loaded once per worker process and
reused by every run that process serves; the task runner and its width are chosen here, inside the
flow, from the settings (a deployed flow's default runner has no cap on parallel tasks). The
in-process CLI runs these same flows when given ``--dask``; `vidmusician deploy` registers them.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from dvmset.leases import LeasePolicy
from flows.cluster import limits
from flows.config import CurateConfig, FeaturesConfig
from flows.settings import SEARCH_HITS_PER_QUERY, catalog_url, resolve_root

log = logging.getLogger(__name__)

_models: dict[tuple, tuple] = {}
_models_lock = threading.Lock()


def _config(cls: type, settings: dict[str, Any] | None):  # noqa: ANN202 - an instance of cls
    """``cls(**settings)``, refusing unknown keys by name (a typo must not silently become a default)."""
    settings = dict(settings or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} settings {unknown}; known: {sorted(known)}")
    return cls(**settings)


def task_runner(width: int, dask: str | None = None):  # noqa: ANN201 - a Prefect TaskRunner
    """Threads (``width`` tasks at once), or a Dask cluster: ``"local"`` starts one of ``width``
    single-threaded worker processes for this run; any other value is a scheduler address."""
    if not dask:
        return ThreadPoolTaskRunner(max_workers=width)
    from prefect_dask import DaskTaskRunner

    if dask == "local":
        return DaskTaskRunner(cluster_kwargs={"n_workers": width, "threads_per_worker": 1, "processes": True,
                                              "dashboard_address": None})
    return DaskTaskRunner(address=dask)


def _where(root: str | None, db: str | None) -> tuple[Path, str]:
    """The data root and catalog URL: the parameters, else this worker's environment (as the CLI)."""
    found = resolve_root(root)
    return found.path, db or catalog_url(found)


@flow(name="vidmusician-curate", log_prints=False)
def curate(queries: list[str] | None = None, urls: list[str] | None = None, per_query: int = SEARCH_HITS_PER_QUERY,
           settings: dict[str, Any] | None = None, retry_failed: bool = False, dask: str | None = None,
           lease_ttl_s: float = 600.0, max_attempts: int = 3, root: str | None = None,
           db: str | None = None) -> dict:
    """Curate sources into clips awaiting review (the curate flow with JSON-only parameters)."""
    from flows.curation.curate import curate_flow, shared_resources

    cfg = _config(CurateConfig, settings)
    root_path, db_url = _where(root, db)
    shared_resources(cfg)  # the separator, once per process: missing weights fail before any source
    runner = task_runner(cfg.workers, dask)
    return curate_flow.with_options(task_runner=runner)(
        str(root_path), db_url, queries=queries or [], urls=urls or [], per_query=per_query, cfg=cfg,
        retry_failed=retry_failed, lease=LeasePolicy(ttl_s=lease_ttl_s, max_attempts=max_attempts))


def shared_models(cfg: FeaturesConfig) -> tuple:
    """(CLIP image encoder, codec) for ``cfg``, loaded once per process."""
    from flows.dataset.features import _load_models

    key = (cfg.clip_model, cfg.pretrained, cfg.codec, cfg.device, cfg.precision)
    with _models_lock:
        if key not in _models:
            _models[key] = _load_models(cfg)
        return _models[key]


def _gpu_slot(device: str) -> contextlib.AbstractContextManager[None]:
    return limits.holding(limits.GPU_JOBS) if device.startswith("cuda") else contextlib.nullcontext()


@flow(name="vidmusician-features", log_prints=False)
def features(settings: dict[str, Any] | None = None, root: str | None = None, db: str | None = None) -> dict:
    """Accepted clips -> feature shards (one task per shard), one GPU job slot held on CUDA."""
    from dvmset.layout import DataRoot
    from flows.dataset.features import extract_shard_task, run_features

    cfg = _config(FeaturesConfig, settings)
    root_path, db_url = _where(root, db)
    with _gpu_slot(cfg.device):
        out = run_features(DataRoot(root_path), db_url, cfg, shard_fn=extract_shard_task, models=shared_models(cfg))
    return {**out, "config": asdict(cfg)}



@flow(name="vidmusician-export", log_prints=False)
def export(name: str, test_fraction: float | None = None, seed: int | None = None, reshuffle: bool = False,
           release: bool = False, root: str | None = None, db: str | None = None,
           valid_fraction: float | None = None) -> dict:
    """Split accepted clips by source and write the export (manifest, JSONL, DATASET.md)."""
    from dvmset.catalog import Catalog
    from dvmset.export import export_dataset
    from dvmset.layout import DataRoot
    from pipeline.probe import audio_rate

    root_path, db_url = _where(root, db)
    given = {"test_fraction": test_fraction, "valid_fraction": valid_fraction, "seed": seed}
    cat = Catalog(db_url)
    try:
        s = export_dataset(DataRoot(root_path), cat, name, keep_existing=not reshuffle, audio_rate=audio_rate,
                           release=release, **{k: v for k, v in given.items() if v is not None})
    finally:
        cat.dispose()
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(s).items()}


@flow(name="vidmusician-train", log_prints=False)
def train(data: str, out: str, recipe: dict[str, Any] | None = None, settings: dict[str, Any] | None = None) -> dict:
    """Train (resumable): ``recipe`` is stage 1's TrainConfig fields, ``settings`` the TrainRun's others."""
    from flows.training.run import TrainRun
    from flows.training.train import run_training
    from model.training.config import TrainConfig

    extra = dict(settings or {})
    if "stages" in extra:
        extra["stages"] = tuple(extra["stages"])
    for key in ("init",):
        if extra.get(key) is not None:
            extra[key] = Path(extra[key])
    if {"data", "out", "recipe"} & set(extra):
        raise ValueError("give data, out and recipe as their own parameters, not inside settings")
    run = _config(TrainRun, {**extra, "data": Path(data), "out": Path(out),
                             "recipe": _config(TrainConfig, {"stage": 1, **(recipe or {})})})
    with _gpu_slot(run.device):
        best = run_training(run).best
    return {str(stage): str(path) for stage, path in best.items()}


def ablate_run(data: str, out: str, rows: list[str] | None = None, recipe: dict[str, Any] | None = None,
               settings: dict[str, Any] | None = None, generate: dict[str, Any] | None = None,
               evaluate: dict[str, Any] | None = None, split: str = "test"):  # noqa: ANN201 - an AblateRun
    """The AblateRun of the ablate entry flow's JSON parameters (``recipe``/``settings`` as `train`'s;
    ``generate``/``evaluate``: the GenerateConfig / EvaluateConfig fields that differ from their defaults)."""
    from flows.evaluation.evaluate import EvaluateConfig
    from flows.training.ablate import AblateRun
    from flows.training.generate_config import GenerateConfig
    from flows.training.run import TrainRun
    from model.ablation import TABLE2
    from model.training.config import TrainConfig

    extra, recipe = dict(settings or {}), dict(recipe or {})
    if "stages" in extra:
        extra["stages"] = tuple(extra["stages"])
    if "device" not in extra:  # as the CLI: this worker's GPU when it has one, bf16 there
        import torch

        extra["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    recipe.setdefault("precision", "bf16" if extra["device"] == "cuda" else "fp32")
    if {"data", "out", "recipe", "init"} & set(extra):
        raise ValueError("give data, out and recipe as their own parameters (and no init), not inside settings")
    train = _config(TrainRun, {**extra, "data": Path(data), "out": Path(out),
                               "recipe": _config(TrainConfig, {"stage": 1, **recipe})})
    gen = None
    if generate is not None:
        given = {k: Path(v) if k == "cache_dir" and v is not None else v for k, v in generate.items()}
        gen = _config(GenerateConfig, {"checkpoint": Path(out), "out_dir": Path(out), "mux": False,
                                       "device": extra["device"], **given})
    from flows.evaluation.evaluate import CHECKPOINTS

    ev = {k: Path(v) if k in CHECKPOINTS and v is not None else v for k, v in (evaluate or {}).items()}
    if "metrics" in ev:
        ev["metrics"] = tuple(ev["metrics"])
    unknown = sorted(set(ev) - {f.name for f in fields(EvaluateConfig)})
    if unknown:
        raise ValueError(f"unknown EvaluateConfig settings {unknown}")
    return AblateRun(Path(data), Path(out), tuple(rows or TABLE2), train, gen,
                     EvaluateConfig.with_env(generated=Path(out), reference=Path(out), **ev), split)


@flow(name="vidmusician-ablate", log_prints=False)
def ablate(data: str, out: str, rows: list[str] | None = None, recipe: dict[str, Any] | None = None,
           settings: dict[str, Any] | None = None, generate: dict[str, Any] | None = None,
           evaluate: dict[str, Any] | None = None, split: str = "test", row_deployment: str | None = None) -> dict:
    """Table 2 on an export (resumable); returns the table's paths and the rows done. Without
    ``row_deployment`` every row is a subflow of this run, in turn; with it (`ablate --via-server`) each row is
    a run of that deployment (the ablate-row entry flow), so the pool's workers run them side by side."""
    from flows.training.ablate import run_ablate, with_features_clip

    run = ablate_run(data, out, rows, recipe, settings, generate, evaluate, split)
    if row_deployment is not None:
        return _ablate_on_pool(run, row_deployment, {"data": data, "out": out, "recipe": recipe, "settings": settings,
                                                      "generate": generate, "evaluate": evaluate, "split": split})
    if generate is not None and "clip_model" not in generate:
        run = with_features_clip(run)
    with _gpu_slot(run.train.device):
        result = run_ablate(run)
    return {"table2.md": str(result.table_md), "table2.json": str(result.table_json),
            "rows": [r["row"] for r in result.rows]}


def _ablate_on_pool(run, deployment: str, params: dict[str, Any]) -> dict:  # noqa: ANN001 - an AblateRun
    """Check the export and link the test clips once, start every row on ``deployment``, wait, write the table."""
    from prefect.logging import get_run_logger

    from flows.cluster.rows import dispatch_rows
    from flows.training.ablate_row import prepare
    from flows.training.table2 import write_table

    logger = get_run_logger()
    prepare(run)
    records = dispatch_rows(deployment, {k: v for k, v in params.items() if v is not None}, run.rows,
                            on_state=lambda row, state: logger.info("row %s: %s", row, state))
    md, js = write_table(Path(run.out), records)
    return {"table2.md": str(md), "table2.json": str(js), "rows": [r["row"] for r in records]}


@flow(name="vidmusician-ablate-row", log_prints=False)
def ablate_row(data: str, out: str, row: str, recipe: dict[str, Any] | None = None,
               settings: dict[str, Any] | None = None, generate: dict[str, Any] | None = None,
               evaluate: dict[str, Any] | None = None, split: str = "test") -> dict:
    """One Table 2 row to its end on this worker (train, generate, evaluate; a row already done returns its
    record untouched), holding one GPU job slot on CUDA; returns the row, its fingerprint and best checkpoint."""
    from flows.training.ablate import ablate_row as run_row
    from flows.training.ablate import row_options, with_features_clip

    run = ablate_run(data, out, [row], recipe, settings, generate, evaluate, split)
    if generate is not None and "clip_model" not in generate:
        run = with_features_clip(run)
    gen, ev = row_options(run)
    with _gpu_slot(run.train.device):
        record = run_row(run, row, gen, ev)
    return {"row": row, "fingerprint": record["fingerprint"], "best_checkpoint": record["best_checkpoint"]}
