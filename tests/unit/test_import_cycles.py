"""No import cycles among the project's modules.

The import graph comes from `ruff analyze graph` (the linter we already run), which records every import, also
those inside functions, so a lazy import that closes a circle counts; `graphlib` (standard library) finds a cycle.
A circle means two modules cannot be understood, tested or moved apart: the service contract lives in a leaf
(`services/contract.py`) so the service modules, the registry and the runner depend on it and not on each other.
"""

from __future__ import annotations

import graphlib
import json
import subprocess
import sys
from pathlib import Path

from pipeline.settings import REPO_ROOT

RUFF = Path(sys.executable).parent / "ruff"


def import_graph(root: Path) -> dict[str, list[str]]:
    done = subprocess.run(
        [str(RUFF), "analyze", "graph", "."], cwd=root, capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(done.stdout)


def first_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        return error.args[1]
    return None


def test_the_project_has_no_import_cycle():
    graph = import_graph(REPO_ROOT)
    assert "services/runner.py" in graph and "services/registry.py" in graph["services/runner.py"]
    cycle = first_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_a_lazy_import_that_closes_a_circle_is_found(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "runner.py").write_text("def main():\n    from pkg import registry\n")
    (package / "registry.py").write_text("from pkg.service import SERVICE\n")
    (package / "service.py").write_text("from pkg.runner import main\nSERVICE = main\n")
    cycle = first_cycle(import_graph(tmp_path))
    assert cycle is not None
    assert set(cycle) == {"pkg/runner.py", "pkg/registry.py", "pkg/service.py"}
