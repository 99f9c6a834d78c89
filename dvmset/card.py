"""DATASET.md of an export: what is in it, how it was split, how the review went."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from sqlalchemy import Text, cast, select

from dvmset.agreement_summary import agreement_report
from dvmset.batches import batches
from dvmset.card_scratch import CardCounts
from dvmset.catalog import Catalog
from dvmset.records import SPLITS, VALID, ClipStatus
from dvmset.tables import Clip, Source


def _review_stats(catalog: Catalog) -> tuple[dict[str, dict[str, int]], dict]:
    """Clip counts by query and status, and the annotator agreement report."""
    by_query = catalog.counts_by_query()
    with catalog.session() as s:
        return by_query, agreement_report(s)


def _kappa(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _kept_line(m: CardCounts) -> list[str]:
    """The seconds kept once the stretches annotators excluded (spans marked on an accept) are left out."""
    if (kept := m.kept()) is None:
        return []
    kept_s, all_s, cut_s, cut = kept
    return ["", f"Seconds kept: {kept_s:.0f} s of {all_s:.0f} s; annotators excluded "
                f"{cut_s:.0f} s in {cut:.0f} clips (spans of non-music, noise or vocals "
                "marked on an accept: no training window overlaps one)."]


PAPER = "The paper: 3,571 train / 268 test of 3,839 clips and no validation split."
#: the QC hints the review page shows (annotation_ui/static/review.js flags them at these values):
#: (column, what it measures, flagged when, the flag as a test on the value: a number or a numpy array of them,
#: so ``|``, not ``or``)
QC_HINTS = (
    ("silence_ratio", "share of the clip that is silence or not music", "> 8 %", lambda v: v > 0.08),
    ("still_s", "seconds of still picture", ">= 10 s", lambda v: v >= 10),
    ("scene_cuts", "scene cuts in the clip", "0 (one static shot)", lambda v: v == 0),
    ("loudness_lufs", "integrated loudness of the clip (LUFS)", "< -30 or > -8", lambda v: (v < -30) | (v > -8)),
    ("limiting_db", "deepest true-peak limiting (dB)", "> 3 dB (audible)", lambda v: v > 3),
    ("vocal_energy", "residual vocal energy after separation (share of the mix)", "> 0.1", lambda v: v > 0.1),
)


def _splits_section(n: dict[str, int], test_fraction: float, valid_fraction: float, seed: int) -> list[str]:
    lines = ["## Splits", "",
             "Drawn by source video: every clip of a video is in one split, and videos whose processed music is "
             "the same recording (see Shared music) are drawn as one. Within each query the videos are taken in a "
             f"seeded order (seed {seed}) into test until about {test_fraction:.2%} of the query's clips, then into "
             f"valid until about {valid_fraction:.2%}, the rest train; a query with two or more videos has one in "
             "train and one in test, with three or more also one in valid. A re-export keeps the recorded splits, "
             "this export's own first (a train video may move to valid only when no valid split was recorded yet; "
             "test never changes).", "",
             "`vidmusician train --data` this export trains on `train` and chooses `best.pt` by the validation loss "
             "on `valid`; `test` is read only by `vidmusician generate` / `evaluate` (Table 1). "
             f"{PAPER} This export: {n['train']} / {n['valid']} / {n['test']} (train / valid / test).", ""]
    if not n[VALID]:
        lines += ["**No valid split**: `train` on this export computes no validation loss and keeps its latest "
                  "checkpoint as `best.pt` (it never chooses on test). Export with `--valid-fraction` > 0 for one.", ""]
    return lines


CARD_FACTS = "card_facts.parquet"  # an export's per-clip card facts, so a takedown drops rows, not re-reads


FACT_COLUMNS = ("clip_id", "separator", "loudness_out_lufs", "target_lufs", *(c for c, *_ in QC_HINTS))


def clip_facts(catalog: Catalog, ids: Sequence[str]) -> list[tuple]:
    """What the card's "How the data was made" counts, one row (:data:`FACT_COLUMNS`) per clip of ``ids`` found
    in the catalog: separator, source loudness, the loudness step's target (JSON; from the lineage, each
    distinct lineage text parsed once) and the QC hints. Called a batch of ids at a time."""
    cols = [getattr(Clip, c) for c, *_ in QC_HINTS]
    lineage_text = cast(Clip.lineage, Text)
    targets: dict[str | None, str | None] = {None: None}
    rows = []
    with catalog.session() as s:
        for chunk in batches(ids):
            q = (select(Clip.id, Source.separator, Source.loudness_out_lufs, lineage_text, *cols)
                 .join(Source, Source.id == Clip.source_id).where(Clip.id.in_(chunk)))
            for cid, sep, lufs, lin, *qc in s.execute(q).tuples():
                if lin not in targets:
                    steps = (json.loads(lin) or {}).get("steps", [])
                    got = [st.get("params", {}).get("target_lufs") for st in steps if st.get("step") == "loudness"]
                    targets[lin] = json.dumps([t for t in got if t is not None])
                rows.append((cid, sep, lufs, targets[lin], *qc))
    return rows


def _counts(values: Iterable[tuple[object, int]], label: Callable[[object], str]) -> Counter:
    """How many rows carry each label, from (distinct value, rows) pairs (a card counts every clip of the export)."""
    out: Counter = Counter()
    for v, n in values:
        out[label(v)] += n
    return out


def _made_section(m: CardCounts, features: Sequence[dict]) -> list[str]:
    """What made the data: vocal removal, loudness, the features' CLIP and codec, rates, licences, QC hints."""
    lines = ["## How the data was made", ""]
    seps = _counts(m.value_counts("facts", "separator"), lambda x: x if isinstance(x, str) and x else "not recorded")
    removed = {k: v for k, v in seps.items() if k not in ("none", "not recorded")}
    vocals = [f"removed with {k} in {v} clips" for k, v in sorted(removed.items())]
    if seps.get("none"):
        vocals.append(f"**not removed** (separation skipped) in {seps['none']} clips: they may carry speech or singing")
    if seps.get("not recorded"):
        vocals.append(f"separator not recorded for {seps['not recorded']} clips")
    lines.append(f"- **Vocals**: {'; '.join(vocals) or 'no clips'}.")
    targets = sorted({t for text, _ in m.value_counts("facts", "target_lufs") if isinstance(text, str)
                      for t in json.loads(text)})
    median, measured = m.median("facts", "loudness_out_lufs")
    lines.append("- **Loudness**: " + (f"music normalised to {', '.join(f'{t:g}' for t in targets)} LUFS "
                                       "(pyloudnorm, BS.1770) before cutting" if targets else "target not recorded")
                 + (f"; measured after normalisation: median {median:.1f} LUFS over "
                    f"{measured} clips' sources." if measured else "."))
    if features:
        for f in features:
            lines.append(f"- **Features** ({f['clips']} clips): CLIP `{f.get('clip_model')}`"
                         f"{' (' + str(f['pretrained']) + ')' if f.get('pretrained') else ''} at {f.get('fps')} fps, "
                         f"codes from codec `{f.get('codec')}` at {f.get('token_rate')} Hz "
                         f"({f.get('sample_rate')} Hz audio), format {f.get('format')}.")
    else:
        lines.append("- **Features**: none extracted for these clips yet (`vidmusician features`).")
    rates = _counts(m.value_counts("clips", "sample_rate"), lambda r: "unknown" if r is None else f"{int(r)} Hz")
    lines.append("- **Audio files**: AAC in the clip MP4s at " + ", ".join(
        f"{k} ({v} clips)" for k, v in sorted(rates.items())) + " (the manifest's and the JSONL's `sample_rate`)."
        if rates else "- **Audio files**: none.")
    lic = _counts(m.value_counts("clips", "license"), lambda x: "not stated by the source" if not x else str(x))
    lines.append("- **Licences** (as the source's site states them; check them before redistributing media — "
                 "a release with `--release` ships ids only): "
                 + (", ".join(f"{k}: {v} clips" for k, v in sorted(lic.items(), key=lambda kv: (-kv[1], kv[0])))
                    or "no clips") + ".")
    lines += ["", "QC hints are measured by curation and shown to reviewers beside each clip; they flag, a person "
              "decides (nothing is rejected automatically). Among this export's accepted clips:", "",
              "| hint | measures | flagged when | flagged clips | not measured |", "|---|---|---|---:|---:|"]
    facts = m.rows("facts")
    for col, what, when, flag in QC_HINTS:
        flagged, known = m.flagged(col, flag)
        lines.append(f"| {col} | {what} | {when} | {flagged} | {facts - known} |")
    return [*lines, ""]


def dataset_card(name: str, m: CardCounts, catalog: Catalog, test_fraction: float, seed: int, missing: int,
                 valid_fraction: float = 0.0, features: Sequence[dict] = ()) -> str:
    """DATASET.md: what is in the export, how it was split, what made it, and how the review went, from the
    manifest's clips and their :func:`clip_facts` in ``m``. ``features``: the identities (CLIP, codec, rates)
    of the features runs that made these clips' shards."""
    by_query, agree = _review_stats(catalog)
    acc = sum(v.get(ClipStatus.ACCEPTED, 0) for v in by_query.values())
    rej = sum(v.get(ClipStatus.REJECTED, 0) for v in by_query.values())
    total = sum(sum(v.values()) for v in by_query.values())
    clips, sources, seconds = m.totals()
    lines = [
        f"# DVMSet export `{name}`", "",
        f"{clips} clips ({seconds / 3600:.2f} h) from {sources} source videos and "
        f"{m.distinct('query')} queries. Split by source video (no video in two splits), "
        f"stratified by query; target test fraction {test_fraction:.4f}, valid fraction {valid_fraction:.4f}, "
        f"seed {seed}.", "",
        "| split | clips | sources | hours |", "|---|---:|---:|---:|",
    ]
    got = m.split_totals()
    per_split = {part: got.get(part, (0, 0, 0.0)) for part in SPLITS}
    for part, (n, part_sources, part_seconds) in per_split.items():
        lines.append(f"| {part} | {n} | {part_sources} | {part_seconds / 3600:.2f} |")
    if clips:
        lo, median, hi = m.durations()
        lines += ["", f"Clip durations: min {lo:.2f} s, median {median:.2f} s, max {hi:.2f} s."]
        lines += _kept_line(m)
    n = {part: v[0] for part, v in per_split.items()}
    lines += ["", *_splits_section(n, test_fraction, valid_fraction, seed), *_made_section(m, features)]
    reviewed = acc + rej
    lines += ["", "## Review", "",
              f"{total} clips cut, {reviewed} reviewed, {acc} accepted: acceptance rate "
              f"{(acc / reviewed if reviewed else float('nan')):.1%} of reviewed clips "
              f"({(acc / total if total else float('nan')):.1%} of all clips).", ""]
    if missing:
        lines += [f"**{missing} accepted clips had no file and were left out.**", ""]
    lines += ["| query | train | valid | test | accepted | rejected | all clips | acceptance |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    # URL-sourced clips have no query; the catalog's counts call that group "(url)", and so must this.
    counts = m.query_splits()
    for q in sorted(set(by_query) | {q for q, _ in counts}):
        st = by_query.get(q, {})
        a, r = st.get(ClipStatus.ACCEPTED, 0), st.get(ClipStatus.REJECTED, 0)
        n = [counts.get((q, p), 0) for p in SPLITS]
        rate = f"{a / (a + r):.1%}" if a + r else "n/a"
        lines.append(f"| {q} | {' | '.join(map(str, n))} | {a} | {r} | {sum(st.values())} | {rate} |")
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
              "sample_rate, shard, title, description, url, license, excluded_spans as JSON [[start_s, end_s, "
              "reason], ...], kept_s); `features/excluded_spans.json` holds the same spans for the training windows. "
              "Its split is this export's, fixed when it was written: `vidmusician train --data` this folder reads "
              "it (another export cannot change it), and a checkpoint records its hash.",
              "- `train.jsonl`, `valid.jsonl`, `test.jsonl` and, as links to them, audiocraft's layout "
              "`egs/{train,valid,test}/data.jsonl` (`dset=` of MusicGen's solver): AudioMeta lines (with the file's "
              "sample_rate and a `description`; a clip with excluded spans is listed up to its first span); "
              "`audio/{clip_id}.json` holds MusicInfo (description = query and title, what MusicGen's text "
              "conditioning reads), also in `audio/info.zip` (a large export: `audio/info-*-of-*.zip`) where each "
              "line's `info_path` points.",
              "- Features: `features/index.parquet` + `features/shard-*.safetensors` under the data root "
              "(global [T, D] fp16 at 1 fps, rhythm [T*50] fp32 and, from shard format 2, rhythm_global [T*50] fp32, "
              "codes [4, T*50] int16).", ""]
    return "\n".join(lines)
