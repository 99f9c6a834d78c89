"""The evaluation gate's long-silence rule: generated music silent for more than --max-silence seconds in one
stretch (it passes the whole-file RMS check and would score Rhythm 0) is refused and listed like the other
exclusions; a silent stretch in the reference is not the generator's fault and is not refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from evaluate_media import clicks, grid, write_clicks  # tests/flows/, on pytest's path

from flows.cli import main
from model.metrics.gate import GateConfig, audio_problems, longest_silence_s, silence_problem

SR = 16000


def _music_then_silence(music_s: float, silence_s: float, sr: int = SR) -> np.ndarray:
    """Clicks every 0.5 s over a quiet 220 Hz tone for music_s seconds, then digital silence for silence_s."""
    tone = 0.05 * np.sin(2 * np.pi * 220.0 * np.arange(int(music_s * sr)) / sr)
    music = clicks(grid(0.25, 0.5, music_s), music_s, sr) + tone.astype(np.float32)
    return np.concatenate([music, np.zeros(int(silence_s * sr), np.float32)])


def test_longest_silence_measures_the_stretch_not_the_whole_file():
    x = _music_then_silence(12.0, 48.0)
    assert audio_problems(x[None], SR) == []  # the whole-file RMS check lets it through
    assert longest_silence_s(x, SR) == pytest.approx(48.0, abs=0.05)
    assert "silent for 48.0 s" in silence_problem(x, SR)
    gaps = np.concatenate([x[: 4 * SR], np.zeros(3 * SR, np.float32), x[: 4 * SR], np.zeros(5 * SR, np.float32),
                           x[: 2 * SR]])
    assert longest_silence_s(gaps, SR) == pytest.approx(5.0, abs=0.05)  # the longest run, not the sum (8 s)
    assert silence_problem(gaps, SR, GateConfig(max_silence_s=5.5)) is None
    assert silence_problem(gaps, SR, GateConfig(max_silence_s=4.5)) is not None
    assert silence_problem(x, SR, GateConfig(max_silence_s=None)) is None
    assert longest_silence_s(x[: 12 * SR], SR) == 0.0  # the music itself has no silent frame
    with pytest.raises(ValueError, match="max_silence_s"):
        GateConfig(max_silence_s=0)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("silence")
    gen, ref = root / "gen", root / "ref"
    gen.mkdir(), ref.mkdir()
    for i, cid in enumerate(("a", "b", "c")):
        write_clicks(gen / f"{cid}.wav", grid(0.5, 0.5, 8.0), 8.0, sr=SR, seed=i)
        write_clicks(ref / f"{cid}.wav", grid(0.25, 0.5, 8.0), 8.0, sr=SR, seed=10 + i)
    sf.write(gen / "gap.wav", _music_then_silence(2.0, 6.0), SR, subtype="FLOAT")  # 6 s of silence after 2 s
    write_clicks(ref / "gap.wav", grid(0.25, 0.5, 8.0), 8.0, sr=SR, seed=20)
    write_clicks(gen / "quietref.wav", grid(0.5, 0.5, 8.0), 8.0, sr=SR, seed=30)
    sf.write(ref / "quietref.wav", _music_then_silence(2.0, 6.0), SR, subtype="FLOAT")  # the reference's gap
    return {"gen": gen, "ref": ref}


def _evaluate(folders: dict[str, Path], out: Path, *extra: str) -> dict:
    rc = main(["evaluate", "--generated", str(folders["gen"]), "--reference", str(folders["ref"]),
               "--metrics", "bcs_bhs", "--out", str(out), *extra])
    assert rc == 0
    return json.loads((out / "report.json").read_text())


def test_generated_music_with_a_long_silence_is_excluded_through_the_cli(folders, tmp_path, capsys):
    report = _evaluate(folders, tmp_path / "r", "--max-silence", "4")
    excluded = {(e["clip_id"], e["role"]): e["reason"] for e in report["excluded"]}
    assert list(excluded) == [("gap", "generated")]  # the reference's silent stretch is not refused
    assert "gap.wav: silent for 6.0 s in one stretch" in excluded[("gap", "generated")]
    assert "--max-silence" in excluded[("gap", "generated")]
    assert report["clips"] == {"paired": 5, "scored": 4, "excluded": 1}
    assert report["settings"]["gate"]["max_silence_s"] == 4.0
    md = (tmp_path / "r" / "report.md").read_text()
    assert "| gap | generated | gap.wav: silent for 6.0 s" in md
    capsys.readouterr()

    lenient = _evaluate(folders, tmp_path / "r2", "--max-silence", "7")
    assert lenient["excluded"] == [] and lenient["clips"]["scored"] == 5
    off = _evaluate(folders, tmp_path / "r3", "--max-silence", "none")
    assert off["excluded"] == [] and off["settings"]["gate"]["max_silence_s"] is None


def test_a_bad_max_silence_is_refused(folders, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--generated", str(folders["gen"]), "--reference", str(folders["ref"]),
              "--out", str(tmp_path / "r"), "--max-silence", "-1"])
    assert "positive seconds" in capsys.readouterr().err
