"""What a training run writes under RUN_DIR/stage{N}/: rotating checkpoints, best.pt, metrics.csv, tb/.

Only rank 0 builds these. A resumed run drops the metric rows its predecessor wrote after the checkpoint
it resumes from, so metrics.csv reads as one uninterrupted run.
"""

from __future__ import annotations

import csv
import logging
import re
import shutil
from pathlib import Path

from dvmset.io import atomic_path, remove_partials

log = logging.getLogger(__name__)

CKPT_RE = re.compile(r"^ckpt-(\d{8})\.pt$")
BEST = "best.pt"


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
    """metrics.csv (one row per step, validation rows carry val_*) and TensorBoard scalars."""

    def __init__(self, directory: Path, n_codebooks: int, resume_step: int | None, tensorboard: bool = True) -> None:
        self.path = directory / "metrics.csv"
        self.fields = ["stage", "step", "epoch", "loss", *[f"ce_{k}" for k in range(n_codebooks)], "lr",
                       "grad_norm", "steps_per_s", "skipped_nonfinite", "skipped_scaler", "val_loss",
                       *[f"val_ce_{k}" for k in range(n_codebooks)]]
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
        rows = list(csv.DictReader(text.splitlines()))
        # a row cut short by a kill has missing fields (None) or an unreadable step; drop it with the rest
        kept = [r for r in rows if None not in r.values() and r.get("step", "").isdigit() and int(r["step"]) <= step]
        if len(kept) == len(rows) and text.endswith("\n"):
            return
        with atomic_path(self.path) as tmp, tmp.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=self.fields)
            w.writeheader()
            w.writerows({k: r.get(k, "") for k in self.fields} for r in kept)

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
