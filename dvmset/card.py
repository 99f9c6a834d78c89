"""DATASET.md of an export: what is in it, how it was split, how the review went."""

from __future__ import annotations

import pandas as pd

from dvmset.agreement import agreement_report
from dvmset.catalog import Catalog
from dvmset.records import TEST, TRAIN, ClipStatus


def _review_stats(catalog: Catalog) -> tuple[dict[str, dict[str, int]], dict]:
    """Clip counts by query and status, and the annotator agreement report."""
    by_query = catalog.counts()["clips_by_query"]
    with catalog.session() as s:
        return by_query, agreement_report(s)


def _kappa(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _kept_line(m: pd.DataFrame) -> list[str]:
    """The seconds kept once the stretches annotators excluded (spans marked on an accept) are left out."""
    if "kept_s" not in m:
        return []
    cut = m[m.excluded_spans.notna()]
    return ["", f"Seconds kept: {m.kept_s.sum():.0f} s of {m.duration_s.sum():.0f} s; annotators excluded "
                f"{(m.duration_s - m.kept_s).sum():.0f} s in {len(cut)} clips (spans of non-music, noise or vocals "
                "marked on an accept: no training window overlaps one)."]


def dataset_card(name: str, m: pd.DataFrame, catalog: Catalog, test_fraction: float, seed: int, missing: int) -> str:
    """DATASET.md: what is in the export, how it was split, and how the review went."""
    by_query, agree = _review_stats(catalog)
    acc = sum(v.get(ClipStatus.ACCEPTED, 0) for v in by_query.values())
    rej = sum(v.get(ClipStatus.REJECTED, 0) for v in by_query.values())
    total = sum(sum(v.values()) for v in by_query.values())
    hours = m.duration_s.sum() / 3600 if len(m) else 0.0
    lines = [
        f"# DVMSet export `{name}`", "",
        f"{len(m)} clips ({hours:.2f} h) from {m.source_id.nunique() if len(m) else 0} source videos and "
        f"{m['query'].nunique() if len(m) else 0} queries. Split by source video (no video in two splits), "
        f"stratified by query; target test fraction {test_fraction:.4f}, seed {seed}.", "",
        "| split | clips | sources | hours |", "|---|---:|---:|---:|",
    ]
    for part in (TRAIN, TEST):
        p = m[m.split == part] if len(m) else m
        lines.append(f"| {part} | {len(p)} | {p.source_id.nunique() if len(p) else 0} | "
                     f"{(p.duration_s.sum() / 3600 if len(p) else 0):.2f} |")
    if len(m):
        d = m.duration_s
        lines += ["", f"Clip durations: min {d.min():.2f} s, median {d.median():.2f} s, max {d.max():.2f} s."]
        lines += _kept_line(m)
    reviewed = acc + rej
    lines += ["", "## Review", "",
              f"{total} clips cut, {reviewed} reviewed, {acc} accepted: acceptance rate "
              f"{(acc / reviewed if reviewed else float('nan')):.1%} of reviewed clips "
              f"({(acc / total if total else float('nan')):.1%} of all clips).", ""]
    if missing:
        lines += [f"**{missing} accepted clips had no file and were left out.**", ""]
    lines += ["| query | train | test | accepted | rejected | all clips | acceptance |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    # URL-sourced clips have no query; the catalog's counts call that group "(url)", and so must this.
    counts = (m.assign(query=m["query"].fillna("(url)")).groupby(["query", "split"]).size()
              .unstack(fill_value=0) if len(m) else pd.DataFrame())
    for q in sorted(set(by_query) | set(counts.index)):
        st = by_query.get(q, {})
        a, r = st.get(ClipStatus.ACCEPTED, 0), st.get(ClipStatus.REJECTED, 0)
        tr = int(counts.at[q, TRAIN]) if TRAIN in counts and q in counts.index else 0
        te = int(counts.at[q, TEST]) if TEST in counts and q in counts.index else 0
        rate = f"{a / (a + r):.1%}" if a + r else "n/a"
        lines.append(f"| {q} | {tr} | {te} | {a} | {r} | {sum(st.values())} | {rate} |")
    lines += ["", "## Annotator agreement", ""]
    ov = agree["overall"]
    lines += [f"Effective verdict: {agree['rule'].rstrip('.')}.",
              f"{agree['clips_rated']} clips rated, {agree['clips_multi_rated']} by two or more annotators. "
              f"Fleiss' kappa (accept/reject): {_kappa(ov['fleiss']['kappa'])} over {ov['fleiss']['items']} clips.", ""]
    if ov["pairs"]:
        lines += ["| annotators | shared clips | Cohen's kappa |", "|---|---:|---:|"]
        lines += [f"| {p['a']} / {p['b']} | {p['items']} | {_kappa(p['kappa'])} |"
                  for p in ov["pairs"]]
    lines += ["", "| reason | Fleiss' kappa |", "|---|---:|"]
    lines += [f"| {k} | {_kappa(v['fleiss']['kappa'])} |" for k, v in agree["per_reason"].items()]
    lines += ["", "| annotator | decisions | accepted | rejected | median s/clip |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {p['name']} | {p['decisions']} | {p['accepted']} | {p['rejected']} | "
              f"{p['median_seconds'] if p['median_seconds'] is not None else 'n/a'} |" for p in agree["annotators"]]
    lines += ["", "## Files", "",
              "- `manifest.parquet`: one row per clip (clip_id, source_id, query, split, path, start_s, duration_s, "
              "sample_rate, shard, title, url, license, excluded_spans as JSON [[start_s, end_s, reason], ...], "
              "kept_s); `features/excluded_spans.json` holds the same spans for the training windows.",
              "- `train.jsonl`, `test.jsonl` and the same lines as audiocraft's layout `egs/{train,test}/data.jsonl` "
              "(`dset=` of MusicGen's solver): AudioMeta lines; `audio/{clip_id}.json` holds MusicInfo, also in "
              "`audio/info.zip` where each line's `info_path` points.",
              "- Features: `features/index.parquet` + `features/shard-*.safetensors` under the data root "
              "(global [T, D] fp16 at 1 fps, rhythm [T*50] fp32 and, from shard format 2, rhythm_global [T*50] fp32, "
              "codes [4, T*50] int16).", ""]
    return "\n".join(lines)
