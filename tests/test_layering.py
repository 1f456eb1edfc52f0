"""The direction of imports, written down: a wrong arrow fails here.

``trainables`` runs without Ray, MLflow or Optuna and never imports ``pipeline``. Inside
``pipeline``, each folder may import only the folders listed for it in :data:`ALLOWED`
(roughly: ``cli`` on top, then ``jobs``, ``sweep``, ``search``, ``analysis``, ``tracking``,
``outputs``, ``runtime`` at the bottom). No ``cli`` module imports another, except ``resume``,
which hands a directory to the command that wrote it.
"""

from __future__ import annotations

import ast
import pkgutil
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import margin_tune.pipeline
import margin_tune.trainables

FORBIDDEN = ("ray", "mlflow", "optuna")
FORBIDDEN_OWN = ("margin_tune.pipeline", "margin_tune.search_spaces")
PIPELINE = Path(margin_tune.pipeline.__file__).parent

#: Folder of pipeline/ → the folders of pipeline/ it may import (itself always allowed).
ALLOWED: dict[str, set[str]] = {
    "cli": {"jobs", "sweep", "search", "analysis", "tracking", "outputs", "runtime"},
    "jobs": {"sweep", "search", "analysis", "tracking", "outputs", "runtime"},
    "sweep": {"search", "analysis", "tracking", "outputs", "runtime"},
    "search": {"outputs", "runtime"},
    "analysis": {"tracking", "outputs", "runtime"},
    "tracking": {"outputs", "runtime"},
    "outputs": {"runtime"},
    "runtime": set(),
}
#: cli modules that may import another cli module (the dispatchers), and which.
CLI_DISPATCH = {"resume": {"tune", "compare", "ablate"}}


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports (``from a import b`` gives ``a`` and ``a.b``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def imported_roots(path: Path) -> set[str]:
    """Top-level packages imported, and margin_tune's own ones as ``margin_tune.<part>``."""
    roots = set()
    for name in imported_modules(path):
        parts = name.split(".")
        roots.add(".".join(parts[:2]) if parts[0] == "margin_tune" else parts[0])
    return roots


def pipeline_arrows(root: Path = PIPELINE) -> list[tuple[str, str, str]]:
    """(file, its folder, imported folder) for every import from one pipeline folder to another."""
    arrows = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if len(relative.parts) < 2:
            continue  # pipeline/__init__.py
        folder = relative.parts[0]
        for name in imported_modules(path):
            parts = name.split(".")
            if parts[:2] == ["margin_tune", "pipeline"] and len(parts) > 2:
                arrows.append((str(relative), folder, parts[2]))
    return arrows


def wrong_arrows(root: Path = PIPELINE) -> list[str]:
    wrong = []
    for file, folder, target in pipeline_arrows(root):
        if target == folder:
            continue
        if target not in ALLOWED.get(folder, set()):
            wrong.append(f"{file} imports pipeline.{target}")
    return sorted(set(wrong))


def cli_cross_imports(root: Path = PIPELINE) -> list[str]:
    wrong = []
    for path in sorted((root / "cli").glob("*.py")):
        for name in imported_modules(path):
            parts = name.split(".")
            if parts[:3] == ["margin_tune", "pipeline", "cli"] and len(parts) > 3:
                target = parts[3]
                if target in ("flags", "main") or target == path.stem:
                    continue
                if target not in CLI_DISPATCH.get(path.stem, set()):
                    wrong.append(f"cli/{path.name} imports cli.{target}")
    return sorted(set(wrong))


def test_every_pipeline_folder_has_a_rule() -> None:
    folders = {p.name for p in PIPELINE.iterdir() if (p / "__init__.py").is_file()}
    assert folders == set(ALLOWED)
    assert not [p.name for p in PIPELINE.glob("*.py") if p.name != "__init__.py"]


def test_pipeline_imports_go_one_way() -> None:
    assert wrong_arrows() == []
    assert cli_cross_imports() == []


@pytest.mark.parametrize(
    ("where", "line", "check", "expected"),
    [
        (
            "tracking/planted.py",
            "from margin_tune.pipeline.sweep import tuner\n",
            wrong_arrows,
            "tracking/planted.py imports pipeline.sweep",
        ),
        (
            "runtime/planted.py",
            "import margin_tune.pipeline.outputs.folders\n",
            wrong_arrows,
            "runtime/planted.py imports pipeline.outputs",
        ),
        (
            "cli/planted.py",
            "from margin_tune.pipeline.cli import tune\n",
            cli_cross_imports,
            "cli/planted.py imports cli.tune",
        ),
    ],
)
def test_a_planted_wrong_import_fails_the_rules(
    where: str, line: str, check: Callable[[Path], list[str]], expected: str, tmp_path: Path
) -> None:
    """The same checks on a copy of pipeline/ with one wrong arrow added."""
    copy = tmp_path / "pipeline"
    shutil.copytree(PIPELINE, copy)
    assert check(copy) == []
    (copy / where).write_text(line)
    assert check(copy) == [expected]


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
