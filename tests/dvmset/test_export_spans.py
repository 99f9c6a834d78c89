"""The export carries the spans annotators left out: beside the features (FeatureWindows reads them), in the
manifest (with the seconds kept), in audiocraft's lines (cut before the first span), the release and the card."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from feature_helpers import add_clips

from dvmset.export import export_dataset
from dvmset.release import read_release
from dvmset.spans import Span, read_spans_file
from dvmset.tables import Annotator, Clip, Decision


def test_export_writes_spans_beside_features_manifest_release_and_card(data_root, catalog, tmp_path):
    junk = tmp_path / "clip.mp4"
    junk.write_bytes(np.random.default_rng(0).bytes(2048))  # the export decodes nothing
    ids = add_clips(catalog, data_root, junk, {f"v{i}": ("q", 1) for i in range(4)})
    with catalog.session() as s:
        for c in ids:
            s.get(Clip, c).duration_s = 60.0
        s.add_all([Annotator(id=1, name="ann", token_hash="h1"), Annotator(id=2, name="bob", token_hash="h2")])
        s.flush()
        s.add(Decision(clip_id=ids[0], annotator_id=1, verdict="accept", spans=[[50.0, 55.0, "noise"]]))
        s.add(Decision(clip_id=ids[1], annotator_id=1, verdict="accept", spans=[[0.0, 3.0, "non_music"]]))
        s.add(Decision(clip_id=ids[1], annotator_id=2, verdict="accept", spans=[[10.0, 12.0, "vocals"]]))
        voided = Decision(clip_id=ids[2], annotator_id=1, verdict="accept", spans=[[1.0, 2.0, "other"]])
        s.add(voided)
        s.flush()
        s.add(Decision(clip_id=ids[2], annotator_id=1, verdict="undo", voids=voided.id))  # its spans no longer count
        s.add(Decision(clip_id=ids[2], annotator_id=1, verdict="accept"))
    export_dataset(data_root, catalog, "sp", test_fraction=0.3, seed=0, release=True)
    out = data_root.export_dir("sp")

    assert read_spans_file(data_root.features_dir) == {
        ids[0]: [Span(50.0, 55.0, "noise")], ids[1]: [Span(0.0, 3.0, "non_music"), Span(10.0, 12.0, "vocals")]}
    m = pd.read_parquet(out / "manifest.parquet").set_index("clip_id")
    assert m.kept_s.to_dict() == {ids[0]: 55.0, ids[1]: 55.0, ids[2]: 60.0, ids[3]: 60.0}
    assert json.loads(m.at[ids[0], "excluded_spans"]) == [[50.0, 55.0, "noise"]] and pd.isna(m.at[ids[2], "excluded_spans"])
    lines = {json.loads(ln)["path"].rsplit("/", 1)[1].removesuffix(".mp4"): json.loads(ln)["duration"]
             for part in ("train", "valid", "test") for ln in (out / f"{part}.jsonl").read_text().splitlines()}
    assert lines == {ids[0]: 50.0, ids[2]: 60.0, ids[3]: 60.0}  # ids[1]'s first span starts at 0: left out
    rel = read_release(out).rows.set_index("clip_id")
    assert json.loads(rel.at[ids[1], "excluded_spans"]) == [[0.0, 3.0, "non_music"], [10.0, 12.0, "vocals"]]
    assert rel.at[ids[3], "excluded_spans"] is None
    card = (out / "DATASET.md").read_text()
    assert "Seconds kept: 230 s of 240 s; annotators excluded 10 s in 2 clips" in card


def test_an_edited_release_with_a_bad_span_sets_only_that_row_aside(data_root, catalog, tmp_path):
    junk = tmp_path / "clip.mp4"
    junk.write_bytes(b"x" * 100)
    ids = add_clips(catalog, data_root, junk, {f"v{i}": ("q", 1) for i in range(2)})
    with catalog.session() as s:
        s.add(Annotator(id=1, name="ann", token_hash="h1"))
        s.flush()
        s.add(Decision(clip_id=ids[0], annotator_id=1, verdict="accept", spans=[[1.0, 2.0, "noise"]]))
    export_dataset(data_root, catalog, "e", test_fraction=0.0, seed=0, release=True)
    path = data_root.export_dir("e") / "release.csv"
    df = pd.read_csv(path, dtype=str)
    df.loc[df.clip_id == ids[0], "excluded_spans"] = '[[3, 1, "noise"]]'
    df.to_csv(path, index=False)
    rel = read_release(path)
    assert list(rel.rows.clip_id) == [ids[1]]
    assert rel.invalid[0].clip_id == ids[0] and "excluded_spans" in str(rel.invalid[0].problems)
    old = df.drop(columns=["excluded_spans"])  # a release from before spans reads as one without any
    old.to_csv(path, index=False)
    assert read_release(path).rows.excluded_spans.isna().all()
