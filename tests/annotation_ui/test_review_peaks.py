"""Waveform peaks in the review server: read from the stored file, computed once for older clips, warmed ahead."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from review_helpers import make_annotator, seed

from annotation_ui.peaks import PeaksStore, PeaksUnavailable, PeaksWarmer
from dvmset.peaks import STORED_PEAKS, downsample_peaks, peaks_from_samples, read_peaks, write_peaks
from dvmset.tables import Clip
from flows.commands.review import peaks_decoder
from pipeline.media import read_audio
from pipeline.probe import probe

CLIP_PEAKS = peaks_decoder()  # what `vidmusician review` passes as compute_peaks


class Counting:
    """The review command's real peaks function (QC's own), counting its calls (per clip file)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, path: Path) -> np.ndarray:
        with self._lock:
            self.calls.append(path.name)
        return CLIP_PEAKS(path)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_a_stored_peaks_file_is_served_without_decoding(make_client, catalog, data_root, clip_media):
    ids = seed(catalog, data_root, 1, clip_media)
    _, token = make_annotator(catalog, "ann")
    stored = np.abs(np.sin(np.linspace(0, 20, STORED_PEAKS))).astype(np.float32)  # [STORED_PEAKS], not the audio
    write_peaks(data_root.peaks_path(ids[0]), stored)
    compute = Counting()
    client = make_client(compute_peaks=compute)
    for n in (STORED_PEAKS, 1000, 333):
        r = client.get(f"/api/clips/{ids[0]}/peaks", params={"n": n}, headers=bearer(token))
        assert r.status_code == 200, r.text
        want = downsample_peaks(read_peaks(data_root.peaks_path(ids[0])), n)
        np.testing.assert_allclose(r.json()["peaks"], want, atol=6e-4)  # the file's values, not the audio's
    assert compute.calls == []
    # No decoder at all: stored files are all the server needs.
    r = make_client(compute_peaks=None).get(f"/api/clips/{ids[0]}/peaks", params={"n": 100}, headers=bearer(token))
    assert r.status_code == 200 and len(r.json()["peaks"]) == 100


def test_a_clip_without_peaks_gets_them_computed_once_and_stored(make_client, catalog, data_root, clip_media):
    ids = seed(catalog, data_root, 1, clip_media)
    _, token = make_annotator(catalog, "ann")
    path = data_root.peaks_path(ids[0])
    assert not path.exists()
    compute = Counting()
    client = make_client(compute_peaks=compute)
    first = client.get(f"/api/clips/{ids[0]}/peaks", params={"n": 200}, headers=bearer(token)).json()["peaks"]
    assert compute.calls == [data_root.clip_path(ids[0]).name]
    assert read_peaks(path).shape == (STORED_PEAKS,)  # stored where curation would have put it
    again = client.get(f"/api/clips/{ids[0]}/peaks", params={"n": 200}, headers=bearer(token)).json()["peaks"]
    assert again == first and len(compute.calls) == 1  # the second request read the file
    fresh = make_client(compute_peaks=compute)  # a restarted server too
    assert fresh.get(f"/api/clips/{ids[0]}/peaks", params={"n": 200}, headers=bearer(token)).json()["peaks"] == first
    assert len(compute.calls) == 1
    assert max(first) == pytest.approx(1.0) and min(first) >= 0
    assert min(first) < 0.8  # the kick decays between beats: the envelope is not flat


@pytest.mark.parametrize("n", [1000, 400, 4000])
def test_served_peaks_equal_the_peaks_of_the_decoded_audio(make_client, catalog, data_root, clip_media, n):
    assert STORED_PEAKS % n == 0
    ids = seed(catalog, data_root, 1, clip_media)
    _, token = make_annotator(catalog, "ann")
    served = make_client().get(f"/api/clips/{ids[0]}/peaks", params={"n": n}, headers=bearer(token)).json()["peaks"]
    info = probe(clip_media)
    wav = read_audio(clip_media, rate=info.audio_sample_rate, channels=info.audio_channels, stage="test")  # [C, T]
    np.testing.assert_allclose(served, peaks_from_samples(wav.mean(axis=0), n), atol=2e-3)  # float16 file, 3 decimals


def test_a_clip_without_audio_gets_a_flat_waveform(make_client, catalog, data_root, media_factory):
    silent = media_factory("silent", duration_s=2.0, size="64x48", fps=25, audio=False)
    ids = seed(catalog, data_root, 1, silent)
    _, token = make_annotator(catalog, "ann")
    r = make_client().get(f"/api/clips/{ids[0]}/peaks", params={"n": 50}, headers=bearer(token))
    assert r.status_code == 200 and r.json()["peaks"] == [0.0] * 50
    assert data_root.peaks_path(ids[0]).is_file()  # decoded once, like any other clip


def test_peaks_requests_that_cannot_be_served_say_why(make_client, catalog, data_root, clip_media):
    ids = seed(catalog, data_root, 2, clip_media)
    data_root.clip_path(ids[1]).unlink()
    data_root.clip_path(ids[1]).write_bytes(b"not a video")
    _, token = make_annotator(catalog, "ann")
    h = bearer(token)
    r = make_client().get(f"/api/clips/{ids[1]}/peaks", headers=h)
    assert r.status_code == 404 and "no waveform" in r.json()["detail"] and ids[1] in r.json()["detail"]
    assert not data_root.peaks_path(ids[1]).exists()
    r = make_client(compute_peaks=None).get(f"/api/clips/{ids[0]}/peaks", headers=h)
    assert r.status_code == 404 and "no stored waveform peaks" in r.json()["detail"]
    for n in (0, STORED_PEAKS + 1):
        assert make_client().get(f"/api/clips/{ids[0]}/peaks", params={"n": n}, headers=h).status_code == 422


def test_concurrent_first_requests_compute_once(tmp_path):
    """Two requests (or a request and the warmer) asking for the same missing file: one decode."""
    entered, release = threading.Event(), threading.Event()
    calls: list[Path] = []

    def slow(path: Path) -> np.ndarray:
        calls.append(path)
        entered.set()
        release.wait(timeout=30)
        return np.linspace(0, 1, STORED_PEAKS, dtype=np.float32)

    store = PeaksStore(slow)
    media = tmp_path / "c.mp4"
    media.write_bytes(b"")
    target = tmp_path / "c.peaks.npy"
    out: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: out.append(store.peaks(target, media, 10))) for _ in range(3)]
    threads[0].start()
    assert entered.wait(timeout=30)
    for t in threads[1:]:
        t.start()
    release.set()
    for t in threads:
        t.join(timeout=30)
    assert len(calls) == 1 and store.computed == 1 and len(out) == 3
    assert all(np.array_equal(o, out[0]) for o in out)
    assert store._locks._locks == {}  # no lock left behind


def test_a_read_only_root_still_serves_computed_peaks(tmp_path):
    media = tmp_path / "c.mp4"
    media.write_bytes(b"")
    store = PeaksStore(lambda _p: np.linspace(0, 1, STORED_PEAKS, dtype=np.float32))
    (tmp_path / "a-file").write_text("")
    target = tmp_path / "a-file" / "c.peaks.npy"  # cannot be written (its folder is a file)
    assert store.peaks(target, media, 4).tolist() == pytest.approx([0.25, 0.5, 0.75, 1.0], abs=1e-3)
    assert store.computed == 0 and not target.exists()
    short = write_peaks(tmp_path / "short.peaks.npy", np.array([0.5, 1.0], dtype=np.float32))
    assert store.peaks(short, media, 100).tolist() == [0.5, 1.0]  # fewer stored than asked: all of them
    damaged = tmp_path / "damaged.peaks.npy"
    damaged.write_bytes(b"not numpy")
    assert store.peaks(damaged, media, 2).tolist() == pytest.approx([0.5, 1.0], abs=1e-3)  # computed anew
    assert read_peaks(damaged).shape == (STORED_PEAKS,) and store.computed == 1
    with pytest.raises(PeaksUnavailable, match="returned shape"):
        PeaksStore(lambda _p: np.zeros((2, 2))).stored(tmp_path / "x.peaks.npy", media)


def test_the_next_clips_missing_peaks_are_filled_in_ahead(make_client, catalog, data_root, clip_media):
    """While clip 0 plays, the missing peaks files of the clips this annotator's queue hands out next
    are computed in the background: not a decided clip, not another annotator's leased one, not a
    clip whose file is already stored."""
    ids = seed(catalog, data_root, 6, clip_media)
    with catalog.session() as s:
        s.get(Clip, ids[1]).status = "accepted"  # decided already: the queue skips it, so must the warmer
    write_peaks(data_root.peaks_path(ids[4]), np.ones(STORED_PEAKS, dtype=np.float32))  # curated with peaks
    _, ann = make_annotator(catalog, "ann")
    _, bob = make_annotator(catalog, "bob")
    compute = Counting()
    client = make_client(compute_peaks=compute)
    assert client.get("/api/next", headers=bearer(ann)).json()["clip"]["id"] == ids[0]
    assert client.get("/api/next", headers=bearer(bob)).json()["clip"]["id"] == ids[2]  # bob holds ids[2]
    client.get(f"/api/clips/{ids[0]}/peaks", params={"n": 300}, headers=bearer(ann))
    warmer = client.app.state.review.warmer
    assert warmer._pending is not None and warmer._pending.result(timeout=60) == 1  # ids[3]; ids[4] is stored
    names = {c: data_root.clip_path(c).name for c in ids}
    assert sorted(compute.calls) == sorted([names[ids[0]], names[ids[3]]])
    assert data_root.peaks_path(ids[3]).is_file() and not data_root.peaks_path(ids[2]).exists()
    for c in ids[3:5]:
        r = client.get(f"/api/clips/{c}/peaks", params={"n": 300}, headers=bearer(ann))
        assert r.status_code == 200 and len(r.json()["peaks"]) == 300
    warmer._pending.result(timeout=60)
    assert names[ids[2]] not in compute.calls  # bob's clip was not warmed for ann
    assert compute.calls.count(names[ids[3]]) == 1  # served from the warmed file


def test_the_warmer_alone_logs_failures_and_stops_quietly(tmp_path):
    media = tmp_path / "missing.mp4"
    store = PeaksStore(CLIP_PEAKS)
    broken = PeaksWarmer(lambda _c, _a: [(tmp_path / "missing.peaks.npy", media)], store)
    assert broken.after("x", 1).result(timeout=30) == 0  # a failure is logged, not raised
    broken.close()
    assert broken.after("x", 1) is None  # a stopping server does not fail requests
    done = PeaksWarmer(lambda _c, _a: [], store)
    assert done.after("x", 1).result(timeout=10) == 0
    done.close()


def test_no_decoder_means_no_warmer(make_client):
    assert make_client(compute_peaks=None).app.state.review.warmer is None
    assert make_client().app.state.review.warmer is not None
