"""Write an evaluation as report.json (metrics.<name>, settings), report.md (a Table-1 row) and items.csv."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from dvmset.io import atomic_path
from flows.evaluation.evaluate import EvaluationReport

COLUMNS = (("fd", "FD ↓"), ("kl", "KL ↓"), ("imagebind", "ImageBind ↑"), ("clap", "CLAP ↑"), ("rhythm", "Rhythm ↑"))
PAPER_BEST = {"fd": 27.46, "kl": 1.112, "imagebind": 0.2158, "clap": 0.4162, "rhythm": 0.2516}  # Table 1, ours


def _clean(value):
    """JSON without NaN: NaN/inf become null, numpy scalars plain floats."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float) or hasattr(value, "dtype"):
        f = float(value)
        return f if math.isfinite(f) else None
    return value


def report_json(report: EvaluationReport) -> dict:
    return _clean({
        "metrics": {name: m.to_json() for name, m in report.metrics.items()},
        "clips": {"paired": report.n_paired, "scored": report.n_scored, "excluded": len({e.clip_id for e in report.excluded})},
        "excluded": [{"clip_id": e.clip_id, "role": e.role, "reason": e.reason} for e in report.excluded],
        "settings": report.settings,
    })


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.2f}" if abs(value) >= 10 else f"{value:.{digits}f}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _chance_cell(m) -> str:
    """The shuffled baseline (FD: the split-half noise floor); Rhythm's closed form where no shuffle is defined."""
    for key in ("shuffled_pairs", "shuffled_music", "real_vs_real_split_half"):
        if m.chance.get(key) is not None:
            return _fmt(m.chance[key])
    if m.chance.get("closed_form") is not None:  # one video: nothing to shuffle, the closed form still holds
        return f"{_fmt(m.chance['closed_form'])} (closed form)"
    return "—"


def report_markdown(report: EvaluationReport) -> str:
    lines = ["# Evaluation", "",
             f"{_count(report.n_scored, 'clip')} scored of {report.n_paired} paired; "
             + (f"{_count(n_out, 'clip id')} left out (listed below)." if (n_out := len({e.clip_id for e in report.excluded}))
                else "none left out."), "",
             "| | " + " | ".join(title for _, title in COLUMNS) + " |",
             "|---|" + "---:|" * len(COLUMNS)]
    row, ci_row, chance_row, n_row = ["this run"], ["95 % CI"], ["chance / shuffled"], ["n"]
    for name, _ in COLUMNS:
        m = report.metrics.get(name)
        if m is None or m.skipped:
            row.append("skipped" if m is not None else "not requested")
            ci_row.append(""), chance_row.append(""), n_row.append("")
            continue
        row.append(_fmt(m.value))
        ci_row.append(f"{_fmt(m.ci.low)}–{_fmt(m.ci.high)}" if m.ci else "—")
        chance_row.append(_chance_cell(m))
        n_row.append(str(m.n))
    paper = ["paper (VidMusician)"] + [_fmt(PAPER_BEST[name]) for name, _ in COLUMNS]
    for r in (row, ci_row, chance_row, n_row, paper):
        lines.append("| " + " | ".join(r) + " |")
    lines += ["", "FD's chance column is the real-vs-real split-half FD (its noise floor at this n); the others are "
              "the score with generated music shuffled across clips (Rhythm with one video: its closed form).", ""]
    rhythm = report.metrics.get("rhythm")
    if rhythm is not None and not rhythm.skipped:
        e = rhythm.extra
        lines += ["## Rhythm", "",
                  f"recall {_fmt(rhythm.value)} (±{e['tolerance_s']:g} s, {e['n_cuts']} cuts in {_count(rhythm.n, 'video')}), "
                  f"precision {_fmt(e['precision'])}, F1 {_fmt(e['f1'])}; chance: closed form "
                  f"{_fmt(rhythm.chance['closed_form'])}, 2τ × beats/s {_fmt(rhythm.chance['two_tau_beats_per_second'])}, "
                  f"music shuffled across videos {_fmt(rhythm.chance.get('shuffled_music'))}"
                  + (f"; the real music scores {_fmt(e['reference_music_recall'])}" if "reference_music_recall" in e else "")
                  + ".", f"Excluded as stable visuals ({e['rule']}): {', '.join(e['excluded_stable_visuals']) or 'none'}.", ""]
    notes = [f"- **{name}**: {m.skipped}" for name, m in report.metrics.items() if m.skipped]
    notes += [f"- **{name}**: {w}" for name, m in report.metrics.items() for w in m.warnings]
    if notes:
        lines += ["## Skipped and warnings", "", *notes, ""]
    if report.excluded:
        lines += ["## Left out by the input gate", "", "| clip | file of | reason |", "|---|---|---|"]
        lines += [f"| {e.clip_id} | {e.role} | {e.reason} |" for e in report.excluded]
        lines.append("")
    return "\n".join(lines)


def items_csv(report: EvaluationReport) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["clip_id", "metric", "value", "detail"])
    for name, m in report.metrics.items():
        for item in m.items:
            detail = {k: v for k, v in item.items() if k not in ("clip_id", "value")}
            writer.writerow([item["clip_id"], name, _fmt_csv(item["value"]), json.dumps(_clean(detail), sort_keys=True)])
    for e in report.excluded:
        writer.writerow([e.clip_id, "excluded", "", json.dumps({"role": e.role, "reason": e.reason})])
    return buf.getvalue()


def _fmt_csv(value) -> str:
    v = _clean(value)
    return "" if v is None else repr(float(v))


def write_report(report: EvaluationReport, out_dir: Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = {"report.json": json.dumps(report_json(report), indent=2, sort_keys=False) + "\n",
             "report.md": report_markdown(report), "items.csv": items_csv(report)}
    written = {}
    for name, text in texts.items():
        with atomic_path(out_dir / name) as tmp:
            Path(tmp).write_text(text, encoding="utf-8")
        written[name] = out_dir / name
    return written
