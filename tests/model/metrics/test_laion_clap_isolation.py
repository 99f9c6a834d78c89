"""`import audiocraft` never runs laion_clap's package __init__ (which, with webdataset, braceexpand and wget
installed, loads a BERT tokenizer from the Hub and fails offline): importing model/ first registers
laion_clap as a bare namespace; the CLAP metric still imports laion_clap's model code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("laion_clap.clap_module.htsat")  # laion_clap installed (no-deps), as the metric needs

PROBE = """
import os
import sys
import model  # what every entry point that reaches audiocraft goes through
import audiocraft, audiocraft.models, audiocraft.metrics
from model.metrics.clap import ClapAudioConfig, build_audio_tower
ran_init = hasattr(sys.modules["laion_clap"], "CLAP_Module") or "laion_clap.hook" in sys.modules
print("init ran" if ran_init else "init skipped", type(build_audio_tower(ClapAudioConfig.tiny())).__name__)
print("NUMBA_CACHE_DIR", os.environ.get("NUMBA_CACHE_DIR", "unset"))  # laion_clap's pann_model sets it to /tmp/
print("pann_model", "imported" if "laion_clap.clap_module.pann_model" in sys.modules else "not imported")
"""


def test_importing_audiocraft_after_model_skips_laion_claps_init_and_the_metric_still_builds(tmp_path):
    # Stand-ins for the packages whose presence made laion_clap's __init__ reach the Hub last round: an
    # importable wget (the real one downloads; this one refuses), so nothing here stops that __init__ early.
    (tmp_path / "wget.py").write_text("def download(*args, **kwargs):\n    raise OSError('offline')\n")
    env = {**{k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}, "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(Path.cwd()), str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["init", "skipped", "ClapAudioTower", "NUMBA_CACHE_DIR", "unset", "pann_model",
                                  "imported"], out.stdout  # the import ran pann_model, and its env change was undone
