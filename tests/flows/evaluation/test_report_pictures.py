"""The report's pictures: drawn for a dozen clips, linked from report.md, and decoded by a real Chromium."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from flows.evaluation.evaluate import EvaluationReport
from flows.evaluation.plots import extreme_clips
from flows.evaluation.report import write_report
from model.metrics.field_metrics import bcs_bhs_metric, beat_align_metric
from model.metrics.rhythm import RhythmConfig
from model.metrics.scores import ClipFeatures, cosine_metric, rhythm_metric

CHROMIUM = Path(os.environ.get("VIDMUSICIAN_CHROMIUM", "/usr/bin/chromium"))


def _report() -> EvaluationReport:
    rng = np.random.default_rng(0)
    feats = []
    for i in range(12):
        d = 20.0
        cuts = np.sort(rng.uniform(0.5, d - 0.5, rng.integers(3, 9)))
        beats = np.arange(rng.uniform(0, 0.5), d, 60 / rng.uniform(80, 160))
        if i % 3 == 0:  # every third clip's music has a beat on each of its cuts
            beats = np.sort(np.concatenate([beats, cuts]))
        f = ClipFeatures(f"clip{i:02d}", cuts=cuts, beats_gen=beats, video_duration_s=d, onsets_gen=beats[::2],
                         onsets_ref=np.sort(rng.uniform(0, d, 15)), clap_gen=rng.normal(size=8),
                         clap_ref=rng.normal(size=8))
        f.durations = {"generated": d, "reference": d}
        feats.append(f)
    cfg = RhythmConfig()
    metrics = {"clap": cosine_metric("clap", feats, "clap_gen", "clap_ref", 0), "rhythm": rhythm_metric(feats, cfg, 0),
               "bcs_bhs": bcs_bhs_metric(feats, 0), "beat_align": beat_align_metric(feats, cfg, 0)}
    timelines = {f.clip_id: {"cuts": list(f.cuts), "beats": list(f.beats_gen), "duration_s": 20.0} for f in feats}
    return EvaluationReport(metrics=metrics, excluded=[], n_paired=12, n_scored=12, settings={}, timelines=timelines)


def test_pictures_are_drawn_linked_and_decode_in_chromium(tmp_path):
    report = _report()
    best_worst = extreme_clips(report)
    assert [k for _, k in best_worst] == ["best"] * 3 + ["worst"] * 3
    recall = {r["clip_id"]: r["value"] for r in report.metrics["rhythm"].items}
    assert min(recall[c] for c, k in best_worst if k == "best") >= max(recall[c] for c, k in best_worst if k == "worst")
    write_report(report, tmp_path)
    md = (tmp_path / "report.md").read_text()
    linked = re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", md)
    assert linked == ["figures/beats_vs_cuts.png", "figures/dist_clap.png", "figures/dist_rhythm.png",
                      "figures/dist_bcs_bhs.png", "figures/dist_beat_align.png"]
    api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        pytest.skip(f"no Chromium at {CHROMIUM}")
    page_file = tmp_path / "pictures.html"  # the links as a reader's Markdown viewer would show them
    page_file.write_text("".join(f'<img alt="{rel}" src="{rel}">' for rel in linked))
    with api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"])
        try:
            page = browser.new_page()
            page.goto(page_file.as_uri())
            page.wait_for_function("Array.from(document.images).every(i => i.complete)")
            sizes = page.evaluate("Array.from(document.images).map(i => [i.alt, i.naturalWidth, i.naturalHeight])")
        finally:
            browser.close()
    assert [s[0] for s in sizes] == linked
    assert all(w > 300 and h > 200 for _, w, h in sizes), sizes  # decoded pictures, not broken-image icons
