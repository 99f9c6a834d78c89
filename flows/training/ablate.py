"""`vidmusician ablate`: the paper's Table 2 on one export — train each row, generate its test split with the
row's best checkpoint, evaluate it, and write OUT/table2.md and OUT/table2.json.

OUT/rows/{row}/ holds settings.json (what the row was started with, and its fingerprint), run/ (the train
run, resumable as `train` is), generated/{clip_id}.wav, evaluation/report.{json,md} and, last, done.json. A
re-run finishes what is missing and redoes nothing: a row with done.json under the same fingerprint is read
back, a row without it resumes its training (`train`'s own resume) and generates and evaluates again
(seeded: the same numbers). A row directory started with other settings is refused with what differs:
use another --out, or delete that row's directory.

Each row is its own Prefect flow (`ablate_row`): `ablate_flow` runs them in turn as subflows of one run;
flows/cluster/rows.py starts each as its own deployment run, so a pool of workers runs them side by side.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast

from prefect import flow

from dvmset.io import atomic_write_text
from flows.evaluation.evaluate import EvaluateConfig
from flows.training.generate_config import GenerateConfig
from flows.training.run import TrainRun
from model.ablation import ROWS, TABLE2, AblationError, Row

log = logging.getLogger(__name__)

SETTINGS, DONE = "settings.json", "done.json"
RowHook = Callable[[str, str], None]  # (row, what happened: "start", "trained", "generated", "done", "cached")


class AblateError(ValueError):
    """An ablation that cannot run as asked; the message says what to change."""


@dataclass(frozen=True)
class AblateRun:
    """One `vidmusician ablate`: the export, the output folder, the rows and the options every row shares."""

    data: Path  # an export folder (ROOT/exports/NAME)
    out: Path
    rows: tuple[str, ...]  # names from model.ablation.ROWS
    train: TrainRun  # the shared train options; data/out/stages and the Table 2 switches are set per row
    generate: GenerateConfig | None = None  # sampling options (seeded); None: the defaults, CLIP from the features
    evaluate: EvaluateConfig | None = None  # None: every metric, embedders from the environment
    split: str = "test"  # the export's split that is generated and evaluated

    def __post_init__(self) -> None:
        unknown = [r for r in self.rows if r not in ROWS]
        if unknown or not self.rows:
            raise AblationError(f"unknown row(s) {unknown or '(none)'}; choose from {', '.join(ROWS)}")
        if len(set(self.rows)) != len(self.rows):
            raise AblationError(f"a row is named twice in {self.rows}")
        if self.train.init is not None:
            raise AblateError("ablate trains every row from its own initialisation: drop --init")


@dataclass
class AblateResult:
    """`rows`: one dict per row, in the order asked (see `row_record`)."""

    rows: list[dict] = field(default_factory=list)
    table_md: Path | None = None
    table_json: Path | None = None


def row_dir(out: Path, name: str) -> Path:
    return Path(out) / "rows" / name


def row_train_run(run: AblateRun, row: Row) -> TrainRun:
    """The train run of one row: the shared options, this row's switches and stages, its own run dir."""
    stages = row.stages or ((1, 2) if row.switches.rhythm else (1,))  # a reference trains none of them
    return replace(run.train, data=Path(run.data), out=row_dir(run.out, row.name) / "run", stages=stages,
                   lr2=None if row.switches.one_stage else run.train.lr2, init=None, **row.switches.as_dict())


def _plain(value: object) -> object:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "__dataclass_fields__"):
        return {k: _plain(getattr(value, k)) for k in value.__dataclass_fields__}
    return value


# settings that change no number of a row: where things go, how fast, how loud
# (train's val_cfg_coef only adds a metrics.csv column; table2's guided loss is at the rows' generate cfg_coef)
_NOT_RESULTS = {"train": {"out", "progress", "workers", "keep", "ckpt_every", "data", "val_cfg_coef"},
                "generate": {"checkpoint", "out_dir", "cache_dir", "mux", "longform", "sampling"},
                "evaluate": {"generated", "reference", "videos"}}


def row_settings(run: AblateRun, row: Row, generate: GenerateConfig, evaluate: EvaluateConfig) -> dict:
    """Everything that decides a row's numbers, as plain JSON values."""
    sections = {"train": _plain(row_train_run(run, row)), "generate": _plain(generate), "evaluate": _plain(evaluate)}
    out: dict = {"row": row.name, "reference": row.reference, "data": str(Path(run.data).resolve()), "split": run.split}
    for name, values in sections.items():
        out[name] = {k: v for k, v in cast(dict, values).items() if k not in _NOT_RESULTS[name]}
    if row.reference is not None:  # a reference trains nothing: the recipe does not decide its numbers
        out["train"] = {k: out["train"][k] for k in ("backbone", "t5", "clip_dim", "device", *row.switches.as_dict())}
        out["train"]["seed"] = run.train.recipe.seed
        out["train"]["window_s"] = run.train.recipe.window_s
    return out


def fingerprint(settings: Mapping) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _flatten(d: object, prefix: str = "") -> dict[str, object]:
    if not isinstance(d, Mapping):
        return {prefix: d}
    out: dict[str, object] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def settings_diff(old: Mapping, new: Mapping) -> list[str]:
    """'key: old -> new' for every setting that differs."""
    a, b = _flatten(old), _flatten(new)
    return [f"{k}: {a.get(k, '(unset)')!r} -> {b.get(k, '(unset)')!r}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)]


def claim_row_dir(directory: Path, settings: dict) -> dict | None:
    """Record the row's settings (first run) or check them (re-run); the finished record, if any."""
    path = directory / SETTINGS
    fp = fingerprint(settings)
    if path.is_file():
        old = json.loads(path.read_text())
        if old["fingerprint"] != fp:
            differs = "; ".join(settings_diff(old["settings"], settings)) or "(the fingerprint)"
            raise AblateError(f"{directory} was started with other settings ({differs}): pass the same options, "
                              f"another --out, or delete {directory} to redo that row")
    else:
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"fingerprint": fp, "settings": settings}, indent=2, sort_keys=True) + "\n")
    done = directory / DONE
    if done.is_file():
        record = json.loads(done.read_text())
        if record.get("fingerprint") == fp:
            return record
    return None


def default_generate(run: AblateRun, clip_model: str | None) -> GenerateConfig:
    """The sampling options of every row: the given ones, else the defaults with the features' own CLIP."""
    if run.generate is not None:
        return replace(run.generate, mux=False)
    placeholder = Path(run.out)
    return GenerateConfig(checkpoint=placeholder, out_dir=placeholder, mux=False, device=run.train.device,
                          **({"clip_model": clip_model} if clip_model else {}))


def default_evaluate(run: AblateRun) -> EvaluateConfig:
    placeholder = Path(run.out)
    if run.evaluate is not None:
        return run.evaluate
    return EvaluateConfig.with_env(generated=placeholder, reference=placeholder)


def with_features_clip(run: AblateRun) -> AblateRun:
    """Sampling options given without a CLIP model: the features' own CLIP, as when none are given."""
    from flows.training.ablate_row import features_clip_model

    model = features_clip_model(run)
    if model is None or run.generate is None:
        return run
    return replace(run, generate=replace(run.generate, clip_model=model))


@flow(name="ablate-row", validate_parameters=False)
def ablate_row(run: AblateRun, name: str, generate: GenerateConfig, evaluate: EvaluateConfig,
               on_row: RowHook | None = None) -> dict:
    """One Table 2 row to its end (train or build the reference, generate, evaluate); its record."""
    from flows.training.ablate_row import finish_row

    row = ROWS[name]
    directory = row_dir(run.out, name)
    settings = row_settings(run, row, generate, evaluate)
    done = claim_row_dir(directory, settings)
    if done is not None:
        log.info("row %s already done (%s)", name, done["fingerprint"])
        if on_row is not None:
            on_row(name, "cached")
        return done
    record = finish_row(run, row, directory, generate, evaluate, settings, fingerprint(settings), on_row)
    atomic_write_text(directory / DONE, json.dumps(record, indent=2, sort_keys=True) + "\n")
    if on_row is not None:
        on_row(name, "done")
    return record


def row_options(run: AblateRun) -> tuple[GenerateConfig, EvaluateConfig]:
    """Check the export and link its split's clips into OUT/test/ (idempotent; safe from several workers at
    once); the sampling and evaluation options every row runs with."""
    from flows.training.ablate_row import prepare

    clip_model = prepare(run)
    return default_generate(run, clip_model), default_evaluate(run)


def run_ablate(run: AblateRun, on_row: RowHook | None = None) -> AblateResult:
    """Every row in turn (each a Prefect flow run), then table2.md and table2.json."""
    from flows.training.table2 import write_table

    generate, evaluate = row_options(run)
    records = [ablate_row(run, name, generate, evaluate, on_row) for name in run.rows]
    md, js = write_table(Path(run.out), records)
    return AblateResult(records, md, js)


@flow(name="ablate", validate_parameters=False)
def ablate_flow(run: AblateRun) -> dict:
    """Prefect entry point: the rows as subflows of one run; returns the table's paths."""
    result = run_ablate(run)
    return {"table2.md": str(result.table_md), "table2.json": str(result.table_json)}


__all__ = ["ROWS", "TABLE2", "AblateError", "AblateResult", "AblateRun", "ablate_flow", "ablate_row", "row_options", "run_ablate"]
