"""Write the ablation's rows as OUT/table2.json (every number, interval, chance level and setting) and
OUT/table2.md (the paper's Table 2 layout: the switches as ✓/✗, each metric as value [95 % interval] with
its chance level, the validation loss, the guided validation loss and the settings fingerprint)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from dvmset.io import atomic_write_text

METRICS = (("fd", "FD ↓"), ("kl", "KL ↓"), ("imagebind", "ImageBind ↑"), ("clap", "CLAP ↑"), ("rhythm", "Rhythm ↑"))
COLUMNS = ("From T5", "RCM", "IT", "TS", "AT", "RM")
FORMAT = "vidmusician-table2/1"


def _num(v: float | None, digits: int = 4) -> str:
    if v is None or not math.isfinite(v):
        return "—"
    return f"{v:.2f}" if abs(v) >= 10 else f"{v:.{digits}f}"


def _chance(chance: dict | None) -> float | None:
    """The chance level shown: the shuffled baseline where there is one, else the closed form."""
    if not chance:
        return None
    for key in ("shuffled_pairs", "shuffled_music", "real_vs_real_split_half", "closed_form"):
        if chance.get(key) is not None:
            return chance[key]
    return None


def _cell(m: dict | None) -> str:
    if m is None:
        return "—"
    if m.get("skipped"):
        return "skipped"
    text = _num(m.get("value"))
    if m.get("ci95"):
        lo, hi = m["ci95"]
        text += f" [{_num(lo)}, {_num(hi)}]"
    if (c := _chance(m.get("chance"))) is not None:
        text += f" (chance {_num(c)})"
    return text


def _tick(v: bool | None) -> str:
    return "—" if v is None else ("✓" if v else "✗")


def table_markdown(records: list[dict]) -> str:
    head = ["row", *COLUMNS, *(label for _, label in METRICS), "val loss", "val loss guided", "best checkpoint",
            "fingerprint"]
    lines = ["# Table 2 (ablations)", "",
             "Each metric: value [95 % interval] (chance level); — where it does not apply. Rows train from the "
             "same options and seed; references train nothing. Val loss guided: the same windows under the logits "
             "the music was sampled from (null + cfg_coef (cond - null), the rows' generate cfg_coef).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        cols = [_tick(r["columns"].get(c)) for c in COLUMNS] if r.get("reference") is None else ["ref"] * len(COLUMNS)
        cells = [_cell(r["metrics"].get(k)) for k, _ in METRICS]
        lines.append("| " + " | ".join([f"{r['row']}", *cols, *cells, _num(r.get("val_loss")), _num(r.get("val_loss_guided")),
                                        f"`{r['best_checkpoint']}`", f"`{r['fingerprint']}`"]) + " |")
    others = sorted({k for r in records for k in r["metrics"]} - {k for k, _ in METRICS})
    if others:
        lines += ["", "| row | " + " | ".join(others) + " |", "|" + "---|" * (len(others) + 1)]
        lines += ["| " + " | ".join([r["row"], *(_cell(r["metrics"].get(k)) for k in others)]) + " |" for r in records]
    starts = [r for r in records if r.get("stage2_step0_val_loss") is not None]
    if starts:
        lines += ["", "Validation loss where stage 2 starts (stage 1's best weights, the rhythm module as initialised; "
                  "equal to stage 1's with IT):",
                  *(f"- {r['row']}: stage 1 {_num(r.get('stage1_val_loss'))}, stage 2 at step 0 "
                    f"{_num(r['stage2_step0_val_loss'])}" for r in starts)]
    skipped = {k: m["skipped"] for r in records for k, m in r["metrics"].items() if m.get("skipped")}
    if skipped:
        lines += ["", "Skipped metrics:", *(f"- {k}: {why}" for k, why in sorted(skipped.items()))]
    failures = [f for r in records for f in (f"{r['row']}: {x}" for x in r.get("generation_failures", []))]
    if failures:
        lines += ["", "Videos that failed to generate:", *(f"- {f}" for f in failures)]
    lines += ["", "Rows: " + "; ".join(f"`{r['row']}` {r['title']}" for r in records), ""]
    return "\n".join(lines)


def write_table(out: Path, records: list[dict]) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "table2.md", out / "table2.json"
    atomic_write_text(js, json.dumps({"format": FORMAT, "rows": records}, indent=2, sort_keys=True) + "\n")
    atomic_write_text(md, table_markdown(records))
    return md, js
