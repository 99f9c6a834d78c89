"""The release written a batch at a time: never more than one batch of rows held, each batch one parquet row
group, and the files the same as the whole frame written at once; releases written before still read back."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from feature_helpers import add_clips

from dvmset import release as rel
from dvmset.music_groups import encode_fingerprint
from dvmset.release import read_release, release_batches, release_frame, write_release_batches
from dvmset.tables import Clip

LAYOUT = {"v1": ("city", 3), "v2": ("food", 2), "v3": ("city", 3)}
FP = np.arange(400, dtype=np.uint32) * np.uint32(2654435761)


@pytest.fixture
def split(data_root, catalog, clip_factory):
    ids = add_clips(catalog, data_root, clip_factory(4.0), LAYOUT)
    with catalog.session() as s:
        for n, cid in enumerate(ids):
            c = s.get(Clip, cid)
            c.music_sha256, c.music_fingerprint = f"{n:064x}", encode_fingerprint(FP + np.uint32(n))
            c.lineage = {"steps": [{"step": "loudness", "params": {"target_lufs": -14.0}},
                                   {"step": "clip", "params": {"fps": 25}}]}
        s.get(Clip, "v2-00000").status = "taken_down"  # in the split, never released: a batch one row short
    return {cid: ("test" if n % 3 == 0 else "train") for n, cid in enumerate(reversed(ids))}  # not in id order


def test_one_batch_at_a_time_each_a_row_group_and_the_same_files_as_the_whole_frame(tmp_path, catalog, split,
                                                                                    monkeypatch):
    size = 2
    events = []

    def pulled():
        for n, b in enumerate(release_batches(catalog, split, size)):
            events.append(("batch", n, len(b)))
            yield b

    real = pq.ParquetWriter.write_table
    monkeypatch.setattr(pq.ParquetWriter, "write_table",
                        lambda self, t, *a, **k: (events.append(("written", t.num_rows)), real(self, t, *a, **k))[1])
    paths = write_release_batches(tmp_path / "s", pulled(), name="r", extra={"steps": []})

    # each batch is written before the next is built: never two batches of rows held at once
    assert [e[0] for e in events] == ["batch", "written"] * 4
    assert [e[2] for e in events if e[0] == "batch"] == [2, 1, 2, 2]  # 8 ids in 4 batches, one taken down
    meta = pq.ParquetFile(paths[0]).metadata
    assert [meta.row_group(g).num_rows for g in range(meta.num_row_groups)] == [2, 1, 2, 2]

    frame = release_frame(catalog, split)  # the whole frame, as the release was written before
    assert pd.read_parquet(paths[0]).clip_id.tolist() == frame.clip_id.tolist() == sorted(frame.clip_id)
    assert paths[1].read_text() == frame.to_csv(index=False)  # uniform rows: the CSV byte for byte as before
    whole = rel.write_release(tmp_path / "w", frame, name="r", extra={"steps": []})
    assert whole[2].read_text() == paths[2].read_text()
    counts = json.loads(paths[2].read_text())
    assert (counts["clips"], counts["videos"], counts["splits"]) == (7, 3, {"train": 4, "valid": 0, "test": 3})
    assert counts["processing"] == {"separator": [], "target_lufs": [-14.0], "fps": [25]}


def test_a_release_written_before_streaming_reads_back_as_the_new_one(tmp_path, catalog, split):
    """The old writer let pandas choose: a float target_lufs, a float fps once a clip lacks one."""
    frame = release_frame(catalog, split)
    frame.loc[frame.clip_id == "v3-00060", "fps"] = None
    new = rel.write_release(tmp_path / "new", frame, name="r")
    old = tmp_path / "old"
    old.mkdir()
    frame.to_parquet(old / "release.parquet", index=False)
    frame.to_csv(old / "release.csv", index=False)
    assert pd.read_parquet(old / "release.parquet").fps.dtype == "float64"
    assert pq.read_schema(new[0]).field("target_lufs").type == "string"
    want = read_release(new[0]).rows
    assert not read_release(new[0]).invalid and want.fps.tolist().count(None) == 1
    for f in (old / "release.parquet", old / "release.csv", new[1]):
        got = read_release(f)
        assert not got.invalid and got.rows.to_dict("records") == want.to_dict("records")


def test_release_json_lists_the_loudness_target_as_the_lineage_held_it(tmp_path, catalog, split):
    frame = release_frame(catalog, split)
    for lufs in (-14, -14.0, -23.5):
        paths = rel.write_release(tmp_path / str(lufs), frame.assign(target_lufs=lufs), name="r")
        got = json.loads(paths[2].read_text())["processing"]["target_lufs"]
        assert got == [lufs] and type(got[0]) is type(lufs)  # -14, not -14.0, as the whole frame wrote it


def test_an_fps_that_is_not_whole_is_refused_naming_the_clip(tmp_path, catalog, split):
    frame = release_frame(catalog, split).assign(fps=29.97)
    with pytest.raises(rel.ReleaseError, match="v1-00000: fps 29.97"):
        rel.write_release(tmp_path, frame, name="r")


def test_an_empty_release_has_the_header_and_the_schema(tmp_path):
    paths = write_release_batches(tmp_path, iter([]), name="none")
    assert paths[1].read_text() == pd.DataFrame(columns=rel.COLUMNS).to_csv(index=False)
    assert pq.read_schema(paths[0]).names == rel.COLUMNS and len(pd.read_parquet(paths[0])) == 0
    assert json.loads(paths[2].read_text())["clips"] == 0
