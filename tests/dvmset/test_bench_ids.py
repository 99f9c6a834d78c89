"""A benchmark's ids file (CSV or JSON, the usual column names) → release rows, windows exactly as listed."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from dvmset.bench import BenchError, bench_rows, import_bench
from dvmset.release import read_release, write_release


def test_csv_with_start_and_end_becomes_test_split_rows(tmp_path):
    ids = tmp_path / "v2m_bench.csv"
    ids.write_text("YouTube_ID,start_time,end_time\nabc-_123XYZ,30,60.5\nabc-_123XYZ,90,120\nzz9,0,10\n")
    df = bench_rows(ids)
    assert df.clip_id.tolist() == ["abc-_123XYZ-00030", "abc-_123XYZ-00090", "zz9-00000"]
    assert df.start_s.tolist() == [30.0, 90.0, 0.0] and df.duration_s.tolist() == [30.5, 30.0, 10.0]
    assert set(df.split) == {"test"} and set(df.verdict) == {"accept"} and set(df.separator) == {"none"}
    assert df.url.iloc[2] == "https://www.youtube.com/watch?v=zz9"
    assert df.music_sha256.isna().all()  # nothing to compare a rebuild against


def test_json_forms_and_a_url_template(tmp_path):
    a = tmp_path / "a.json"
    a.write_text(json.dumps([{"id": "v1", "start": 5, "duration": 8}]))
    b = tmp_path / "b.json"
    b.write_text(json.dumps({"v1": [5, 13]}))
    ra, rb = bench_rows(a, "http://127.0.0.1:1/{id}.mp4"), bench_rows(b, "http://127.0.0.1:1/{id}.mp4")
    assert ra.equals(rb) and ra.url.iloc[0] == "http://127.0.0.1:1/v1.mp4" and ra.duration_s.iloc[0] == 8.0


@pytest.mark.parametrize(("text", "message"), [
    ("id,start,end\n../x,0,10\n", "invalid video id"),
    ("id,start,end\nv1,10,5\n", "ends at or before it starts"),
    ("id,start\nv1,10\n", "no end"),
    ("name,start,end\nv1,0,10\n", "no video id"),
    ("id,start,end\nv1,x,10\n", "not a number"),
    ("id,start,end\nv1,0.2,5\nv1,0.7,9\n", "same second"),
])
def test_bad_rows_are_refused_naming_the_row(tmp_path, text, message):
    ids = tmp_path / "ids.csv"
    ids.write_text(text)
    with pytest.raises(BenchError, match=message):
        bench_rows(ids)


def test_the_release_files_read_back_as_a_release(tmp_path):
    ids = tmp_path / "bench.csv"
    ids.write_text("video_id,start_s,end_s\nv1,0,20\nv2,3,23\n")
    df, files = import_bench(ids, tmp_path / "rel")
    rel = read_release(files[1])  # the CSV, as curate --from-release reads it
    assert rel.rows.clip_id.tolist() == df.clip_id.tolist() and rel.meta["benchmark"]["windows"] == "exactly as listed"
    assert rel.meta["processing"]["separator"] == ["none"]
    # no loudness change, read back from the CSV and the parquet alike (not a number, not "the default")
    assert set(rel.rows.target_lufs) == {"none"} and set(read_release(files[0]).rows.target_lufs) == {"none"}
    assert rel.meta["processing"]["target_lufs"] == ["none"] and rel.meta["benchmark"]["loudness"] == "unchanged"


def test_a_release_mixing_no_loudness_change_and_a_target_writes_and_reads_back(tmp_path):
    ids = tmp_path / "bench.csv"
    ids.write_text("video_id,start_s,end_s\nv1,0,20\nv2,3,23\n")
    df = bench_rows(ids)
    df["target_lufs"] = pd.Series(["none", -14.0], dtype=object)  # one video normalised, one kept at its level
    files = write_release(tmp_path / "rel", df, name="mixed")
    for f in files[:2]:
        rel = read_release(f)
        assert not rel.invalid and rel.rows.target_lufs.tolist() == ["none", -14.0]
    bad = tmp_path / "bad.csv"
    bad.write_text(files[1].read_text().replace(",none,none,", ",none,loud,", 1))
    assert "target_lufs is 'loud', not a number" in read_release(bad).invalid[0].detail
