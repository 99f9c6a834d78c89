"""`vidmusician features` / `export` end to end, a SIGKILL while a shard is being written, and the failure
policy: one clip fails alone, an error of the whole run stops it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from feature_helpers import add_clips
from sqlalchemy import select

from dvmset.dataset import FeatureWindows
from dvmset.io import file_lock
from dvmset.shards import FeatureStore, ShardReader, read_shard_rows
from dvmset.tables import Clip, Run
from flows.cli import main
from flows.dataset.features import FeaturesConfig, run_features
from pipeline.errors import RunError
from pipeline.media import run_ffmpeg

TINY = ["--clip-model", "tiny", "--codec", "tiny", "--clip-seconds", "4"]


@pytest.mark.slow
def test_features_then_export_then_dataset(data_root, catalog, clip_factory, prefect_harness, tiny_codec, capsys):
    clip = clip_factory(4.0, cut_every_s=2.0)
    ids = add_clips(catalog, data_root, clip, {"a": ("q1", 2), "b": ("q1", 1), "c": ("q2", 1), "d": ("q2", 1)})
    add_clips(catalog, data_root, clip, {"r": ("q1", 1)}, status="rejected")
    data_root.clip_path("d-00000").write_bytes(b"broken")  # an accepted clip that cannot be read
    root = ["--root", str(data_root.path)]

    assert main(["features", *root, *TINY, "--clips-per-shard", "2"]) == 1  # one clip failed
    store = FeatureStore(data_root.features_dir)
    idx = store.index()
    assert sorted(idx.clip_id) == sorted(set(ids) - {"d-00000"})
    # [a-00000, a-00060], [b-00000, c-00000]; the last shard would hold only the broken clip: not written
    assert [p.name for p in store.shard_files()] == ["shard-00000.safetensors", "shard-00001.safetensors"]
    with catalog.session() as s:
        runs = {r.key: (r.status, r.error) for r in s.scalars(select(Run).where(Run.stage == "features"))}
    assert runs["d-00000"][0] == "failed" and "d-00000" in runs["d-00000"][1]
    assert all(runs[c] == ("done", None) for c in idx.clip_id)
    assert json.loads(idx.config[0])["identity"]["clip_model"] == "tiny"

    reader = ShardReader(data_root.features_dir)
    a = reader.get("a-00000")
    assert a["global"].shape == (4, 32) and a["rhythm"].shape == (200,) and a["codes"].shape == (4, 200)
    assert abs(int(np.argmax(a["rhythm"])) - 100) <= 1  # the cut at 2 s
    np.testing.assert_array_equal(a["codes"], reader.get("a-00060")["codes"])  # same media, same codes
    assert all(reader.verify(c) for c in idx.clip_id)

    # a second run finds nothing new to do and leaves the broken clip out, saying so (a --limit run
    # is never spent on it again); --retry-failed tries it; a different model is refused
    capsys.readouterr()
    assert main(["features", *root, *TINY, "--limit", "1"]) == 0
    said = capsys.readouterr().out
    assert "0 clips extracted" in said and "1 clips that failed in earlier runs" in said and "d-00000" in said
    assert main(["features", *root, *TINY, "--retry-failed"]) == 1  # tried again, fails again
    assert len(store.index()) == len(idx)
    assert main(["features", *root, "--clip-model", "tiny", "--codec", "tiny", "--clip-seconds", "3"]) == 2
    refused = capsys.readouterr().err
    assert "holds features made with" in refused and "'clip_s': 4" in refused and "'clip_s': 3" in refused
    assert len(store.index()) == len(idx) and len(store.shard_files()) == 2  # nothing written

    with file_lock(data_root.features_dir / ".lock"):  # a features run is writing the index
        assert main(["export", *root, "--name", "v1", "--test-fraction", "0.4"]) == 2
    assert "when it has finished" in capsys.readouterr().err
    with catalog.session() as s:
        assert s.scalars(select(Clip.split).where(Clip.split.is_not(None))).all() == []  # nothing half-done
    assert main(["export", *root, "--name", "v1", "--test-fraction", "0.4"]) == 0
    capsys.readouterr()
    assert main(["status", *root, "--json"]) == 0  # the whole pipeline's state in one place
    feats = json.loads(capsys.readouterr().out)["features"]
    assert {k: feats[k] for k in ("accepted", "in_shards", "pending", "exports")} == {
        "accepted": len(ids), "in_shards": len(idx), "pending": 0, "exports": ["v1"]}
    assert [f["clip_id"] for f in feats["failed"]] == ["d-00000"] and "d-00000" in feats["failed"][0]["error"]
    assert main(["status", *root]) == 0
    assert f"features: {len(idx)} of {len(ids)} accepted clips in shards, 0 to extract, 1 failed; exports: v1" \
        in capsys.readouterr().out
    ds_train = FeatureWindows(data_root.features_dir, split="train", window_s=2)
    parts = sorted(set(store.index().split.dropna()))
    assert len(ds_train) < len(idx) and "test" in parts
    assert sum(len(FeatureWindows(data_root.features_dir, split=p, window_s=2)) for p in parts) == len(idx)
    item = ds_train[0]
    full = reader.get(item["clip_id"])
    o = item["offset_s"]
    np.testing.assert_array_equal(item["codes"].numpy(), full["codes"][:, 50 * o : 50 * (o + 2)])
    np.testing.assert_array_equal(item["rhythm"].numpy(), full["rhythm"][50 * o : 50 * (o + 2)])
    np.testing.assert_array_equal(item["global"].numpy(), full["global"][o : o + 2].astype(np.float32))


CHILD = textwrap.dedent("""
    import os, signal, sys
    sys.path[:0] = {paths!r}
    import dvmset.shards as shards
    from dvmset.layout import DataRoot
    from flows.dataset.features import FeaturesConfig, run_features

    real, calls = shards.save_file, []

    def dying_save_file(arrays, path, metadata=None):
        calls.append(path)
        if len(calls) == 2:  # the second shard: half of it reaches the disk, then kill -9
            with open(path, "wb") as f:
                f.write(b"partial shard bytes")
                f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        real(arrays, path, metadata=metadata)

    shards.save_file = dying_save_file
    cfg = FeaturesConfig(clip_model="tiny", pretrained=None, codec="tiny", clip_s=4, clips_per_shard=2)
    run_features(DataRoot({root!r}), {db!r}, cfg)
""")


@pytest.mark.slow
def test_kill_while_writing_a_shard_leaves_no_partial_shard(data_root, catalog, clip_factory, tiny_codec):
    clip = clip_factory(4.0, cut_every_s=2.0)
    ids = add_clips(catalog, data_root, clip, {"a": ("q", 2), "b": ("q", 2), "c": ("q", 1)})
    here = os.path.dirname(__file__)
    code = CHILD.format(paths=[os.path.dirname(os.path.dirname(os.path.dirname(here)))], root=str(data_root.path), db=catalog.url)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]

    store = FeatureStore(data_root.features_dir)
    assert [p.name for p in store.shard_files()] == ["shard-00000.safetensors"]  # no partial shard
    assert list(data_root.features_dir.glob(".shard-00001.*.part.safetensors"))  # the killed write's temp
    assert store.index().empty  # the run indexes its shards at its end (INDEX_EVERY_S): the kill came first,
    assert [r["clip_id"] for r in read_shard_rows(store.shard_path(0))] == ids[:2]  # but the shard's header holds them

    cfg = FeaturesConfig(clip_model="tiny", pretrained=None, codec="tiny", clip_s=4, clips_per_shard=2)
    with file_lock(data_root.features_dir / ".lock"), pytest.raises(RuntimeError, match="another"):
        run_features(data_root, catalog.url, cfg)  # a live run holds the folder: refused, nothing swept
    assert list(data_root.features_dir.glob(".shard-00001.*.part.safetensors"))
    result = run_features(data_root, catalog.url, cfg)
    assert result["recovered"] == ["shard-00000.safetensors"]  # indexed from its header, not extracted again
    assert result["already"] == 2 and result["done"] == 3 and not result["failed"]
    assert sorted(store.index().clip_id) == ids
    assert [p.name for p in store.shard_files()] == [f"shard-0000{i}.safetensors" for i in range(3)]
    assert not list(data_root.features_dir.glob(".shard-*"))  # temp files swept
    reader = ShardReader(data_root.features_dir)
    assert all(reader.verify(c) for c in ids)


class SilenceRefusingCodec(torch.nn.Module):
    """The tiny EnCodec, except that it raises ValueError on all-silent audio, as a codec may on input it
    cannot take; counts the waveforms it was given."""

    def __init__(self, inner: torch.nn.Module, error: type[BaseException] = ValueError) -> None:
        super().__init__()
        self.inner, self.error, self.calls = inner, error, 0

    def encode(self, x: torch.Tensor):  # noqa: ANN201 - audiocraft's (codes, scale)
        self.calls += 1
        if float(x.abs().max()) == 0.0:
            raise self.error("codec cannot take an all-silent waveform")
        return self.inner.encode(x)


@pytest.fixture(scope="module")
def silent_clip(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("silent") / "silent.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25:duration=4", "-f", "lavfi", "-i",
                "anullsrc=r=32000:cl=mono", "-t", "4", "-c:v", "libx264", "-preset", "ultrafast",
                "-pix_fmt", "yuv420p", "-c:a", "aac", dest], stage="test")  # fmt: skip
    return dest


def test_a_clip_the_codec_raises_on_fails_alone_and_is_not_retried(data_root, catalog, clip_factory, silent_clip,
                                                                   tiny_encoder, tiny_codec):
    """Issue 9 item 6: a ValueError for one clip is that clip's failed row with the reason; the others reach
    the shards; a re-run leaves it out unless retry_failed; an error of the whole run stops the run."""
    ids = add_clips(catalog, data_root, clip_factory(4.0, cut_every_s=2.0), {"a": ("q", 2), "b": ("q", 1)})
    bad = add_clips(catalog, data_root, silent_clip, {"s": ("q", 1)})[0]
    cfg = FeaturesConfig(clip_model="tiny", codec="tiny", clip_s=4, clips_per_shard=2)
    codec = SilenceRefusingCodec(tiny_codec)

    result = run_features(data_root, catalog.url, cfg, models=(tiny_encoder, codec))
    assert result["failed"] == {bad: "ValueError: codec cannot take an all-silent waveform"}
    assert result["done"] == 3 and sorted(FeatureStore(data_root.features_dir).index().clip_id) == ids
    with catalog.session() as s:
        run = s.scalars(select(Run).where(Run.stage == "features", Run.key == bad)).one()
    assert (run.status, run.error) == ("failed", result["failed"][bad])

    calls = codec.calls
    again = run_features(data_root, catalog.url, cfg, models=(tiny_encoder, codec))
    assert again["done"] == 0 and not again["failed"] and set(again["failed_before"]) == {bad}
    assert codec.calls == calls  # not tried again
    retried = run_features(data_root, catalog.url, replace(cfg, retry_failed=True), models=(tiny_encoder, codec))
    assert set(retried["failed"]) == {bad} and codec.calls == calls + 1


@pytest.mark.parametrize("error", [MemoryError, RunError])
def test_an_error_of_the_whole_run_stops_it_and_fails_no_clip(data_root, catalog, silent_clip, tiny_encoder,
                                                              tiny_codec, error):
    ids = add_clips(catalog, data_root, silent_clip, {"s": ("q", 2)})
    cfg = FeaturesConfig(clip_model="tiny", codec="tiny", clip_s=4, clips_per_shard=2)
    with pytest.raises(error):
        run_features(data_root, catalog.url, cfg, models=(tiny_encoder, SilenceRefusingCodec(tiny_codec, error)))
    with catalog.session() as s:
        assert s.scalars(select(Run).where(Run.stage == "features")).all() == []  # nobody blamed
    assert not FeatureStore(data_root.features_dir).shard_files() and ids


def test_a_run_writes_the_index_at_its_end_not_per_shard_and_an_error_keeps_its_shards(
        data_root, catalog, clip_factory, silent_clip, tiny_encoder, tiny_codec, monkeypatch):
    """Each index write rewrites the whole index, so a run writes its shards' rows every INDEX_EVERY_S and at
    its end, not after each shard. A whole-run error still indexes the shards finished before it; the next run
    extracts only what is missing."""
    from flows.dataset import features

    writes: list[list[str]] = []
    append = FeatureStore.append
    monkeypatch.setattr(FeatureStore, "append", lambda self, rows: (writes.append([r["clip_id"] for r in rows]),
                                                                     append(self, rows))[1])
    store = FeatureStore(data_root.features_dir)
    cfg = FeaturesConfig(clip_model="tiny", codec="tiny", clip_s=4, clips_per_shard=2)
    first = add_clips(catalog, data_root, clip_factory(4.0, cut_every_s=2.0), {"a": ("q", 2), "b": ("q", 2)})
    monkeypatch.setattr(features, "INDEX_EVERY_S", 0.0)  # a write per shard, as before
    assert run_features(data_root, catalog.url, cfg, models=(tiny_encoder, tiny_codec))["done"] == 4
    assert writes == [first[:2], first[2:]]

    monkeypatch.setattr(features, "INDEX_EVERY_S", 3600.0)
    more = add_clips(catalog, data_root, clip_factory(4.0, cut_every_s=2.0), {"c": ("q", 2), "d": ("q", 2)})
    silent = add_clips(catalog, data_root, silent_clip, {"s": ("q", 1)})
    writes.clear()
    with pytest.raises(MemoryError):  # the third shard (the silent clip) stops the run
        run_features(data_root, catalog.url, cfg, models=(tiny_encoder, SilenceRefusingCodec(tiny_codec, MemoryError)))
    assert writes == [more]  # one write, of both finished shards
    assert sorted(store.index().clip_id) == first + more and len(store.shard_files()) == 4

    writes.clear()
    again = run_features(data_root, catalog.url, cfg, models=(tiny_encoder, tiny_codec))
    assert (again["done"], again["already"], again["recovered"]) == (1, 8, [])
    assert writes == [silent] and sorted(store.index().clip_id) == first + more + silent
