"""`vidmusician generate` end to end on tiny videos with a debug checkpoint: wav + mp4, failures listed, seeds."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf
import torch

from flows.cli import main
from flows.training.generate import GenerateConfig, GenerateError, Generator, VideoJob, jobs_for_export
from model.config import VidMusicianConfig
from model.training.checkpoint import save_trainable
from model.vidmusician import VidMusician
from pipeline.media import ffprobe_json, run_ffmpeg
from pipeline.mux import video_track

TINY_CLIP_D = 32  # the built-in 'tiny' CLIP's embedding width


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _video(dest: Path, duration: float, rate: str = "30000/1001", audio: bool = True) -> Path:
    args = ["-f", "lavfi", "-i", f"testsrc2=size=64x48:rate={rate}:duration={duration}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={duration}", "-c:a", "aac"]
    run_ffmpeg([*args, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(dest)], stage="test")
    return dest


def _packets(path: Path) -> str:
    out = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(path), "-map", "0:v:0", "-c", "copy",
                          "-f", "framemd5", "-"], capture_output=True, text=True, check=True).stdout
    return "\n".join(",".join(ln.split(",")[2:]) for ln in out.splitlines() if ln and not ln.startswith("#"))


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("gen-media")
    corrupt = d / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(500))
    audio_only = d / "audio_only.m4a"
    run_ffmpeg(["-f", "lavfi", "-i", "sine=duration=3", "-c:a", "aac", str(audio_only)], stage="test")
    return {"long": _video(d / "long.mp4", 3.3), "other": _video(d / "other.mp4", 1.6, rate="25"),
            "short": _video(d / "short.mp4", 0.5), "corrupt": corrupt, "audio_only": audio_only}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = VidMusician.from_config(VidMusicianConfig.debug(clip_dim=TINY_CLIP_D), seed=0)
    with torch.no_grad():  # weights away from the identity init, as after training
        for p in model.trainable_state().values():
            p.add_(0.05 * torch.randn_like(p))
    return save_trainable(model, tmp_path_factory.mktemp("ckpt") / "model.pt")


def _argv(ckpt: Path, out: Path, *extra: str) -> list[str]:
    return ["generate", "--checkpoint", str(ckpt), "--out", str(out), "--clip-model", "tiny",
            "--window", "2", "--stride", "1", "--top-k", "50", *extra]


@pytest.mark.slow
def test_cli_writes_wav_and_mp4_lists_failures_and_repeats_with_the_seed(media, checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    videos = [media[k] for k in ("long", "corrupt", "short", "audio_only", "other")]
    rc = main(_argv(checkpoint, out, *map(str, videos), "--seed", "5"))
    printed = capsys.readouterr().out
    assert rc == 1  # some videos failed; the others were done
    assert "3 window(s)" in printed  # 3.3 s in 2 s windows every 1 s
    assert "2 of 5 video(s) done" in printed
    for name, why in (("corrupt", "not a readable media file"), ("short", "at least 1 s"),
                      ("audio_only", "no video stream")):
        line = next(ln for ln in printed.splitlines() if ln.startswith(f"FAILED  {name}"))
        assert why in line, line
    for key in ("long", "other"):
        video = media[key]
        dur = video_track(ffprobe_json(video, stage="test")).duration_s
        wav, sr = sf.read(out / f"{key}.wav", dtype="float32")
        assert sr == 32000 and wav.shape == (round(dur * 32000),)  # exactly the video's duration
        assert abs(wav).max() > 0
        mp4 = out / f"{key}.mp4"
        assert _packets(mp4) == _packets(video)  # the picture untouched
        streams = ffprobe_json(mp4, stage="test")["streams"]
        assert [s["codec_type"] for s in streams] == ["video", "audio"]
        assert abs(float(streams[1]["duration"]) - dur) < 1 / 25
    assert not (out / "corrupt.wav").exists() and not (out / "short.mp4").exists()

    cache = sorted((out / ".features").iterdir())
    assert len(cache) == 2  # one cached entry per good video, by content hash
    stamp = [p.stat().st_mtime_ns for p in cache]
    again = tmp_path / "again"
    rc = main(_argv(checkpoint, again, str(media["long"]), "--seed", "5", "--no-mux",
                    "--cache", str(out / ".features")))
    assert rc == 0
    assert [p.stat().st_mtime_ns for p in cache] == stamp  # features came from the cache
    assert torch.equal(torch.from_numpy(sf.read(again / "long.wav", dtype="float32")[0]),
                       torch.from_numpy(sf.read(out / "long.wav", dtype="float32")[0]))  # same seed, same music
    assert not (again / "long.mp4").exists()
    rc = main(_argv(checkpoint, tmp_path / "seed6", str(media["long"]), "--seed", "6", "--no-mux",
                    "--cache", str(out / ".features")))
    assert rc == 0
    assert not (sf.read(tmp_path / "seed6" / "long.wav")[0] == sf.read(out / "long.wav")[0]).all()


def test_bad_checkpoints_and_settings_are_refused_with_a_reason(media, checkpoint, tmp_path, capsys):
    rc = main(_argv(tmp_path / "missing.pt", tmp_path / "o", str(media["long"])))
    assert rc == 2 and "no such checkpoint" in capsys.readouterr().err

    other_width = save_trainable(VidMusician.from_config(VidMusicianConfig.debug(clip_dim=16)), tmp_path / "d16.pt")
    rc = main(_argv(other_width, tmp_path / "o", str(media["long"])))
    err = capsys.readouterr().err
    assert rc == 2 and "width 16" in err and "gives 32" in err

    pkg = torch.load(checkpoint, weights_only=True)
    name = next(iter(pkg["state"]))
    pkg["state"][name] = torch.zeros(3, 3)  # weights of another shape: another backbone or config
    tampered = tmp_path / "tampered.pt"
    torch.save(pkg, tampered)
    rc = main(_argv(tampered, tmp_path / "o", str(media["long"])))
    err = capsys.readouterr().err
    assert rc == 2 and "cannot load checkpoint" in err and name in err

    rc = main(_argv(checkpoint, tmp_path / "o", str(media["long"]), "--window", "3", "--stride", "3"))
    assert rc == 2 and "stride" in capsys.readouterr().err
    rc = main(_argv(checkpoint, tmp_path / "o"))
    assert rc == 2 and "VIDEO files or --export" in capsys.readouterr().err
    cfg = GenerateConfig(checkpoint=checkpoint, out_dir=tmp_path / "o", clip_model="tiny", window_s=2, stride_s=1,
                         duration_s=9.0)
    res = Generator.load(cfg).run(VideoJob("other", media["other"]))
    assert not res.ok and "longer than the video" in res.error


def _export(tmp_path: Path, media: dict[str, Path]) -> Path:
    root = tmp_path / "root"
    clips = root / "clips"
    clips.mkdir(parents=True)
    export = root / "exports" / "demo"
    (export / "audio").mkdir(parents=True)
    rows = []
    for clip_id, split, key in (("aaa-00000", "test", "long"), ("bbb-00000", "train", "other"),
                                ("ccc-00060", "test", "other")):
        target = clips / f"{clip_id}.mp4"
        target.symlink_to(media[key])
        (export / "audio" / f"{clip_id}.mp4").symlink_to(target)
        rows.append({"clip_id": clip_id, "split": split, "path": f"clips/{clip_id}.mp4"})
    pd.DataFrame(rows).to_parquet(export / "manifest.parquet", index=False)
    return export


def test_export_split_is_generated_by_clip_id(media, checkpoint, tmp_path, capsys):
    export = _export(tmp_path, media)
    assert [j.name for j in jobs_for_export(export, "test")] == ["aaa-00000", "ccc-00060"]
    with pytest.raises(GenerateError, match="splits: test, train"):
        jobs_for_export(export, "valid")
    out = tmp_path / "gen"
    rc = main(_argv(checkpoint, out, "--export", str(export), "--split", "test", "--duration", "1.0"))
    assert rc == 0, capsys.readouterr()
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["aaa-00000.mp4", "aaa-00000.wav", "ccc-00060.mp4",
                                                      "ccc-00060.wav"]
    assert sf.info(out / "aaa-00000.wav").frames == 32000  # --duration: the first second
    streams = ffprobe_json(out / "aaa-00000.mp4", stage="test")["streams"]  # the rest of the picture is silent
    assert abs(float(streams[1]["duration"]) - float(streams[0]["duration"])) < 1 / 25


def _without_pictures(src: Path, dest: Path, drop: str) -> Path:
    """``src``'s streams copied, the video packets dropped by the noise filter (``drop``: "key" or "1" = all)."""
    run_ffmpeg(["-i", str(src), "-map", "0:v", "-map", "0:a", "-c", "copy", "-bsf:v", f"noise=drop={drop}",
                str(dest)], stage="test")
    return dest


@pytest.mark.slow
def test_videos_without_a_decodable_frame_fail_alone(media, checkpoint, tmp_path, capsys):
    """A video track whose packets decode no frame, and one with no packets at all: each listed, the rest done."""
    no_key = _without_pictures(media["long"], tmp_path / "no_key.mp4", "key")  # P-frames only: nothing decodes
    empty = _without_pictures(media["long"], tmp_path / "empty_track.mkv", "1")  # a video track of 0 packets
    assert [s["codec_type"] for s in ffprobe_json(empty, stage="test")["streams"]] == ["video", "audio"]
    out = tmp_path / "out"
    rc = main(_argv(checkpoint, out, str(no_key), str(empty), str(media["other"]), "--no-mux"))
    printed = capsys.readouterr().out
    assert rc == 1 and "1 of 3 video(s) done" in printed
    for name, why in (("no_key", "0 frames"), ("empty_track", "cannot decode its video")):
        line = next(ln for ln in printed.splitlines() if ln.startswith(f"FAILED  {name}"))
        assert why in line, line
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["other.wav"]


def test_generate_takes_the_clip_model_the_checkpoint_records(tmp_path):
    """train records the features' CLIP in the checkpoint's config: `generate --checkpoint CK` alone loads it."""
    from dataclasses import replace

    model = VidMusician.from_config(VidMusicianConfig.debug(clip_dim=TINY_CLIP_D))
    model.config = replace(model.config, clip_model="tiny")
    ckpt = save_trainable(model, tmp_path / "recorded.pt")
    gen = Generator.load(GenerateConfig(checkpoint=ckpt, out_dir=tmp_path / "o"))
    assert gen.cfg.clip_model == "tiny" and gen.cfg.clip_pretrained is None and gen.encoder.embed_dim == TINY_CLIP_D
    unrecorded = save_trainable(VidMusician.from_config(VidMusicianConfig.debug(clip_dim=TINY_CLIP_D)), tmp_path / "old.pt")
    with pytest.raises(GenerateError, match="ViT-L-14"):  # an older checkpoint: the old default, offline -> refused
        Generator.load(GenerateConfig(checkpoint=unrecorded, out_dir=tmp_path / "o"))
