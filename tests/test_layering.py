"""The direction of imports, written down: a wrong arrow or an import circle fails here.

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
    "cli": {"api", "jobs", "sweep", "search", "analysis", "tracking", "outputs", "runtime"},
    "api": {"jobs", "sweep", "search", "analysis", "tracking", "outputs", "runtime"},
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


#: The CLI's shared modules, which every command may import: its flags, its dispatcher and
#: what the run commands print at their end.
CLI_SHARED = ("flags", "main", "printing")


def cli_cross_imports(root: Path = PIPELINE) -> list[str]:
    wrong = []
    for path in sorted((root / "cli").glob("*.py")):
        for name in imported_modules(path):
            parts = name.split(".")
            if parts[:3] == ["margin_tune", "pipeline", "cli"] and len(parts) > 3:
                target = parts[3]
                if target in CLI_SHARED or target == path.stem:
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


def module_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module → the modules of ``package`` it imports (anywhere in it: a function-level or a
    TYPE_CHECKING import runs in a circle as much as a top-level one)."""
    modules = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join([package, *parts])] = path

    def resolve(name: str) -> str:
        while name and name not in modules:
            name = name.rsplit(".", 1)[0] if "." in name else ""
        return name

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target in imported_modules(path):
            found = resolve(target)
            if found and found != name:
                graph[name].add(found)
    return graph


def import_cycles(root: Path, package: str) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), sorted."""
    graph = module_graph(root, package)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(cycles)


TRAINABLES = Path(margin_tune.trainables.__file__).parent


@pytest.mark.parametrize(
    ("root", "package"),
    [(TRAINABLES, "margin_tune.trainables"), (PIPELINE, "margin_tune.pipeline")],
)
def test_no_import_circle(root: Path, package: str) -> None:
    assert import_cycles(root, package) == []


def test_a_planted_circle_is_found(tmp_path: Path) -> None:
    """config importing a registry again (as it did) closes a circle through every part."""
    copy = tmp_path / "trainables"
    shutil.copytree(TRAINABLES, copy)
    assert import_cycles(copy, "margin_tune.trainables") == []
    config = copy / "config.py"
    config.write_text(config.read_text() + "\nfrom margin_tune.trainables.data import DATASETS\n")
    (cycle,) = import_cycles(copy, "margin_tune.trainables")
    assert {"margin_tune.trainables.config", "margin_tune.trainables.data"} <= set(cycle)


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


def tag_literals(roots: list[Path]) -> list[str]:
    """``"margin_tune.<name>"`` strings (MLflow tag keys) in code, outside the vocabulary."""
    packages = ("margin_tune.pipeline", "margin_tune.trainables", "margin_tune.search_spaces")
    found = []
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if path.name == "vocabulary.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and node.value.startswith("margin_tune.")
                    and " " not in node.value
                    and not node.value.startswith(packages)
                ):
                    found.append(f"{path.name}:{node.lineno} {node.value}")
    return found


def test_every_tag_key_is_defined_once_in_the_vocabulary(tmp_path: Path) -> None:
    assert tag_literals([PIPELINE, TRAINABLES]) == []
    planted = tmp_path / "planted.py"
    planted.write_text('TAGS = {"margin_tune.stage": "final"}\n')
    assert tag_literals([tmp_path]) == ["planted.py:1 margin_tune.stage"]


#: Metric names that are also other words of the house: the ``margin`` config section, the
#: ``collapsed`` trial status, an ``epoch`` in Tune's own results, a paired test's ``pairs``.
#: A check by value cannot tell those uses apart, so it leaves these names out.
SHARED_WORDS = {"margin", "collapsed", "epoch", "pairs"}


def metric_literals(roots: list[Path]) -> list[str]:
    """Strings in code that spell a metric name or its ``val_`` / ``test_`` prefix, outside
    :mod:`margin_tune.trainables.metric_names`."""
    from margin_tune.trainables import metric_names as names

    evaluated = (*names.EVALUATION_METRICS, *names.COUNT_KEYS)
    spelled = {
        *names.EPOCH_COLUMNS,
        *evaluated,
        *(names.on_test(name) for name in evaluated),
        names.VALIDATION_PREFIX,
        names.TEST_PREFIX,
    } - SHARED_WORDS
    found = []
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if path.name == "metric_names.py":
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            exported = {
                id(element)
                for node in ast.walk(tree)
                if isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
                for element in ast.walk(node.value)
            }
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Constant)
                    and node.value in spelled
                    and id(node) not in exported
                ):
                    found.append(f"{path.name}:{node.lineno} {node.value}")
    return found


def test_every_metric_name_is_defined_once(tmp_path: Path) -> None:
    assert metric_literals([PIPELINE, TRAINABLES]) == []
    planted = tmp_path / "planted.py"
    planted.write_text(
        '__all__ = ["roc_auc"]\n'
        'best = row["val_roc_auc"]\n'
        'tested = {f"test_{name}" for name in NAMES}\n'
        'message = "val_roc_auc rose"\n'
    )
    assert metric_literals([tmp_path]) == ["planted.py:2 val_roc_auc", "planted.py:3 test_"]


def test_no_module_imports_a_private_name_of_another_package() -> None:
    """A private name (MLflow's ``_validate_*``, say) may change in any release."""
    found = []
    for root in (PIPELINE, TRAINABLES):
        for path in sorted(root.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.ImportFrom) and not (node.module or "").startswith(
                    "margin_tune"
                ):
                    found += [
                        f"{path.name}: {node.module}.{alias.name}"
                        for alias in node.names
                        if alias.name.startswith("_") and alias.name != "__version__"
                    ]
    assert found == []
