"""The house by job: flows/ and model/ are folders of jobs, command modules import no circle, and the
evaluation's orchestration builds no network of its own (its maths and embedders live in model.metrics)."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[1]
JOBS = {"curation", "dataset", "training", "evaluation", "cluster", "demos", "commands"}
SHARED = {"__init__.py", "cli.py", "config.py", "progress.py", "settings.py", "prefect_server.py"}


def test_flows_top_holds_only_the_shared_modules_and_the_job_folders():
    top = {p.name for p in (REPO / "flows").iterdir() if p.name != "__pycache__"}
    assert top == SHARED | JOBS


def test_model_top_holds_the_model_and_training_and_metrics_are_folders():
    top = {p.stem for p in (REPO / "model").glob("*.py")}
    assert top == {"__init__", "config", "ablation", "backbone", "semantic", "rhythm", "vidmusician", "generation",
                   "longform"}
    assert (REPO / "model" / "training" / "step.py").is_file()
    assert (REPO / "model" / "metrics" / "scores.py").is_file()


def test_no_command_module_reaches_back_to_one_that_imports_it():
    graph = grimp.build_graph("flows")
    commands = sorted(m for m in graph.find_children("flows.commands"))
    assert len(commands) >= 10
    circles = [(a, b) for a in commands for b in commands
               if a < b and graph.find_shortest_chain(a, b) and graph.find_shortest_chain(b, a)]
    assert circles == []


def test_flows_evaluation_defines_no_torch_module():
    """Evaluation lists files, decodes through pipeline and calls model.metrics: no nn.Module of its own."""
    for path in (REPO / "flows" / "evaluation").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names]
                module = getattr(node, "module", None) or ""
                assert not module.startswith("torch.nn") and "torch.nn" not in names, f"{path.name} imports torch.nn"
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(b) for b in node.bases]
                assert not any("Module" in b for b in bases), f"{path.name}: class {node.name}({bases})"
