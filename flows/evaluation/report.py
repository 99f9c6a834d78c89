"""Write an evaluation as report.json (metrics.<name>, settings), report.md (a Table-1 row) and items.csv."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from dvmset.io import atomic_path
from flows.evaluation.evaluate import EvaluationReport
from flows.evaluation.plots import figure_list, write_figures
from model.metrics.field_metrics import CONVENTIONS

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


def _metric_json(name: str, m) -> dict:
    out = m.to_json()
    if name in CONVENTIONS:
        out |= {"convention": CONVENTIONS[name]["convention"], "matches": CONVENTIONS[name]["matches"]}
    return out


def report_json(report: EvaluationReport) -> dict:
    return _clean({
        "metrics": {name: _metric_json(name, m) for name, m in report.metrics.items()},
        "anchors": [{"column": r[0], "value": r[1], "chance": r[2], "convention": r[3], "matches": r[4]}
                    for r in anchor_rows(report)],
        "figures": [rel for rel, _ in figure_list(report)],
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
    lines += anchors_markdown(report)
    if figures := figure_list(report):
        lines += ["## Pictures", "", *[f"- [{caption}]({rel})  \n  ![{caption}]({rel})" for rel, caption in figures], ""]
    notes = [f"- **{name}**: {m.skipped}" for name, m in report.metrics.items() if m.skipped]
    notes += [f"- **{name}**: {w}" for name, m in report.metrics.items() for w in m.warnings]
    if notes:
        lines += ["## Skipped and warnings", "", *notes, ""]
    if report.excluded:
        lines += ["## Left out by the input gate", "", "| clip | file of | reason |", "|---|---|---|"]
        lines += [f"| {e.clip_id} | {e.role} | {e.reason} |" for e in report.excluded]
        lines.append("")
    return "\n".join(lines)


def _ok(report: EvaluationReport, name: str):
    m = report.metrics.get(name)
    return None if m is None or m.skipped else m


def anchor_rows(report: EvaluationReport) -> list[tuple[str, float | None, float | None, str, str]]:
    """(column, value, chance, convention, toolkit it matches): the numbers VidMuse/GVMGen/Diff-V2M-style papers print."""
    rows: list[tuple[str, float | None, float | None, str, str]] = []
    if fd := _ok(report, "fd"):
        rows.append(("FD (PANNs Cnn14)", fd.value, fd.chance.get("real_vs_real_split_half"),
                     "one 2048-d embedding per clip", "audioldm_eval calculate_fid; = frechet_audio_distance, fadtk FD"))
    fad = _ok(report, "fad_vggish")
    skipped = report.metrics["fad_vggish"].skipped if "fad_vggish" in report.metrics else "not requested"
    rows.append(("FAD (VGGish)", fad.value if fad else None, fad.chance.get("real_vs_real_split_half") if fad else None,
                 "16 kHz, 0.96 s frames pooled, no PCA, last ReLU dropped",
                 "audioldm_eval / frechet_audio_distance (vggish)" if fad else f"skipped: {skipped}"))
    if fad is not None:
        rows.append(("FAD∞ (VGGish)", fad.extra.get("fad_inf"), None, "intercept of FAD against 1/n, 25 n from 500",
                     "fadtk score_inf" if fad.extra.get("fad_inf") is not None else fad.extra.get("fad_inf_skipped")))
    if kl := _ok(report, "kl"):
        rows.append(("KL (PANNs), audioldm_eval", kl.extra.get("kl_audioldm_eval"), None,
                     "KL(real‖generated), softmax, 1e-6 inside the log", "audioldm_eval calculate_kl (softmax)"))
        rows.append(("KL (PANNs), exact", kl.value, None, "KL(real‖generated), log-softmax",
                     "av-benchmark kl_softmax; the paper's KL"))
        rows.append(("KL (PANNs), reverse", kl.extra.get("reverse_kl_generated_real"), None,
                     "KL(generated‖real), log-softmax", "—"))
    kp = _ok(report, "kl_passt")
    skipped = report.metrics["kl_passt"].skipped if "kl_passt" in report.metrics else "not requested"
    if isc := _ok(report, "isc"):
        rows.append(("IS (PANNs)", isc.value, None, f"10 shuffled splits, std {isc.extra['std_over_splits']:.3f}",
                     "audioldm_eval calculate_isc; av-benchmark ISC-PANNS"))
    rows.append(("KL (PaSST)", kp.value if kp else None, None, "KL(real‖generated), softmax, first 10 s at 32 kHz",
                 "av-benchmark KL-PASST-softmax" if kp else f"skipped: {skipped}"))
    if ib := _ok(report, "imagebind"):
        rows.append(("ImageBind score ×100", ib.extra.get("value_x100"), ib.chance.get("shuffled_pairs_x100"),
                     "cosine × 100", "IB-score as av-benchmark papers print it"))
        rows.append(("ImageBind score (cosine)", ib.value, ib.chance.get("shuffled_pairs"), "cosine",
                     "the paper; av-benchmark's IB-Score output"))
    if bb := _ok(report, "bcs_bhs"):
        for key, title in (("bcs", "BCS"), ("bhs", "BHS"), ("f1", "BCS/BHS F1")):
            rows.append((title, bb.extra[key], bb.chance.get(f"shuffled_pairs_{key}"),
                         "onsets in 1 s bins, generated vs real music, mean over clips", "LORIS beats_scores.py"))
    if ba := _ok(report, "beat_align"):
        rows.append(("Beat alignment (BAS)", ba.value, ba.chance.get("shuffled_music"),
                     f"music beats → nearest cut, σ = {ba.extra['sigma_s']:g} s", "Bailando utils/beat_align_score.py"))
    if rh := _ok(report, "rhythm"):
        rows.append(("Rhythm recall", rh.value, rh.chance.get("shuffled_music"),
                     f"cuts with a beat within ±{rh.extra['tolerance_s']:g} s", "the paper (§5.2)"))
    return rows


def anchors_markdown(report: EvaluationReport) -> list[str]:
    lines = ["## In the anchors' conventions", "",
             "| number | this run | chance / shuffled | convention | matches |", "|---|---:|---:|---|---|"]
    for column, value, chance, convention, matches in anchor_rows(report):
        shown = "—" if value is None else (f"{value:.2f}" if "×100" in column else _fmt(value))
        chance_s = "—" if chance is None else (f"{chance:.2f}" if "×100" in column else _fmt(chance))
        lines.append(f"| {column} | {shown} | {chance_s} | {convention} | {matches} |")
    lines += ["", "Each number is computed as the named toolkit computes it (docs/evaluation.md gives the file and "
              "line); the tests check our FD and KL against those toolkits on the same embeddings.", ""]
    return lines


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
    for path in write_figures(report, out_dir):
        written[str(path.relative_to(out_dir))] = path
    return written
