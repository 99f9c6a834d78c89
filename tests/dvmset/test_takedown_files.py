"""A takedown's file rewrites in proportion to what it touches: the export's files after a takedown equal
the export made again without the clip (byte for byte where the writer is deterministic), only the info
zip that may hold the clip is opened, and only the JSONL/CSV lines that contain a gone id are parsed."""

from __future__ import annotations

import json
import zipfile

import pandas as pd
import pytest
from feature_helpers import add_clips

from dvmset import info_zips, line_filter
from dvmset.export import export_dataset
from dvmset.export_card import write_card
from dvmset.takedown import mark_catalog, plan_takedown, scrub_export

LAYOUT = {"a": ("q1", 3), "b": ("q1", 2), "c": ("q2", 3), "d": ("q2", 2), "e": ("q1", 1)}


def _files(out) -> dict[str, bytes]:
    keep = ("*.jsonl", "egs/*/data.jsonl", "audio/info*.zip", "release.csv", "release.json")
    return {str(p.relative_to(out)): p.read_bytes() for g in keep for p in sorted(out.glob(g))}


def _info(out) -> dict[str, dict]:
    got = {}
    for p in info_zips.present(out / "audio"):
        with zipfile.ZipFile(p) as z:
            got.update({n: json.loads(z.read(n)) for n in z.namelist()})
    return got


@pytest.mark.parametrize("per_zip", [1000, 3])  # one info.zip; the MusicInfo spread over several zips
def test_a_takedown_leaves_the_files_an_export_without_the_clip_writes(data_root, catalog, clip_factory,
                                                                       monkeypatch, per_zip):
    monkeypatch.setattr(info_zips, "PER_ZIP", per_zip)
    ids = add_clips(catalog, data_root, clip_factory(4.0), LAYOUT)
    export_dataset(data_root, catalog, "v1", test_fraction=0.3, valid_fraction=0.2, seed=0, release=True)
    out = data_root.export_dir("v1")
    zips = info_zips.present(out / "audio")
    assert len(zips) == info_zips.zip_count(len(ids), per_zip) and _info(out).keys() == {f"{c}.json" for c in ids}
    for line in (out / "train.jsonl").read_text().splitlines():  # each line points into the zip holding its clip
        meta = json.loads(line)
        zip_path, member = meta["info_path"].split(":")
        with zipfile.ZipFile(zip_path) as z:
            assert json.loads(z.read(member))["clip_id"] == member.removesuffix(".json")

    opened = []
    real = info_zips._zip_without
    monkeypatch.setattr(info_zips, "_zip_without", lambda p, g: (opened.append(p.name), real(p, g))[1])
    gone = "a-00060"
    plan = plan_takedown(catalog, clip=gone, reason="rights holder")
    mark_catalog(catalog, plan)
    assert scrub_export(out, plan.clip_ids, lambda o, m: write_card(o, m, catalog, reuse_facts=True))
    assert opened == [info_zips.zip_name(gone, len(zips))]  # the other zips are not read
    after = _files(out)
    manifest, release = pd.read_parquet(out / "manifest.parquet"), pd.read_parquet(out / "release.parquet")
    assert gone not in set(manifest.clip_id) and gone not in set(release.clip_id)
    assert all(gone.encode() not in data for data in after.values())

    export_dataset(data_root, catalog, "v1", test_fraction=0.3, valid_fraction=0.2, seed=0, release=True)
    again = _files(out)
    assert len(info_zips.present(out / "audio")) == len(zips)  # the same layout either way (9 clips at 3 a zip)
    assert after == again  # JSONL, info zips, release.csv and release.json's counts byte for byte
    pd.testing.assert_frame_equal(manifest, pd.read_parquet(out / "manifest.parquet"))
    pd.testing.assert_frame_equal(release, pd.read_parquet(out / "release.parquet"))


def test_an_export_of_fewer_clips_deletes_the_zips_it_no_longer_writes(data_root, catalog, clip_factory, monkeypatch):
    monkeypatch.setattr(info_zips, "PER_ZIP", 3)
    ids = add_clips(catalog, data_root, clip_factory(4.0), LAYOUT)
    export_dataset(data_root, catalog, "v1", test_fraction=0.3, seed=0)
    out = data_root.export_dir("v1")
    assert len(info_zips.present(out / "audio")) > 1
    monkeypatch.setattr(info_zips, "PER_ZIP", 1000)
    export_dataset(data_root, catalog, "v1", test_fraction=0.3, seed=0)
    assert [p.name for p in info_zips.present(out / "audio")] == ["info.zip"]
    assert _info(out).keys() == {f"{c}.json" for c in ids}


def _counting_loads(monkeypatch) -> list[str]:
    parsed, real = [], json.loads
    monkeypatch.setattr(line_filter.json, "loads", lambda s, *a, **k: (parsed.append(s), real(s, *a, **k))[1])
    return parsed


@pytest.mark.parametrize("block", [8 * 2**20, 64])  # the file searched in one block; in many, lines across them
@pytest.mark.parametrize("kernel_copy", [True, False])  # copy_file_range; a file system without it
def test_only_jsonl_lines_holding_a_gone_id_are_parsed(tmp_path, monkeypatch, block, kernel_copy):
    monkeypatch.setattr(line_filter, "BLOCK", block)
    if not kernel_copy:
        def unsupported(*_):
            raise OSError(18, "Invalid cross-device link")
        monkeypatch.setattr(line_filter.os, "copy_file_range", unsupported)
    lines = [{"path": f"/x/audio/v{i:04d}-00000.mp4", "description": "q. title"} for i in range(1000)]
    lines[7]["description"] = "q. a video about v0003-00000"  # names a gone id, is not its line: parsed, kept
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(ln, sort_keys=True) + "\n" for ln in lines))
    parsed = _counting_loads(monkeypatch)
    gone = {"v0003-00000", "v0500-00000"}
    assert line_filter.jsonl_without(path, gone, lambda r: r["path"].rsplit("/", 1)[1].removesuffix(".mp4"))
    assert len(parsed) == 3  # of 1000 lines: the two gone and the one that mentions one
    kept = [ln for ln in lines if ln["path"].rsplit("/", 1)[1][:-4] not in gone]
    assert path.read_text() == "".join(json.dumps(ln, sort_keys=True) + "\n" for ln in kept)
    inode = path.stat().st_ino
    assert not line_filter.jsonl_without(path, gone, lambda r: r["path"])  # nothing left to drop: unchanged
    assert path.stat().st_ino == inode


@pytest.mark.parametrize("block", [8 * 2**20, 50])  # one block; blocks smaller than a record, ends in quotes
@pytest.mark.parametrize("gone", [{"v0002-00000", "v0004-00060"}, {f"v{i:04d}-00000" for i in range(70)}])
def test_release_csv_records_dropped_by_lines_equal_pandas_writing_the_rest(tmp_path, monkeypatch, gone, block):
    """Quoted fields with commas, quotes and newlines, one of them a line that starts like a gone clip's
    record: the lines-only filter (a few ids) and the parse-all fallback (many) agree with pandas."""
    rows = [{"clip_id": f"v{i:04d}-{k:05d}", "query": q, "excluded_spans": None, "start_s": float(k)}
            for i, q in enumerate(["city", 'say "hi", then', "two\nlines", "x\nv0004-00060,fake", "plain"] * 20)
            for k in (0, 60)]
    rows[3]["excluded_spans"] = json.dumps([[1.0, 2.0, "noise"]])
    df = pd.DataFrame(rows)
    path = tmp_path / "release.csv"
    df.to_csv(path, index=False)
    expected = df[~df.clip_id.isin(gone)].to_csv(index=False)
    monkeypatch.setattr(line_filter, "BLOCK", block)
    got = line_filter.csv_without(path, gone)
    if len(gone) > line_filter.FEW:
        assert got is None  # the caller parses the file (dvmset.takedown)
        return
    assert got and path.read_text() == expected
    inode = path.stat().st_ino
    assert line_filter.csv_without(path, gone) is False and path.stat().st_ino == inode  # not rewritten


def test_release_parquet_is_filtered_a_run_of_row_groups_at_a_time_and_reads_back_the_same(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    df = pd.DataFrame({"clip_id": [f"v{i:04d}-00000" for i in range(95)], "fps": [25] * 94 + [None],
                       "music_fingerprint": ["cp1:" + "x" * 50] * 95})
    path = tmp_path / "release.parquet"
    df.to_parquet(path, index=False, row_group_size=10)
    monkeypatch.setattr(line_filter, "ROWS", 10)
    monkeypatch.setattr(line_filter, "READ_ROWS", 25)  # about 25 rows read at once: runs of three groups
    read, real = [], pq.ParquetFile.read_row_groups
    monkeypatch.setattr(pq.ParquetFile, "read_row_groups",
                        lambda self, gs, *a, **k: (read.append(list(gs)), real(self, gs, *a, **k))[1])
    gone = {"v0003-00000", "v0094-00000"}
    assert line_filter.parquet_without(path, gone)
    assert read == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]  # a few groups at a time, never the whole file
    pd.testing.assert_frame_equal(pd.read_parquet(path), df[~df.clip_id.isin(gone)].reset_index(drop=True))
    assert pq.ParquetFile(path).metadata.num_row_groups == 10
    assert not line_filter.parquet_without(path, gone)


def test_an_export_with_one_large_info_zip_made_before_is_still_taken_down_from(data_root, catalog, clip_factory,
                                                                                 monkeypatch, caplog):
    """Exports made before the split keep every MusicInfo in one info.zip: a takedown rewrites it whole and
    says that a re-export splits it."""
    ids = add_clips(catalog, data_root, clip_factory(4.0), LAYOUT)
    export_dataset(data_root, catalog, "v1", test_fraction=0.3, seed=0)
    out = data_root.export_dir("v1")
    monkeypatch.setattr(info_zips, "PER_ZIP", 3)  # as if this export were larger than a zip holds now
    gone = "c-00060"
    with caplog.at_level("INFO", logger="dvmset.info_zips"):
        assert scrub_export(out, [gone], lambda o, m: write_card(o, m, catalog))
    assert [p.name for p in info_zips.present(out / "audio")] == ["info.zip"]
    assert _info(out).keys() == {f"{c}.json" for c in ids if c != gone}
    assert "a re-export spreads them" in caplog.text


@pytest.mark.parametrize("older", [False, True])
def test_a_takedown_lists_the_audio_folder_only_after_a_writer_that_did_not_end_cleanly(
        data_root, catalog, clip_factory, monkeypatch, older):
    """The audio folder holds two entries per clip (seconds to list at a million). After an export that ended
    cleanly (``.clean``; export.json gives the info zips' count) a takedown names the zip it rewrites and lists
    no folder of that size; after an older version's export (neither) it lists it, sweeping a killed write's
    temp file, and finds the zip the same. Either way it ends clean."""
    import os

    from dvmset import io as dvm_io

    monkeypatch.setattr(info_zips, "PER_ZIP", 3)
    ids = add_clips(catalog, data_root, clip_factory(4.0), LAYOUT)
    export_dataset(data_root, catalog, "v1", test_fraction=0.3, seed=0, release=True)
    out = data_root.export_dir("v1")
    params = json.loads((out / "export.json").read_text())
    assert (out / ".clean").is_file() and params["info_zips"] == len(info_zips.present(out / "audio")) > 1
    stale = out / "audio" / ".b-00000.k1ll3d.part.json"
    if older:
        (out / ".clean").unlink()
        del params["info_zips"]
        (out / "export.json").write_text(json.dumps(params))
        stale.write_text('{"clip_id": "b-00000"}')
    listed = []
    real = os.scandir
    monkeypatch.setattr(dvm_io.os, "scandir", lambda d=".": (listed.append(os.path.realpath(d)), real(d))[1])

    gone = "b-00000"
    zip_path = out / "audio" / info_zips.zip_name(gone, params.get("info_zips") or len(info_zips.present(out / "audio")))
    plan = plan_takedown(catalog, clip=gone, reason="rights holder")
    mark_catalog(catalog, plan)
    assert scrub_export(out, plan.clip_ids, lambda o, m: write_card(o, m, catalog, reuse_facts=True))

    assert (os.path.realpath(out / "audio") in listed) == older
    assert not stale.exists() and (out / ".clean").is_file()
    with zipfile.ZipFile(zip_path) as z:
        assert f"{gone}.json" not in z.namelist() and z.namelist()
    assert set(_info(out)) == {f"{c}.json" for c in ids if c != gone}


def test_an_export_that_fails_leaves_the_folder_unclean(data_root, catalog):
    out = data_root.export_dir("v1")
    with pytest.raises(ValueError, match="no accepted clips"):
        export_dataset(data_root, catalog, "v1")
    assert out.is_dir() and not (out / ".clean").exists()


def test_the_lines_holding_one_videos_clips_are_found_by_one_scan_for_their_common_start(monkeypatch):
    """A video's clips share ``{video}-``: one scan for it finds their lines; a line with the same start but
    another clip (and one naming a gone clip after such a near miss) is told apart; ids with a short common start
    are each scanned for, with the same result."""
    lines = [b'{"path": "/a/v0007-00000.mp4"}', b'{"path": "/a/v0007-00030.mp4"}',
             b'{"d": "v0007-00030 then v0007-00060", "path": "/a/x.mp4"}', b'{"path": "/a/v0008-00060.mp4"}',
             b'{"path": "/a/v0007-00060.mp4"}']
    data = b"\n".join(lines) + b"\n"
    starts = [sum(len(x) + 1 for x in lines[:k]) for k in range(len(lines) + 1)]
    found = line_filter.lines_containing(data, [b"v0007-00000", b"v0007-00060"])
    assert found == [(starts[k], starts[k + 1]) for k in (0, 2, 4)]
    scans = []
    real = line_filter._probes
    monkeypatch.setattr(line_filter, "_probes", lambda keys, **kw: scans.append(real(keys, **kw)) or scans[-1])
    line_filter.lines_containing(data, [b"v0007-00000", b"v0007-00060"])
    assert [p for p, _ in scans[0]] == [b"v0007-000"]
    assert line_filter.lines_containing(data, [b"v0007-00000", b"v0008-00060"]) == \
        [(starts[k], starts[k + 1]) for k in (0, 3)]
