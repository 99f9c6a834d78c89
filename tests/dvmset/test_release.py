"""The ids-only release: one row per accepted clip with its window, split, verdict and agreement, licence
and music checksum, no media; parquet and CSV read back alike; a rebuilt clip is compared field by field."""

from __future__ import annotations

import numpy as np
import pytest
from feature_helpers import add_clips

from dvmset.music_groups import encode_fingerprint
from dvmset.release import COLUMNS, ReleaseError, compare_rebuilt, read_release, release_frame, write_release
from dvmset.review import QueuePolicy, add_annotator, decide
from dvmset.tables import Clip, Source

FP = np.arange(400, dtype=np.uint32) * np.uint32(2654435761)


@pytest.fixture
def released(data_root, catalog, clip_factory):
    ids = add_clips(catalog, data_root, clip_factory(4.0), {"v1": ("city", 2), "v2": ("food", 1)})
    with catalog.session() as s:
        s.get(Source, "v1").license, s.get(Source, "v1").duration_s = "Creative Commons Attribution", 125.0
        for n, cid in enumerate(ids):
            c = s.get(Clip, cid)
            c.music_sha256, c.music_fingerprint = f"{n:064x}", encode_fingerprint(FP + np.uint32(n))
            c.lineage = {"format": "vidmusician-lineage/1", "steps": [
                {"step": "separate", "tool": "none", "version": None, "params": {"model": "none", "weights": "none"}},
                {"step": "loudness", "tool": "pyloudnorm", "version": "0.2", "params": {"target_lufs": -14.0}},
                {"step": "clip", "tool": "ffmpeg", "version": "5", "params": {"fps": 25}}]}
        c = s.get(Clip, "v1-00000")
        c.status = "pending_review"  # decided below by three annotators, two of whom accept
        for name, verdict in (("ann", "accept"), ("bob", "accept"), ("cy", "reject")):
            ann, _ = add_annotator(s, name)
            s.flush()
            decide(s, ann.id, "v1-00000", verdict, reasons=[] if verdict == "accept" else ["noise"],
                   policy=QueuePolicy(overlap=3))
    return ids


def test_rows_carry_window_split_verdict_agreement_licence_and_music(catalog, released):
    df = release_frame(catalog, {"v1-00000": "train", "v1-00060": "train", "v2-00000": "test"})
    assert list(df.columns) == COLUMNS and list(df.clip_id) == ["v1-00000", "v1-00060", "v2-00000"]
    r = df.iloc[0]
    assert (r.video_id, r.url, r.start_s, r.duration_s, r.source_duration_s) == (
        "v1", "https://example.invalid/v1", 0.0, 4.0, 125.0)
    assert (r.split, r.query, r.verdict, r.ratings) == ("train", "city", "accept", 3)
    assert r.agreement == pytest.approx(2 / 3) and r.license == "Creative Commons Attribution"
    assert (r.separator, r.target_lufs, r.fps) == ("none", -14.0, 25)
    assert r.music_sha256 == f"{0:064x}" and r.music_fingerprint.startswith("cp1:")


def test_a_clip_no_longer_accepted_is_never_released(catalog, released):
    with catalog.session() as s:
        s.get(Clip, "v2-00000").status = "taken_down"
    df = release_frame(catalog, {"v1-00000": "train", "v2-00000": "test"})
    assert list(df.clip_id) == ["v1-00000"]


def test_parquet_and_csv_read_back_the_same_and_no_media_is_written(tmp_path, catalog, released):
    df = release_frame(catalog, {c: "train" for c in released})
    paths = write_release(tmp_path / "rel", df, name="r1", extra={"tools": {"ffmpeg": "5"}})
    assert sorted(p.name for p in (tmp_path / "rel").iterdir()) == ["release.csv", "release.json", "release.parquet"]
    a, b = read_release(paths[0]), read_release(paths[1])
    assert a.rows.equals(b.rows) and a.rows.to_dict("records") == b.rows.to_dict("records")
    assert a.meta["processing"] == {"separator": ["none"], "target_lufs": [-14.0], "fps": [25]}
    assert a.meta["splits"] == {"train": 3, "valid": 0, "test": 0} and a.meta["tools"] == {"ffmpeg": "5"}
    assert list(a.videos()) == ["v1", "v2"] and list(a.videos()["v1"].start_s) == [0.0, 60.0]
    assert read_release(tmp_path / "rel").rows.equals(a.rows)


def test_a_broken_release_is_refused_with_what_is_wrong(tmp_path, catalog, released):
    df = release_frame(catalog, {c: "train" for c in released})
    with pytest.raises(ReleaseError, match="no release"):
        read_release(tmp_path / "nothing.parquet")
    df.drop(columns=["music_sha256"]).to_csv(tmp_path / "x.csv", index=False)
    with pytest.raises(ReleaseError, match="missing columns.*music_sha256"):
        read_release(tmp_path / "x.csv")
    df.assign(split=["train", "val", "test"]).to_csv(tmp_path / "y.csv", index=False)
    rel = read_release(tmp_path / "y.csv")  # a bad row costs only itself
    assert list(rel.rows.clip_id) == ["v1-00000", "v2-00000"]
    (bad,) = rel.invalid
    assert (bad.row, bad.clip_id, bad.problems) == (2, "v1-00060", (("split", "is 'val', one of train, valid, test expected"),))


def test_a_rebuilt_clip_is_matching_or_says_how_it_differs():
    row = {"source_duration_s": 65.0, "music_sha256": "a" * 64, "music_fingerprint": encode_fingerprint(FP)}
    assert compare_rebuilt(row, source_duration_s=65.2, music_sha256="a" * 64, music_fingerprint=None) == (
        "matching", "music identical (sha256)")
    flipped = FP.copy()
    flipped[::10] ^= np.uint32(1)
    status, how = compare_rebuilt(row, source_duration_s=65.0, music_sha256="b" * 64,
                                  music_fingerprint=encode_fingerprint(flipped))
    assert status == "matching" and "fingerprint" in how and "not bit-identical" in how
    status, how = compare_rebuilt(row, source_duration_s=125.0, music_sha256="b" * 64,
                                  music_fingerprint=encode_fingerprint(FP ^ np.uint32(0xFFFF)))
    assert status == "different"
    assert "now 125.0 s long, 65.0 s when released" in how and "processed music differs" in how
    assert compare_rebuilt(row, source_duration_s=125.0, music_sha256="a" * 64, music_fingerprint=None)[0] == "different"


EDITED = """clip_id,video_id,url,start_s,duration_s,source_duration_s,split,query,verdict,agreement,ratings,license,separator,target_lufs,fps,music_sha256,music_fingerprint
a-00002,a,https://example.org/a,2,20,45,train,city,accept,1.0,1,,none,-14,25,,
a-00100,a,https://example.org/a,-5,20,45,train,city,accept,1.0,1,,none,-14,25,,
a-00101,a,https://example.org/a,NaN,20,45,train,city,accept,1.0,1,,none,-14,25,,
a-00102,a,https://example.org/a,abc,20,45,train,city,accept,1.0,1,,none,-14,25,,
a-00003,a,https://example.org/a,3,1e12,45,train,city,accept,1.0,1,,none,-14,25,,
a-00040,a,https://example.org/a,40,20,45,train,city,accept,1.0,1,,none,-14,25,,
x-00041,x,file:///etc/passwd,41,1,,val,,maybe,,0,,../m,5,2.5,zz,cp1:!!
../../evil-00001,../../evil,https://example.org/e,1,20,,test,,,,0,,none,-14,25,,
b-00009,b,https://example.org/b,1,20,,test,,,,0,,none,-14,25,,
b-00001,b,https://example.org/b,1,20,,test,,,,0,,none,-14,25,,
b-00001,b,https://example.org/b,1,20,,test,,,,0,,none,-14,25,,
c-00000,c,https://example.org/c,0,20,,test,,,,0,,none,-14,25,,
c-00020,c,https://example.org/c2,20,20,,test,,,,0,,none,-14,25,,
"""


def test_each_bad_row_is_set_aside_with_its_field_and_why_and_the_rest_kept(tmp_path):
    (tmp_path / "release.csv").write_text(EDITED)
    rel = read_release(tmp_path / "release.csv")
    assert list(rel.rows.clip_id) == ["a-00002"] and list(rel.rows.row) == [1]
    assert (rel.rows.start_s[0], rel.rows.duration_s[0], rel.rows.fps[0]) == (2.0, 20.0, 25)
    why = {r.row: r.detail for r in rel.invalid}
    assert why == {
        2: "row 2: start_s is '-5', negative",
        3: "row 3: start_s is missing (empty or NaN)",
        4: "row 4: start_s is 'abc', not a number",
        5: "row 5: duration_s is 1e+12, outside (0, 600]",
        6: "row 6: start_s puts the window at 40-60 s, past the video's end (45 s)",
        7: "row 7: url 'file:///etc/passwd': only http and https URLs are fetched, not file; split is 'val', one of "
           "train, valid, test expected; verdict is 'maybe', one of accept, reject expected; separator '../m' is not a "
           "model name: it contains a path separator; target_lufs is 5, outside [-70, 0]; fps is 2.5, not a whole "
           "number; music_sha256 is 'zz', not 64 lowercase hex digits; music_fingerprint is not a fingerprint "
           "(Only base64 data is allowed)",
        8: "row 8: clip_id '../../evil-00001' contains a path separator; video_id '../../evil' contains a path "
           "separator",
        9: "row 9: clip_id 'b-00009' is not the id of this window (b-00001)",
        10: "row 10: clip_id 'b-00001' is listed 2 times (rows 10, 11)",
        11: "row 11: clip_id 'b-00001' is listed 2 times (rows 10, 11)",
        12: "row 12: url the rows of video c disagree on it (2 different values)",
        13: "row 13: url the rows of video c disagree on it (2 different values)",
    }
    assert (tmp_path / "release.csv").read_text() == EDITED  # read, never rewritten
