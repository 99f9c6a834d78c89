"""The command line as a user meets it: a reader that goes away, defaults that come from the configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from dvmset.records import SourceStatus
from dvmset.tables import Source
from flows.cli import build_parser
from flows.commands.curate import config_from_args as curate_config
from flows.commands.features import config_from_args as features_config
from flows.curation.curate import CurateConfig
from flows.dataset.features import FeaturesConfig


def test_status_json_into_head_exits_quietly(data_root, catalog):
    """``vidmusician status --json | head -1``: far more output than a pipe holds, the reader leaves after
    one line; the command ends without a BrokenPipeError traceback."""
    with catalog.session() as s:
        s.add_all(Source(id=f"v{i:05d}", url=f"https://example.invalid/{i}", status=SourceStatus.FAILED,
                         stage="download", error="HTTP Error 404: Not Found " + "x" * 200) for i in range(2000))
    cmd = f"{sys.executable} -m flows.cli status --root {data_root.path} --json | head -1; echo rc=${{PIPESTATUS[0]}}"
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert proc.stdout.splitlines()[0] == "{"
    assert proc.stderr == "", proc.stderr  # no traceback, no "Exception ignored ... BrokenPipeError"
    assert proc.stdout.splitlines()[-1] == "rc=141"  # as a tool killed by SIGPIPE
    full = subprocess.run([sys.executable, "-m", "flows.cli", "status", "--root", str(data_root.path), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert full.returncode == 0 and len(json.loads(full.stdout)["failed_sources"]) == 2000



def test_a_mistyped_root_is_an_error_that_creates_nothing(tmp_path: Path, data_root, catalog):
    """`status`, `export`, `review` ... read a catalog: on a --root without one they say so and make no
    empty data root there (a typo once showed "sources: none" and left dvm-dta/ behind)."""
    typo = tmp_path / "dvm-dta"
    env = {k: v for k, v in os.environ.items() if k != "VIDMUSICIAN_DB"}
    for argv in (["status"], ["export", "--name", "x"], ["annotators", "list"]):
        proc = subprocess.run([sys.executable, "-m", "flows.cli", *argv, "--root", str(typo)], env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0 and f"no catalog in {typo}" in proc.stderr, (argv, proc.stderr)
        assert "Traceback" not in proc.stderr and not typo.exists(), argv
    ok = subprocess.run([sys.executable, "-m", "flows.cli", "status", "--root", str(data_root.path)], env=env,
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "sources: none" in ok.stdout, ok.stdout + ok.stderr

def test_unset_options_keep_the_config_defaults():
    parser = build_parser()
    args = parser.parse_args(["curate", "--url", "u"])
    assert curate_config(args) == CurateConfig()
    args = parser.parse_args(["curate", "--url", "u", "--separator", "none", "--clip-seconds", "30", "--workers", "2"])
    assert curate_config(args) == CurateConfig(separator="none", clip_seconds=30.0, workers=2)
    assert features_config(parser.parse_args(["features"])) == FeaturesConfig()
    tiny = features_config(parser.parse_args(["features", "--clip-model", "tiny", "--retry-failed"]))
    assert tiny == FeaturesConfig(clip_model="tiny", retry_failed=True) and tiny.pretrained is None



def test_train_and_review_defaults_are_the_dataclasses():
    """`train` with only --data/--out is the TrainRun and TrainConfig defaults (on a CPU: fp32); `review`
    follows the catalog's review policy unless told what to expect."""
    from flows.commands.train import _run
    from flows.training.run import TrainRun
    from model.training.config import TrainConfig

    parser = build_parser()
    args = parser.parse_args(["train", "--data", "d", "--out", "o", "--device", "cpu", "--no-progress"])
    assert _run(args) == TrainRun(data=Path("d"), out=Path("o"), recipe=TrainConfig(stage=1, precision="fp32"))
    review = parser.parse_args(["review"])
    assert (review.overlap, review.lease_seconds) == (None, None)  # the catalog's policy, QueuePolicy() when unset

def test_every_command_module_is_registered():
    """A module under flows/commands/ that defines register() but is missing from COMMAND_MODULES is a
    command nobody can run (lineage and takedown were, once)."""
    import ast

    from flows.cli import COMMAND_MODULES

    commands = Path(__file__).resolve().parents[2] / "flows" / "commands"
    defining = {f"flows.commands.{p.stem}" for p in commands.glob("*.py")
                if any(isinstance(n, ast.FunctionDef) and n.name == "register" for n in ast.parse(p.read_text()).body)}
    assert defining, "no command modules found"
    assert defining <= set(COMMAND_MODULES), sorted(defining - set(COMMAND_MODULES))
