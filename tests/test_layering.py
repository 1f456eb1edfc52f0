"""The direction of imports: ``trainables`` runs without Ray or MLflow."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import margin_tune.trainables

FORBIDDEN = ("ray", "mlflow", "optuna")
FORBIDDEN_OWN = ("margin_tune.pipeline", "margin_tune.search_spaces")


def imported_roots(path: Path) -> set[str]:
    """Top-level packages imported, and margin_tune's own ones as ``margin_tune.<part>``."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            roots.add(".".join(parts[:2]) if parts[0] == "margin_tune" else parts[0])
    return roots


def test_no_trainables_source_imports_ray_mlflow_or_the_pipeline() -> None:
    root = Path(margin_tune.trainables.__file__).parent
    offenders = {
        str(path.relative_to(root)): sorted(imported_roots(path) & {*FORBIDDEN, *FORBIDDEN_OWN})
        for path in root.rglob("*.py")
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_importing_every_trainables_module_loads_no_ray_or_mlflow() -> None:
    modules = [
        info.name
        for info in pkgutil.walk_packages(
            margin_tune.trainables.__path__, prefix="margin_tune.trainables."
        )
    ]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert len(modules) > 20
    assert output.strip() == "[]"
