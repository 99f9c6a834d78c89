"""The card read from the manifest's parquet a few rows at a time (issue 23) says what the manifest read
whole says, byte for byte, and its numbers are right: split counts, distinct sources, medians of an even
count, licences, QC hints flagged and not measured, queries without one counted as "(url)"."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dvmset import card_scratch
from dvmset.export_card import write_card
from dvmset.records import ClipStatus, SourceStatus
from dvmset.tables import Clip, Source

CC = "Creative Commons Attribution license (reuse allowed)"
#: source: (query, split, licence, separator, loudness after normalisation, [(clip duration, sample rate), ...])
SOURCES = {
    "a": ("q1", "train", CC, "htdemucs", -14.0, [(4.0, 48000), (11.0, None)]),
    "b": ("q1", "test", None, "htdemucs", -16.0, [(10.0, 32000), (5.0, 32000)]),
    "c": ("q2", "valid", "", "none", -15.0, [(6.0, 48000)]),
    "u": (None, "train", "Standard YouTube License", None, -20.0, [(9.0, None)]),
    "d": ("q2", "train", CC, "htdemucs", -13.0, [(7.0, 48000), (8.0, 48000)]),
}


def _catalog_and_manifest(catalog) -> pd.DataFrame:
    """Sources and clips in the catalog (facts: still_s flagged on one clip, not measured on one) and the
    manifest of their clips, not in duration order."""
    rows = []
    with catalog.session() as s:
        for sid, (query, split, licence, separator, lufs, clips) in SOURCES.items():
            s.add(Source(id=sid, url=f"https://example.invalid/{sid}", query=query, status=SourceStatus.DONE,
                         license=licence, loudness_out_lufs=lufs, separator=separator))
            s.flush()
            for k, (duration, rate) in enumerate(clips):
                cid = f"{sid}-{k}"
                still = 12.0 if cid == "a-0" else None if cid == "b-1" else 1.0
                loud = -35.0 if cid == "b-0" else -5.0 if cid == "d-1" else -14.0  # both sides of the hint's band
                s.add(Clip(id=cid, source_id=sid, start_s=0.0, duration_s=duration, path=f"clips/{cid}.mp4",
                           status=ClipStatus.ACCEPTED, still_s=still, scene_cuts=k + 1, loudness_lufs=loud))
                spans = json.dumps([[1.0, 2.0, "noise"]]) if k == 0 else None
                rows.append({"clip_id": cid, "source_id": sid, "query": query, "split": split, "duration_s": duration,
                             "sample_rate": rate, "license": licence, "excluded_spans": spans,
                             "kept_s": duration - 1.0 if spans else duration})
    return pd.DataFrame(rows).astype({"sample_rate": "float64"})


def test_the_card_from_a_parquet_read_in_batches_equals_the_card_from_one_frame(data_root, catalog, monkeypatch):
    manifest = _catalog_and_manifest(catalog)
    assert len(manifest) % 2 == 0 and manifest.sample_rate.isna().any() and manifest["query"].isna().any()
    out = data_root.export_dir("v1")
    out.mkdir(parents=True, exist_ok=True)
    write_card(out, pa.Table.from_pandas(manifest, preserve_index=False), catalog)  # one Arrow table (a takedown's)
    whole, whole_facts = (out / "DATASET.md").read_bytes(), pd.read_parquet(out / "card_facts.parquet")

    path = out / "manifest.parquet"
    pq.write_table(pa.Table.from_pandas(manifest, preserve_index=False), path, row_group_size=3)
    assert pq.ParquetFile(path).metadata.num_row_groups == 3
    monkeypatch.setattr(card_scratch, "BATCH_ROWS", 3)  # the manifest and the facts three rows at a time
    write_card(out, path, catalog)
    assert (out / "DATASET.md").read_bytes() == whole
    facts = pd.read_parquet(out / "card_facts.parquet")
    pd.testing.assert_frame_equal(facts, whole_facts)
    assert sorted(facts.clip_id) == sorted(manifest.clip_id) and facts.separator.isna().sum() == 1

    card = whole.decode()
    assert "8 clips (0.02 h) from 5 source videos and 2 queries." in card
    assert "| train | 5 | 3 | 0.01 |" in card and "| valid | 1 | 1 | 0.00 |" in card and "| test | 2 | 1 | 0.00 |" in card
    assert "Clip durations: min 4.00 s, median 7.50 s, max 11.00 s." in card  # (7 + 8) / 2
    assert "Seconds kept: 55 s of 60 s; annotators excluded 5 s in 5 clips" in card
    assert "median -14.5 LUFS over 8 clips' sources." in card  # (-15 + -14) / 2
    assert "at 32000 Hz (2 clips), 48000 Hz (4 clips), unknown (2 clips) (" in card
    assert (f"{CC}: 4 clips, not stated by the source: 3 clips, Standard YouTube License: 1 clips." in card)
    assert "| still_s | seconds of still picture | >= 10 s | 1 | 1 |" in card
    assert "| loudness_lufs | integrated loudness of the clip (LUFS) | < -30 or > -8 | 2 | 0 |" in card
    assert "| silence_ratio | share of the clip that is silence or not music | > 8 % | 0 | 8 |" in card
    assert ("removed with htdemucs in 6 clips; **not removed** (separation skipped) in 1 clips: they may carry "
            "speech or singing; separator not recorded for 1 clips." in card)
    assert "| q1 | 2 | 0 | 2 |" in card and "| q2 | 2 | 1 | 0 |" in card and "| (url) | 1 | 0 | 0 |" in card
    assert "license: other" in card and "- n<1K" in card


def test_the_facts_rows_a_takedown_keeps_are_found_without_a_hash_of_every_id():
    """The kept facts are the manifest's clips in its order with a few rows left out (anywhere: first, last,
    runs); anything else (another order, an id not there, too many left out) is not taken for that."""
    import numpy as np

    from dvmset.export_card import _kept_rows

    rng = np.random.default_rng(0)
    full = [f"v{i:05d}-00000" for i in range(500)]
    for gone in ([0], [499], [10, 11, 12], [0, 250, 499], sorted(rng.choice(500, 9, replace=False).tolist()), []):
        part = [c for k, c in enumerate(full) if k not in set(gone)]
        keep = _kept_rows(pa.chunked_array([full]), pa.chunked_array([part[:200], part[200:]]))
        assert keep is not None and np.flatnonzero(~keep).tolist() == gone
    swapped = full[:3] + [full[4], full[3]] + full[5:]
    assert _kept_rows(pa.chunked_array([full]), pa.chunked_array([swapped[1:]])) is None
    assert _kept_rows(pa.chunked_array([full]), pa.chunked_array([[*full[:-2], "zz-00000"]])) is None
    assert _kept_rows(pa.chunked_array([full]), pa.chunked_array([full[:400]]), most=64) is None
