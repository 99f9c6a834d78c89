"""The curate entry flow on a local Dask cluster (prefect-dask's DaskTaskRunner, worker processes) makes
the same catalog as the default thread runner; a task delivered twice writes nothing twice."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from dvmset.catalog import Catalog
from dvmset.layout import DataRoot
from dvmset.records import SourceStatus
from dvmset.tables import Clip, Source
from flows.demos.small import serve_directory
from pipeline.synth import make_sample_video

pytestmark = pytest.mark.slow

SETTINGS = {"separator": "none", "clip_seconds": 2.0, "workers": 2, "download_retries": 1,
            "download_backoff_s": 0.1}
NAMES = ("d-a", "d-b", "d-c")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    d = tmp_path_factory.mktemp("served-dask")
    for i, name in enumerate(NAMES):
        make_sample_video(d / f"{name}.mp4", 4.2 + 2 * i, size="96x64", fps=25, cut_every_s=1.5, bpm=90 + 10 * i)
    with serve_directory(d) as base:
        yield [f"{base}/{n}.mp4" for n in NAMES]


def _catalog_view(cat: Catalog) -> dict:
    """What a run leaves in the catalog, without times, row order or the worker's name."""
    with cat.session() as s:
        srcs = {r.url.rsplit("/", 1)[1]: (r.id, r.status, r.duration_s, r.error, r.lease_owner, r.attempts)
                for r in s.scalars(select(Source))}
        clips = {r.id: (r.source_id, r.status, r.start_s, r.duration_s, r.path, r.scene_cuts,
                        round(r.silence_ratio, 6), round(r.loudness_lufs, 3), round(r.still_s or 0, 3))
                 for r in s.scalars(select(Clip))}
    return {"sources": srcs, "clips": clips}


def _mtimes(root: DataRoot) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in Path(root.clips_dir).iterdir()}


def test_curate_on_a_local_dask_cluster_makes_the_same_catalog_as_threads(served, tmp_path, prefect_harness):
    from flows.cluster.entry import curate

    roots = {k: DataRoot(tmp_path / k).ensure() for k in ("threads", "dask")}
    out = {k: curate(urls=served, per_query=0, settings=SETTINGS, root=str(r.path), db=r.catalog_url,
                     dask="local" if k == "dask" else None)
           for k, r in roots.items()}
    assert out["dask"]["done"] == out["threads"]["done"] == 3
    views = {}
    for k, r in roots.items():
        cat = Catalog(r.catalog_url)
        views[k] = _catalog_view(cat)
        cat.dispose()
    assert views["dask"] == views["threads"]
    assert len(views["dask"]["clips"]) == 2 + 3 + 4  # 4.2 s, 6.2 s and 8.2 s of 2 s clips
    assert {v[1] for v in views["dask"]["sources"].values()} == {SourceStatus.DONE}



def test_a_source_task_delivered_again_after_it_finished_rewrites_nothing(served, tmp_path, prefect_harness):
    """At-least-once delivery (a Dask worker lost after finishing, its task run again) is harmless: the
    redelivered task takes the free lease, finds the source done in the catalog and leaves it; had it
    stopped mid-way, the clips the catalog records with their files are kept and only the rest made."""
    from flows.cluster.entry import curate
    from flows.config import CurateConfig
    from flows.curation.curate import DONE_ELSEWHERE, Item, curate_source

    root = DataRoot(tmp_path / "again").ensure()
    assert curate(urls=served[:1], per_query=0, settings=SETTINGS, root=str(root.path),
                  db=root.catalog_url)["done"] == 1
    before = _mtimes(root)
    cfg = CurateConfig(**SETTINGS)
    assert curate_source.fn(Item(url=served[0]), str(root.path), root.catalog_url, cfg) == DONE_ELSEWHERE
    assert _mtimes(root) == before

    cat = Catalog(root.catalog_url)  # as if the first delivery died after its first clip
    with cat.session() as s:
        (src,) = s.scalars(select(Source))
        src.status = SourceStatus.PENDING
        last = s.scalars(select(Clip).order_by(Clip.id.desc())).first()
        s.delete(last)
    cat.dispose()
    root.clip_path(last.id).unlink()
    assert curate_source.fn(Item(url=served[0]), str(root.path), root.catalog_url, cfg) == SourceStatus.DONE
    after = _mtimes(root)
    assert set(after) == set(before)
    assert {k: v for k, v in after.items() if not k.startswith(last.id)} == \
        {k: v for k, v in before.items() if not k.startswith(last.id)}
