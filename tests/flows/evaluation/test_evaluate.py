"""`vidmusician evaluate` end to end on a tiny folder: ffmpeg-made videos, click tracks, tiny random embedders."""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from evaluate_media import (  # tests/flows/, on pytest's path
    calibrated_tiny_cnn14,
    clicks,
    cut_video,
    grid,
    write_clicks,
)

from flows.cli import main

D = 6.0
HAVE_CLAP = importlib.util.find_spec("laion_clap") is not None  # installed with --no-deps
CUTS = {"a": [1.0, 2.0, 3.5, 5.0], "b": [1.2, 2.7, 4.2], "c": [1.5, 2.5, 4.0, 5.0], "still": []}
# Scenes of >= 1 s (the detector's minimum scene is 15 frames). Each track's beats every 0.5 s from
# its own video's phase: b's cuts sit 0.2 s off a's and c's grid.
# Shuffled, a's music hits all of c's cuts and c's all of a's; b's misses both and theirs miss b's:
# 8 hits of 11 cuts x 2 other tracks.
PHASE = {"a": 0.0, "b": 0.2, "c": 0.0, "still": 0.0}
SHUFFLED = 8 / 22


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    from model.metrics.clap import ClapAudioConfig, build_audio_tower

    root = tmp_path_factory.mktemp("evaluate")
    gen, ref, vid = (root / n for n in ("gen", "ref", "vid"))
    for d in (gen, ref, vid):
        d.mkdir()
    for i, (cid, cuts) in enumerate(sorted(CUTS.items())):
        cut_video(vid / f"{cid}.mp4", cuts, D)
        write_clicks(gen / f"{cid}.wav", grid(0.5 + PHASE[cid], 0.5, D), D, seed=i)  # beats on every cut
        write_clicks(ref / f"{cid}.flac", grid(0.25 + PHASE[cid], 0.5, D), D, seed=10 + i)  # 0.25 s off every cut
    for cid in ("silent", "nan"):
        cut_video(vid / f"{cid}.mp4", [1.0, 2.0, 3.0], D)
        write_clicks(ref / f"{cid}.flac", grid(0.5, 0.5, D), D)
    sf.write(gen / "silent.wav", np.zeros(int(D * 44100), np.float32), 44100, subtype="FLOAT")
    bad = clicks(grid(0.5, 0.5, D), D)
    bad[1000:1010] = np.nan
    sf.write(gen / "nan.wav", bad, 44100, subtype="FLOAT")
    write_clicks(gen / "lonely.wav", grid(0.5, 0.5, D), D)  # no reference, no video
    cut_video(vid / "short.mp4", [1.0, 2.0, 3.0, 4.0, 5.0], D)  # 2.5 s of music for a 6 s video
    write_clicks(gen / "short.wav", grid(0.5, 0.5, 2.5), 2.5)
    write_clicks(ref / "short.flac", grid(0.5, 0.5, D), D)
    torch.manual_seed(0)
    panns = root / "Cnn14_16k_tiny.pth"
    torch.save({"model": calibrated_tiny_cnn14()}, panns)
    clap = root / "clap_tiny.pt"
    if HAVE_CLAP:
        tower = build_audio_tower(ClapAudioConfig.tiny())
        torch.save({"state_dict": {f"module.{k}": v for k, v in tower.state_dict().items()}}, clap)
    return {"gen": gen, "ref": ref, "vid": vid, "panns": panns, "clap": clap, "root": root}


def _run(folders: dict[str, Path], out: Path, capsys, monkeypatch) -> tuple[dict, str]:
    monkeypatch.delenv("VIDMUSICIAN_IMAGEBIND_CKPT", raising=False)
    monkeypatch.setenv("VIDMUSICIAN_CLAP_CKPT", str(folders["clap"]))  # from the environment, no flag
    rc = main(["evaluate", "--generated", str(folders["gen"]), "--reference", str(folders["ref"]),
               "--videos", str(folders["vid"]), "--out", str(out), "--panns", str(folders["panns"])])
    assert rc == 0
    return json.loads((out / "report.json").read_text()), capsys.readouterr().out


@pytest.mark.slow
def test_evaluate_end_to_end_through_the_cli(folders, tmp_path, capsys, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    report, printed = _run(folders, tmp_path / "r1", capsys, monkeypatch)
    assert not [r for r in caplog.records if "Detecting scenes" in r.getMessage()]  # PySceneDetect quiet
    m = report["metrics"]
    if not HAVE_CLAP:
        assert "laion_clap" in m["clap"]["skipped"]
    for name in ("fd", "kl", "rhythm") + (("clap",) if HAVE_CLAP else ()):  # every metric that could run did
        assert m[name]["value"] is not None and m[name]["n"] >= 3, name
        assert len(m[name]["ci95"]) == 2
    assert "pass --imagebind PATH or set VIDMUSICIAN_IMAGEBIND_CKPT" in m["imagebind"]["skipped"]
    assert m["fd"]["embedding_dim"] == 16 and "real_vs_real_split_half" in m["fd"]["chance"] and m["fd"]["warnings"]
    assert m["fd"]["value"] > 0 and m["fd"]["ci95"][1] > 0  # generated and real clicks differ
    assert m["kl"]["value"] > 0 and m["kl"]["reverse_kl_generated_real"] > 0
    assert not HAVE_CLAP or "shuffled_pairs" in m["clap"]["chance"]

    rhythm = m["rhythm"]
    assert rhythm["value"] == 1.0 and rhythm["n"] == 3  # a, b, c; "still" has stable visuals; "short" gated
    assert rhythm["excluded_stable_visuals"] == ["still"]
    assert rhythm["reference_music_recall"] == 0.0  # the real music's beats are 0.25 s off every cut
    assert 0.3 < rhythm["chance"]["closed_form"] < 0.45  # 2τ × 2 beats/s = 0.4, less the edges
    assert rhythm["chance"]["shuffled_music"] == pytest.approx(SHUFFLED)  # see PHASE

    ba = m["beat_align"]  # Bailando's score on Rhythm's videos: beats on the cuts beat shuffled music
    assert ba["n"] == 3 and ba["value"] > ba["chance"]["shuffled_music"] + 0.1 and ba["sigma_s"] == 0.05
    assert ba["value"] > ba["reference_music"]  # the real music's beats sit 0.25 s off every cut
    bb = m["bcs_bhs"]  # LORIS's scores: generated vs real music, 1 s onset bins
    assert bb["n"] == 4 and 0 <= bb["bcs"] <= 1 and 0 <= bb["bhs"] <= 1 and bb["value"] == bb["bcs"]
    assert {"shuffled_pairs_bcs", "shuffled_pairs_bhs", "shuffled_pairs_f1"} <= set(bb["chance"])
    assert all("convention" in m[k] and "matches" in m[k] for k in m if "skipped" not in m[k])
    assert "LORIS" in bb["matches"] and "Bailando" in ba["matches"] and "audioldm_eval" in m["kl"]["matches"]
    anchors = {r["column"]: r for r in report["anchors"]}
    assert anchors["BCS"]["value"] == bb["bcs"] and anchors["Beat alignment (BAS)"]["value"] == ba["value"]
    assert anchors["KL (PANNs), audioldm_eval"]["value"] == m["kl"]["kl_audioldm_eval"]
    assert "pass --vggish PATH or set VIDMUSICIAN_VGGISH_CKPT" in anchors["FAD (VGGish)"]["matches"]
    assert "pass --passt PATH or set VIDMUSICIAN_PASST_CKPT" in anchors["KL (PaSST)"]["matches"]
    for rel in ("figures/beats_vs_cuts.png", "figures/dist_rhythm.png", "figures/dist_beat_align.png",
                "figures/dist_bcs_bhs.png"):
        assert rel in report["figures"] and (tmp_path / "r1" / rel).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    excluded = {(e["clip_id"], e["role"]): e["reason"] for e in report["excluded"]}
    assert "silent" in excluded[("silent", "generated")]
    assert "NaN" in excluded[("nan", "generated")]
    assert "unpaired" in excluded[("lonely", "generated")]
    assert "2.50 s of music for a 6.0" in excluded[("short", "generated")]  # not scored against all 5 cuts
    assert report["clips"] == {"paired": 7, "scored": 4, "excluded": 4}

    settings = report["settings"]
    assert len(settings["embedders"]["panns"]["sha256"]) == 64 and settings["seed"] == 0
    assert settings["cuts"]["threshold"] == 27.0 and settings["beats"]["hop_length"] == 256
    assert settings["resampler"]["library"] == "soxr"

    with (tmp_path / "r1" / "items.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert {r["clip_id"] for r in rows if r["metric"] == "kl"} == {"a", "b", "c", "still"}
    assert {r["clip_id"] for r in rows if r["metric"] == "excluded"} == {"silent", "nan", "lonely", "short"}
    md = (tmp_path / "r1" / "report.md").read_text()
    assert "| this run |" in md and "skipped" in md and "| nan | generated |" in md
    assert "## In the anchors' conventions" in md and "| BHS |" in md and "LORIS beats_scores.py" in md
    assert "(figures/beats_vs_cuts.png)" in md and "![" in md
    assert md in printed

    again, printed_again = _run(folders, tmp_path / "r2", capsys, monkeypatch)
    assert again["metrics"] == report["metrics"]  # two runs, the same numbers
    assert printed_again.replace("r2", "r1") == printed


def test_a_wrong_metric_name_is_refused(folders, tmp_path, capsys):
    rc = main(["evaluate", "--generated", str(folders["gen"]), "--reference", str(folders["ref"]),
               "--out", str(tmp_path), "--metrics", "fd,fad"])
    assert rc == 2 and "unknown metric" in capsys.readouterr().err


needs_imagebind = pytest.mark.skipif(importlib.util.find_spec("imagebind") is None,
                                     reason="imagebind-unofficial not installed")


def _tiny_imagebind(folders: dict[str, Path]) -> Path:
    from model.metrics.checkpoints import import_skipping_package_init
    from model.metrics.imagebind import ImageBindConfig

    path = folders["root"] / "imagebind_tiny.pth"
    if not path.exists():
        torch.manual_seed(1)
        mod = import_skipping_package_init("imagebind", "models.imagebind_model")
        torch.save(mod.ImageBindModel(**ImageBindConfig.tiny().model_kwargs).state_dict(), path)
    return path


@needs_imagebind
@pytest.mark.slow
def test_imagebind_scored_through_the_cli(folders, tmp_path, capsys):
    """A tiny ImageBindModel checkpoint through --imagebind: the flow's cosines equal ones computed here."""
    from flows.evaluation.inputs import imagebind_clips, probe_video
    from model.metrics.audio import resample
    from model.metrics.imagebind import AUDIO_RATE, ImageBindEmbedder

    ckpt = _tiny_imagebind(folders)
    out = tmp_path / "ib"
    rc = main(["evaluate", "--generated", str(folders["gen"]), "--reference", str(folders["ref"]),
               "--videos", str(folders["vid"]), "--out", str(out), "--imagebind", str(ckpt), "--metrics", "imagebind"])
    assert rc == 0
    capsys.readouterr()
    m = json.loads((out / "report.json").read_text())["metrics"]["imagebind"]

    emb = ImageBindEmbedder.load(ckpt)  # the architecture read from the checkpoint, as the flow does
    ids = ["a", "b", "c", "still"]  # the gate's survivors ("short" is 2.5 s of music for 6 s)
    audio, video = [], []
    for cid in ids:
        wav, sr = sf.read(folders["gen"] / f"{cid}.wav", dtype="float32")
        audio.append(emb.embed_audio(resample(wav, sr, AUDIO_RATE)))
        duration, fps, w, h = probe_video(folders["vid"] / f"{cid}.mp4")
        video.append(emb.embed_video(imagebind_clips(folders["vid"] / f"{cid}.mp4", duration, fps, (w, h), emb.config)))
    a, v = np.stack(audio), np.stack(video)  # [4, 8]
    cos = (v / np.linalg.norm(v, axis=1, keepdims=True)) @ (a / np.linalg.norm(a, axis=1, keepdims=True)).T  # [video, audio]
    assert m["n"] == 4
    assert m["value"] == pytest.approx(np.diag(cos).mean(), abs=1e-5)
    assert m["ci95"][0] <= m["value"] <= m["ci95"][1] and m["ci95"][0] < m["ci95"][1]
    assert m["chance"]["shuffled_pairs"] == pytest.approx(cos[~np.eye(4, dtype=bool)].mean(), abs=1e-5)
    assert "skipped" not in m


def test_rhythm_chance_cell_shows_the_closed_form_with_one_video():
    from flows.evaluation.evaluate import EvaluationReport
    from flows.evaluation.report import report_markdown
    from model.metrics.scores import MetricResult
    from model.metrics.stats import Interval

    rhythm = MetricResult("rhythm", value=0.5, n=1, ci=Interval(0.5, 0.5),
                          chance={"closed_form": 0.3925, "two_tau_beats_per_second": 0.4},
                          extra={"tolerance_s": 0.1, "n_cuts": 4, "precision": 0.2, "f1": 0.3,
                                 "excluded_stable_visuals": [], "rule": "fewer than 2 cuts per minute"})
    md = report_markdown(EvaluationReport({"rhythm": rhythm}, [], 1, 1, {}))
    chance_row = next(ln for ln in md.splitlines() if ln.startswith("| chance / shuffled |"))
    assert chance_row.split("|")[-2].strip() == "0.3925 (closed form)"


@needs_imagebind
def test_imagebind_frames_from_a_real_decode(folders):
    """The frames the flow decodes for ImageBind feed the tiny model: one embedding per video."""
    from flows.evaluation.inputs import imagebind_clips, probe_video
    from model.metrics.checkpoints import import_skipping_package_init
    from model.metrics.imagebind import ImageBindConfig, ImageBindEmbedder

    cfg = ImageBindConfig.tiny()
    model = import_skipping_package_init("imagebind", "models.imagebind_model").ImageBindModel(**cfg.model_kwargs)
    path = folders["root"] / "imagebind_tiny.pth"
    torch.save(model.state_dict(), path)
    emb = ImageBindEmbedder.load(path, cfg)
    duration, fps, w, h = probe_video(folders["vid"] / "a.mp4")
    clips = imagebind_clips(folders["vid"] / "a.mp4", duration, fps, (w, h), cfg)
    assert len(clips) == 5 and clips[0].shape == (2, h, w, 3)
    assert clips[0][0, 0, 0].tolist() == [254, 0, 0] or clips[0][0, 0, 0, 0] > 200  # the first scene is red
    assert emb.embed_video(clips).shape == (8,)


def test_clip_files_by_id(tmp_path):
    """Audio files first, a container's audio stream only where an id has no audio file; videos apart."""
    from flows.evaluation.inputs import list_clips

    for name in ("a.wav", "a.mp4", "b.mp4", "c.wav", "c.flac", ".hidden.wav", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    audio = list_clips(tmp_path, "generated")
    assert {k: [p.name for p in v] for k, v in audio.items()} == {"a": ["a.wav"], "b": ["b.mp4"],
                                                                  "c": ["c.flac", "c.wav"]}
    assert {k: [p.name for p in v] for k, v in list_clips(tmp_path, "video").items()} == {"a": ["a.mp4"], "b": ["b.mp4"]}
    with pytest.raises(FileNotFoundError, match="--videos"):
        list_clips(tmp_path / "missing", "video")


@pytest.mark.skipif(importlib.util.find_spec("torchvggish") is None or importlib.util.find_spec("hear21passt") is None,
                    reason="torchvggish or hear21passt not installed")
def test_fad_on_vggish_and_kl_on_passt_through_the_cli(folders, tmp_path, capsys, monkeypatch):
    from torchvggish import torchvggish as tv

    from model.metrics.passt import PasstConfig, build_passt

    torch.manual_seed(0)
    ckpt = tmp_path / "vggish-random.pth"  # torchvggish's own VGG class, random weights
    torch.save({k: v.half() for k, v in tv.VGG(tv.make_layers(), postprocess=False).state_dict().items()}, ckpt)
    passt = tmp_path / "passt-tiny.pt"  # hear21passt's own PaSST class, width 64, one block
    torch.save(build_passt(PasstConfig(embed_dim=64, depth=1, num_heads=1)).net.state_dict(), passt)
    monkeypatch.setenv("VIDMUSICIAN_VGGISH_CKPT", str(ckpt))  # from the environment, no flag
    rc = main(["evaluate", "--generated", str(folders["gen"]), "--reference", str(folders["ref"]),
               "--out", str(tmp_path / "r"), "--metrics", "fad_vggish,kl_passt,bcs_bhs", "--passt", str(passt)])
    assert rc == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    fad = report["metrics"]["fad_vggish"]
    assert fad["n"] == 5 and fad["value"] > 0 and fad["embedding_dim"] == 128  # a, b, c, still, short (no video)
    assert fad["frames_generated"] == 4 * 6 + 2 and fad["frames_real"] == 5 * 6  # 6.0 s → 6 frames; 2.5 s → 2
    assert "frechet_audio_distance" in fad["matches"] and report["settings"]["embedders"]["vggish"]["sha256"]
    anchors = {r["column"]: r for r in report["anchors"]}
    assert anchors["FAD (VGGish)"]["value"] == fad["value"]
    kl = report["metrics"]["kl_passt"]
    assert kl["n"] == 5 and kl["value"] > 0 and "av-benchmark" in kl["matches"]
    assert anchors["KL (PaSST)"]["value"] == kl["value"] and report["settings"]["embedders"]["passt"]["depth"] == 1
    assert "| FAD (VGGish) |" in (tmp_path / "r" / "report.md").read_text()
