"""What a training run writes: RUN_DIR/config.yaml, and under RUN_DIR/stage{N}/ rotating checkpoints,
best.pt, metrics.csv, tb/.

Only rank 0 builds these. A resumed run drops the metric rows its predecessor wrote after the checkpoint
it resumes from, so metrics.csv reads as one uninterrupted run.
"""

from __future__ import annotations

import csv
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from dvmset.io import atomic_path, remove_partials

log = logging.getLogger(__name__)

CKPT_RE = re.compile(r"^ckpt-(\d{8})\.pt$")
BEST = "best.pt"
CONFIG = "config.yaml"
# config.yaml fields a re-run may change: how long and how often, where and how fast; not what is trained
RESUMABLE = {"run.stages", "run.init", "run.device", "run.val_every", "run.ckpt_every", "run.keep", "run.workers",
             "run.progress", "run.log_every", "run.activation_checkpointing", "run.sample_every", "run.samples",
             "run.val_cfg_coef", "run.recipe.steps",
             "run.recipe.epochs"}


def _flat(tree: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, name + "."))
        else:
            out[name] = value
    return out


def config_differences(old: dict, new: dict, ignore: set[str] = RESUMABLE) -> list[str]:
    """'field: old -> new' for each leaf of two config.yaml trees that differs. `stages` is derived from
    `run` (and lists only the stages this invocation trains), so it is not compared itself."""
    a, b = _flat(old), _flat(new)
    changed = [k for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k) and not k.startswith("stages.")]
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in changed if k not in ignore]


def write_run_config(out: Path, config: dict, resuming: bool) -> Path:
    """RUN_DIR/config.yaml: the run's resolved config. A re-run of a started run (`resuming`) that differs
    from the config.yaml it left in anything but RESUMABLE fields is refused, naming the fields."""
    import yaml

    path = out / CONFIG
    if resuming and path.is_file():
        old = yaml.safe_load(path.read_text()) or {}
        if differ := config_differences(old, config):
            raise ValueError(f"{out} holds a run started with other options ({path.name}: "
                             f"{'; '.join(differ)}; saved -> asked): re-run it with the same options (only the length "
                             "and cadence may change), or pass another --out for a new run")
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(config, sort_keys=False, default_flow_style=False))
    return path


def stage_dir(out: Path, stage: int) -> Path:
    return out / f"stage{stage}"


def ckpt_path(directory: Path, step: int) -> Path:
    return directory / f"ckpt-{step:08d}.pt"


def checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """(step, path) of the rotating checkpoints, oldest first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := CKPT_RE.match(p.name))]
    return sorted(found)


def latest_checkpoint(directory: Path) -> tuple[int, Path] | None:
    found = checkpoints(directory)
    return found[-1] if found else None


def sweep_partials(directory: Path) -> None:
    """Temp files of checkpoints a killed process was writing."""
    if directory.is_dir():
        for tmp in remove_partials(directory, "ckpt-*") + remove_partials(directory, "best"):
            log.info("removed %s left by an interrupted run", tmp.name)


def prune(directory: Path, keep: int) -> None:
    """Keep the last `keep` rotating checkpoints (best.pt is separate)."""
    for _, path in checkpoints(directory)[:-keep]:
        path.unlink(missing_ok=True)


def copy_best(src: Path, directory: Path) -> Path:
    dest = directory / BEST
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    return dest


class MetricsWriter:
    """metrics.csv (one row per step, validation rows carry val_*; val_loss_guided is empty on every row when
    the run's val_cfg_coef is 1) and TensorBoard scalars."""

    def __init__(self, directory: Path, n_codebooks: int, resume_step: int | None, tensorboard: bool = True) -> None:
        self.path = directory / "metrics.csv"
        self.fields = ["stage", "step", "epoch", "loss", *[f"ce_{k}" for k in range(n_codebooks)], "lr",
                       "grad_norm", "steps_per_s", "skipped_nonfinite", "skipped_scaler", "skipped_uncond", "val_loss",
                       *[f"val_ce_{k}" for k in range(n_codebooks)], "val_loss_guided"]
        directory.mkdir(parents=True, exist_ok=True)
        self._truncate(resume_step or 0)
        new = not self.path.exists()
        self._fh = self.path.open("a", newline="")
        self._csv = csv.DictWriter(self._fh, fieldnames=self.fields)
        if new:
            self._csv.writeheader()
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is in the model extra; metrics.csv still has everything
                log.warning("tensorboard is not installed: metrics go to %s only", self.path)
            else:
                self._tb = SummaryWriter(str(directory / "tb"), purge_step=(resume_step + 1) if resume_step else None)

    def _truncate(self, step: int) -> None:
        if not self.path.exists():
            return
        with self.path.open(newline="") as fh:
            text = fh.read()
        reader = csv.DictReader(text.splitlines())
        rows = list(reader)
        # a row cut short by a kill has missing fields (None) or an unreadable step; drop it with the rest
        kept = [r for r in rows if None not in r.values() and r.get("step", "").isdigit() and int(r["step"]) <= step]
        # a file written before a column was added (val_loss_guided) gets today's header, its cells empty
        if len(kept) == len(rows) and text.endswith("\n") and reader.fieldnames == self.fields:
            return
        with atomic_path(self.path) as tmp, tmp.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=self.fields)
            w.writeheader()
            w.writerows({k: r.get(k, "") for k in self.fields} for r in kept)

    def hparams(self, values: dict) -> None:
        """The stage's recipe in TensorBoard's HParams tab (scalars and strings; others as text)."""
        if self._tb is not None:
            plain = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in values.items()}
            self._tb.add_hparams(plain, {}, run_name=".")

    def audio(self, tag: str, wav: np.ndarray, sample_rate: int, step: int) -> None:
        """One sample (mono [N] float in [-1, 1]) in TensorBoard's Audio tab."""
        if self._tb is not None:
            self._tb.add_audio(tag, torch.from_numpy(np.asarray(wav, dtype=np.float32))[None], step,
                               sample_rate=sample_rate)
            self._tb.flush()

    def scalars(self, stage: int, step: int, values: dict[str, float]) -> None:
        """TensorBoard scalars outside metrics.csv's columns (e.g. the samples' Rhythm recall and chance)."""
        if self._tb is not None:
            for key, value in values.items():
                self._tb.add_scalar(f"stage{stage}/{key}", value, step)
            self._tb.flush()

    def write(self, row: dict) -> None:
        self._csv.writerow({k: row.get(k, "") for k in self.fields})
        self._fh.flush()
        if self._tb is not None:
            step = int(row["step"])
            for key, value in row.items():
                if key not in ("stage", "step", "epoch") and isinstance(value, (int, float)):
                    self._tb.add_scalar(f"stage{row['stage']}/{key}", value, step)

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.close()
