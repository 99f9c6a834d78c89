"""The world flow's backbone gate: a backbone that does not hold its classes' tempos stops the run after
pre-training, with what to do, before anything is curated or trained on it."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from flows.demos.world import SCALES, BackboneNotReady, run_world_demo


def test_world_flow_refuses_an_untrained_backbone_and_says_what_to_do(tmp_path):
    scale = replace(SCALES["small"], name="gate", videos_per_class=1, clip_s=4, pretrain_pieces_per_class=1,
                    pretrain_piece_s=4.0, pretrain_steps=1, pretrain_batch=2, tempo_check_per_class=1)
    said: list[str] = []
    with pytest.raises(BackboneNotReady, match=r"--pretrain-steps N above 1\b"):
        run_world_demo(tmp_path, scale, say=said.append)
    tempo = json.loads((tmp_path / "backbone" / "tempo.json").read_text())
    assert tempo["n"] == 3 and tempo["accuracy"] < scale.min_tempo_accuracy  # measured, recorded, below the gate
    assert tempo["sampling"]["cfg_coef"] == scale.cfg_coef and tempo["sampling"]["duration_s"] == scale.clip_s
    assert any("backbone tempo with its own class words" in line for line in said), said
    assert not (tmp_path / "world").exists()  # nothing curated, exported or trained on it

    # a re-run with more steps keeps the refused backbone aside and trains anew (nothing is lost)
    more = replace(scale, pretrain_steps=2)
    with pytest.raises(BackboneNotReady, match=r"above 2\b"):
        run_world_demo(tmp_path, more, say=said.append)
    kept = sorted(p.name for p in tmp_path.glob("backbone-1steps-*"))
    assert len(kept) == 1 and (tmp_path / kept[0] / "state_dict.bin").is_file()
    assert json.loads((tmp_path / "backbone" / "pretrain.json").read_text())["config"]["steps"] == 2


def test_world_rows_option_refuses_an_unknown_row_before_any_work(tmp_path, capsys):
    from flows.cli import main

    with pytest.raises(SystemExit, match=r"--rows: unknown \['fulll'\]; choose from full, no-t5"):
        main(["demo", "--world", "--rows", "fulll,no-rcm", "--root", str(tmp_path / "root")])
    assert not (tmp_path / "root" / "world-media").exists()  # refused before the world was built
