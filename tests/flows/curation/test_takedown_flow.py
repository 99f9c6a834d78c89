"""Takedown end to end: a clip taken down through the command line, killed (SIGKILL) while it waits for
the feature store, then run again, is gone from the shard reader (the other clips' tensors
bit-identical), the export's JSONL, manifest and release, and its file; a re-curate refuses the video
and says why; a whole video goes with its source folder. The lineage command prints the steps. A kill
while info.zip is written leaves a temp part that the next export and a takedown sweep."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from feature_helpers import entry
from sharing_helpers import accept_all, cli_command, cli_main, curate_cfg
from sqlalchemy import select

from dvmset.catalog import Catalog
from dvmset.export import export_dataset
from dvmset.io import file_lock
from dvmset.layout import DataRoot
from dvmset.shards import FeatureStore, ShardReader, write_shard
from dvmset.tables import Clip, Source, Takedown
from flows.demos.small import serve_directory
from pipeline.synth import make_sample_video

pytestmark = pytest.mark.slow
TESTS = str(Path(__file__).resolve().parents[1])  # tests/flows: sharing_helpers


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    d = tmp_path_factory.mktemp("served")
    make_sample_video(d / "a.mp4", 45, size="96x64", fps=25, bpm=100)  # two clips
    make_sample_video(d / "b.mp4", 25, size="96x64", fps=25, bpm=130, tone_hz=330)
    with serve_directory(d) as base:
        yield base


@pytest.fixture(scope="module")
def curated_once(served, tmp_path_factory, prefect_harness):
    """A root with three accepted clips, one shard holding all three, an export with its release."""
    from flows.curation.curate import run_curate

    root = DataRoot(tmp_path_factory.mktemp("curated") / "root").ensure()
    cat = Catalog(root.catalog_url)
    urls = [f"{served}/a.mp4", f"{served}/b.mp4"]
    assert run_curate(root, cat.url, urls=urls, cfg=curate_cfg())["done"] == 2
    ids = accept_all(cat)
    store = FeatureStore(root.features_dir)
    store.append(write_shard(store.shard_path(0), [entry(c, seed=n) for n, c in enumerate(ids)]))
    export_dataset(root, cat, "v1", test_fraction=0.3, seed=0, release=True)
    cat.dispose()
    return root, ids, urls


@pytest.fixture
def curated(curated_once, tmp_path):
    """A fresh copy of the curated root for each test (paths in it are relative; links too)."""
    origin, ids, urls = curated_once
    root = DataRoot(tmp_path / "root")
    shutil.copytree(origin.path, root.path, symlinks=True)
    cat = Catalog(root.catalog_url)
    yield root, cat, ids, urls
    cat.dispose()


def _tensors(root: DataRoot) -> dict[str, dict[str, bytes]]:
    r = ShardReader(root.features_dir)
    return {c: {k: v.tobytes() for k, v in r.get(c).items()} for c in r.clip_ids}


def test_a_killed_clip_takedown_run_again_reaches_every_derived_file(curated, prefect_harness):
    from prefect.settings import PREFECT_API_URL

    root, cat, ids, urls = curated
    gone = next(c for c in ids if c.startswith("a-"))
    before = _tensors(root)
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(Path.cwd())}
    args = ["takedown", "--root", str(root.path), "--clip", gone, "--reason", "DMCA notice 42"]

    with file_lock(root.features_dir / ".lock"):  # a features run holds the store: the takedown waits there
        proc = subprocess.Popen(cli_command(TESTS, *args), env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 120
        while True:
            with cat.session() as s:
                if s.get(Clip, gone).status == "taken_down":
                    break
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "the takedown never marked the clip"
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert gone in ShardReader(root.features_dir)  # killed before the shards: the job is half done
    with cat.session() as s:
        assert s.scalars(select(Takedown)).one().finished_at is None

    out = subprocess.run(cli_command(TESTS, *args), env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "shards rewritten: shard-00000.safetensors" in out.stdout and "exports updated: v1" in out.stdout

    after = _tensors(root)
    assert gone not in after and after == {c: t for c, t in before.items() if c != gone}
    export = root.export_dir("v1")
    assert gone not in set(pd.read_parquet(export / "manifest.parquet").clip_id)
    assert gone not in set(pd.read_parquet(export / "release.parquet").clip_id)
    assert gone not in (export / "release.csv").read_text()
    for jsonl in [export / "train.jsonl", export / "test.jsonl", *export.glob("egs/*/data.jsonl")]:
        assert gone not in jsonl.read_text()
    assert not root.clip_path(gone).exists() and not root.peaks_path(gone).exists()
    with cat.session() as s:
        row = s.get(Clip, gone)
        assert (row.status, row.takedown_reason) == ("taken_down", "DMCA notice 42")
        assert s.scalars(select(Takedown)).one().finished_at is not None

    from flows.curation.curate import run_curate

    again = run_curate(root, cat.url, urls=[urls[0]], cfg=curate_cfg(), retry_failed=True)
    (key, why), = again["refused"].items()
    assert "taken down" in why and "DMCA notice 42" in why and again["planned"] == 0
    assert not root.clip_path(gone).exists()


def test_a_video_takedown_removes_its_source_and_a_later_curate_is_refused(curated, capsys):
    root, cat, ids, urls = curated
    with cat.session() as s:
        vid = s.get(Clip, next(c for c in ids if c.startswith("b-"))).source_id
    assert root.source_dir(vid).is_dir()
    assert cli_main(["takedown", "--root", str(root.path), "--video", vid, "--reason", "uploader request"]) == 0
    assert not root.source_dir(vid).exists()
    with cat.session() as s:
        assert (s.get(Source, vid).status, s.get(Source, vid).takedown_reason) == ("taken_down", "uploader request")
    assert cli_main(["curate", "--root", str(root.path), "--url", urls[1], "--separator", "none"]) == 0
    out = capsys.readouterr().out
    assert f"refused {urls[1]}" in out and "uploader request" in out
    assert not root.source_dir(vid).exists()
    assert cli_main(["takedown", "--root", str(root.path), "--clip", "nope-00000", "--reason", "x"]) == 2


def test_lineage_prints_every_step_with_versions_and_parameters(curated, capsys):
    root, cat, ids, _ = curated
    assert cli_main(["lineage", ids[0], "--root", str(root.path)]) == 0
    text = capsys.readouterr().out
    for expected in ("download: yt-dlp 20", "separate: none (model=none, weights=none)",
                     "loudness: pyloudnorm", "target_lufs=-14.0", "clip: ffmpeg", "fps=25", "qc: vidmusician",
                     "fingerprint: chromaprint", "features: vidmusician", "via Generic"):
        assert expected in text, (expected, text)
    assert cli_main(["lineage", ids[0], "--root", str(root.path), "--json"]) == 0
    lin = json.loads(capsys.readouterr().out)
    assert [s["step"] for s in lin["steps"]] == ["download", "separate", "loudness", "clip", "qc", "fingerprint",
                                                 "features"]
    assert lin["window"]["duration_s"] == 20.0 and lin["source"]["url"].endswith(".mp4")
    assert cli_main(["lineage", "zz-00000", "--root", str(root.path)]) == 2


KILLED_EXPORT = """
import os, signal, sys, zipfile
sys.path[:0] = {paths!r}
from dvmset.catalog import Catalog
from dvmset.export import export_dataset
from dvmset.layout import DataRoot

real = zipfile.ZipFile.writestr

def dying(self, name, data, *args, **kwargs):  # the first MusicInfo JSON reaches the disk, then kill -9
    real(self, name, data, *args, **kwargs)
    self.fp.flush()
    os.kill(os.getpid(), signal.SIGKILL)

zipfile.ZipFile.writestr = dying
root = DataRoot({root!r})
export_dataset(root, Catalog(root.catalog_url), "v1", release=True)
"""


def _kill_while_writing_info_zip(root: DataRoot) -> tuple[Path, bytes]:
    code = KILLED_EXPORT.format(paths=[str(Path.cwd())], root=str(root.path))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    (part,) = (root.export_dir("v1") / "audio").glob(".info.*.part.zip")
    return part, part.read_bytes()


def _partials(export: Path) -> list[Path]:
    return [p for p in export.rglob(".*.part*") if p.is_file()]


def test_a_kill_while_info_zip_is_written_leaves_a_part_that_export_and_takedown_sweep(curated):
    root, cat, ids, _ = curated
    export = root.export_dir("v1")
    part, data = _kill_while_writing_info_zip(root)
    assert any(c.encode() in data for c in ids)  # it holds a clip's metadata

    assert cli_main(["export", "--root", str(root.path), "--name", "v1", "--release"]) == 0
    assert _partials(export) == []  # the next export sweeps it
    with zipfile.ZipFile(export / "audio" / "info.zip") as z:
        assert sorted(z.namelist()) == sorted(f"{c}.json" for c in ids)

    part, data = _kill_while_writing_info_zip(root)
    gone = next(c for c in ids if c.encode() in data)
    assert cli_main(["takedown", "--root", str(root.path), "--clip", gone, "--reason", "DMCA notice 43"]) == 0
    assert _partials(export) == []  # and so does a takedown: no file in the export names the clip
    for p in export.rglob("*"):
        if p.is_file() and not p.is_symlink():
            assert gone.encode() not in p.read_bytes(), p
    with zipfile.ZipFile(export / "audio" / "info.zip") as z:
        assert sorted(z.namelist()) == sorted(f"{c}.json" for c in ids if c != gone)
