"""margin-tune as an installed package: one namespace, a version, a CLI that starts at once, and
no collision with a user's own ``pipeline.py`` / ``trainables.py`` / ``search_spaces/``.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

import margin_tune
from margin_tune.pipeline.cli.main import main
from margin_tune.pipeline.outputs.manifest import FORMAT_VERSION, MANIFEST_FILE, write_manifest

ROOT = Path(__file__).parents[1]
EXECUTABLE = Path(sys.executable).with_name("margin-tune")
FIXTURE = Path(__file__).parent / "fixtures" / "tune_output_format1"
HEAVY = ("torch", "ray", "mlflow", "optuna", "pandas", "matplotlib")


def _run(*argv: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=timeout)


def test_the_package_has_one_version_everywhere() -> None:
    assert margin_tune.__version__ == importlib.metadata.version("margin-tune")
    for command in ([str(EXECUTABLE)], [sys.executable, "-m", "margin_tune"]):
        done = _run(*command, "--version")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"margin-tune {margin_tune.__version__}"
    assert (Path(margin_tune.__file__).parent / "py.typed").is_file()


def test_the_process_entry_points_skip_the_last_full_collection() -> None:
    """``margin-tune`` and ``python -m margin_tune`` run ``command``, which freezes the heap
    once the command has returned (its exit code unchanged); ``main`` itself does not."""
    scripts = importlib.metadata.entry_points(group="console_scripts", name="margin-tune")
    assert [entry.value for entry in scripts] == ["margin_tune.pipeline.cli.main:command"]
    module = ast.parse((Path(margin_tune.__file__).parent / "__main__.py").read_text())
    assert "command" in {
        alias.name
        for node in ast.walk(module)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    code = (
        "import gc, sys\n"
        "from margin_tune.pipeline.cli.main import command, main\n"
        "print(main(['sync', 'no-such-dir']), gc.get_freeze_count())\n"
        "sys.argv = ['margin-tune', 'sync', 'no-such-dir']\n"
        "print(command(), gc.get_freeze_count() > 0)\n"
    )
    done = _run(sys.executable, "-c", code)
    assert done.stdout.split() == ["2", "0", "2", "True"], done.stderr


def _imported_by(argv: list[str]) -> tuple[list[str], list[str]]:
    """Heavy libraries and command modules in ``sys.modules`` after ``margin-tune ARGV``."""
    code = (
        "import sys\n"
        "from margin_tune.pipeline.cli.main import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
        "print(sorted(m.rsplit('.', 1)[-1] for m in sys.modules\n"
        "             if m.startswith('margin_tune.pipeline.cli.') and not m.endswith('.main')))\n"
    )
    done = _run(sys.executable, "-c", code)
    assert done.returncode == 0, done.stderr
    heavy, commands = done.stdout.strip().splitlines()[-2:]
    return ast.literal_eval(heavy), ast.literal_eval(commands)


def test_help_and_version_import_no_command_and_no_heavy_library() -> None:
    for argv in (["--help"], ["--version"]):
        assert _imported_by(argv) == ([], [])


@pytest.mark.parametrize("command", ["report", "ui"])
def test_report_and_ui_start_without_torch_ray_or_optuna(command: str) -> None:
    heavy, commands = _imported_by([command, "--help"])
    assert not {"torch", "ray", "optuna"} & set(heavy), heavy
    assert commands == [command]  # only the command that runs is imported


def test_manifests_record_the_version_that_wrote_them(tmp_path: Path) -> None:
    write_manifest(tmp_path, "tune", {"name": "x"})
    content = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert content["format"] == FORMAT_VERSION
    assert content["margin_tune_version"] == margin_tune.__version__


@pytest.mark.parametrize("command", ["resume", "sync"])
def test_an_output_folder_from_before_the_namespace_is_refused_in_one_line(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The committed fixture was written by the last version with top-level modules."""
    old = tmp_path / "old"
    shutil.copytree(FIXTURE, old)
    before = {p: p.read_bytes() for p in old.rglob("*") if p.is_file()}
    assert main([command, str(old)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1
    assert error[0].startswith("margin-tune: error: DIR: ")
    assert "before 0.2.0" in error[0] and "cannot be resumed" in error[0]
    assert {p: p.read_bytes() for p in old.rglob("*") if p.is_file()} == before
    assert "sys.modules" not in error[0]


def test_the_code_never_imports_itself_by_its_folder_names() -> None:
    """From the repository root, where ``pipeline/`` is importable as a folder, nothing does."""
    bare = [
        str(path.relative_to(ROOT))
        for folder in ("pipeline", "trainables", "search_spaces", "tests", "bench")
        for path in (ROOT / folder).rglob("*.py")
        if any(
            line.lstrip().startswith(f"{verb} {name}")
            and line.lstrip()[len(verb) + 1 + len(name) : len(verb) + 2 + len(name)] in " ."
            for line in path.read_text().splitlines()
            for verb in ("import", "from")
            for name in ("pipeline", "trainables", "search_spaces")
        )
    ]
    assert bare == []


def test_mypy_checks_the_installed_names_and_can_fail(tmp_path: Path) -> None:
    """A copy of the package (links resolved) with one planted error across the namespace."""
    mypy = shutil.which("mypy", path=str(Path(sys.executable).parent))
    if mypy is None:
        pytest.skip("mypy is not installed (the [dev] extra)")
    shutil.copytree(ROOT / "margin_tune", tmp_path / "margin_tune", symlinks=False)
    (tmp_path / "margin_tune" / "pipeline" / "planted.py").write_text(
        "from margin_tune.pipeline.runtime.exit_codes import EXIT_BAD_INPUT\n\n"
        "name: str = EXIT_BAD_INPUT\n"
    )
    config = str(ROOT / "pyproject.toml")  # the project's settings, run on the copy
    done = _run(mypy, "--config-file", config, "--no-incremental", cwd=tmp_path, timeout=600)
    assert done.returncode == 1, done.stdout + done.stderr
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1 and errors[0].startswith("margin_tune/pipeline/planted.py:3:"), errors
    assert 'has type "int", variable has type "str"' in errors[0]


USER_SPACE = """\
parameters:
  margin.initial_margin: {distribution: uniform, low: 0.1, high: 0.3}
"""


@pytest.mark.slow
def test_a_user_folder_with_its_own_pipeline_trainables_and_search_spaces(
    tmp_path: Path, tiny_overrides: list[str]
) -> None:
    """Ray puts the driver's folder on every worker's path: these must not shadow margin-tune."""
    user = tmp_path / "project"
    (user / "search_spaces").mkdir(parents=True)
    trap = "raise ImportError('the user\\'s own {0} was imported instead of margin-tune\\'s')\n"
    (user / "pipeline.py").write_text(trap.format("pipeline.py"))
    (user / "trainables.py").write_text(trap.format("trainables.py"))
    (user / "search_spaces" / "__init__.py").write_text(trap.format("search_spaces"))
    (user / "search_spaces" / "mine.yaml").write_text(USER_SPACE)
    sets = [item for o in [*tiny_overrides, "train.epochs=2"] for item in ("--set", o)]
    command = [str(EXECUTABLE), "tune", "--space", "search_spaces/mine.yaml", "--trials", "2"]
    command += [*sets, "--concurrency", "1", "--no-early-stopping", "--out", "sweep"]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=user,
        timeout=600,
        env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 trials: 2 completed" in done.stdout
    assert "instead of margin-tune" not in done.stdout + done.stderr


#: What a sweep's run needs and its input check does not (Ray Tune: ~1 s, MLflow: ~1.2 s,
#: pandas), imported while Ray starts rather than before it.
RUN_ONLY = ("ray.tune", "mlflow", "pandas", "sklearn")


@pytest.mark.parametrize(
    ("job", "store"),
    [("tune", "given"), ("tune", "default"), ("compare", "given"), ("ablate", "given")],
)
def test_a_sweep_starts_ray_before_it_imports_ray_tune_mlflow_or_pandas(
    job: str, store: str, tmp_path: Path, tiny_overrides: list[str]
) -> None:
    """The input is checked (config, space, options, store, output folder, the probe trials;
    for a comparison every split and method's, for an ablation every cell's trial) with torch,
    Optuna and Ray's core only; Ray's start then begins, and the run's modules are imported
    while it comes up. The process stops where Ray would start: nothing runs.
    MLflow's default store is asked of MLflow itself, so without ``--tracking-uri`` the check
    imports MLflow (and only then). Stopping there also shows that a checked input has started
    nothing before that point: the process ends at once, with no daemon to stop."""
    sets = [item for o in [*tiny_overrides, "train.epochs=2"] for item in ("--set", o)]
    store_flags = (
        ["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"] if store == "given" else []
    )
    job_flags = {
        "tune": ["tune", "--space", "constant", "--trials", "2"],
        "compare": ["compare", "--preset", "quick", "--trials", "2"],
        "ablate": ["ablate", "--grid", "schedulers", "--seeds", "1"],
    }[job]
    code = textwrap.dedent(
        f"""
        import os, sys
        from margin_tune.pipeline.sweep import session

        def begin(self):
            print(sorted(m for m in {RUN_ONLY!r} if m in sys.modules), flush=True)
            os._exit(0)

        session._Start.begin = begin
        from margin_tune.pipeline.cli.main import main
        main([*{job_flags!r}, "--out", {str(tmp_path / "sweep")!r}, *{store_flags!r}, *{sets!r}])
        print("Ray was never started", flush=True)
        """
    )
    done = _run(sys.executable, "-c", code, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    imported = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    if store == "given":
        assert imported == []
    else:  # MLflow, with the pandas it imports; still no Ray Tune before Ray starts
        assert "mlflow" in imported and "ray.tune" not in imported, imported


@pytest.mark.slow
def test_a_sweep_imports_no_module_twice(tmp_path: Path, tiny_overrides: list[str]) -> None:
    """Run from the repository root, the driver holds margin_tune.* and no bare ``pipeline``."""
    sets = [f"{o}" for o in [*tiny_overrides, "train.epochs=2"]]
    code = textwrap.dedent(
        f"""
        import sys
        from margin_tune.pipeline.cli.main import main
        argv = ["tune", "--space", "constant", "--trials", "2", "--concurrency", "1",
                "--no-early-stopping", "--out", {str(tmp_path / "sweep")!r},
                "--tracking-uri", {f"sqlite:///{tmp_path / 'mlflow.db'}"!r}]
        for item in {sets!r}:
            argv += ["--set", item]
        code = main(argv)
        roots = ("pipeline", "trainables", "search_spaces")
        print("BARE", sorted(m for m in sys.modules if m.split(".")[0] in roots))
        print("OURS", len([m for m in sys.modules if m.startswith("margin_tune.")]))
        sys.exit(code)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = {
        line.split(" ", 1)[0]: line.split(" ", 1)[1]
        for line in done.stdout.splitlines()
        if line.startswith(("BARE ", "OURS "))
    }
    assert lines["BARE"] == "[]"
    assert int(lines["OURS"]) > 30


def _requirement_name(requirement: str) -> str:
    """``ray[tune]>=2.60,<3`` → ``ray``, normalised as PEP 503 does."""
    name = re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> tuple[dict[str, str], dict[str, list[str]]]:
    """The project's dependencies (name → requirement) and its extras (name → requirements)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    required = {_requirement_name(r): r for r in project["dependencies"]}
    return required, project["optional-dependencies"]


def third_party_imports(roots: list[Path]) -> dict[str, set[str]]:
    """Top-level names of the modules the code imports that are not its own or the standard
    library's, each with where it is imported: ``module`` (at import time) or ``function``."""
    found: dict[str, set[str]] = {}
    for root in roots:
        for path in root.rglob("*.py"):
            tree = ast.parse(path.read_text(), filename=str(path))
            at_top = {id(node) for node in tree.body}
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top != "margin_tune":
                        found.setdefault(top, set()).add(
                            "module" if id(node) in at_top else "function"
                        )
    return found


def _distributions(module: str) -> set[str]:
    """The installed distributions that provide ``module`` (``mlflow``: mlflow, mlflow-skinny).

    An extra's module need not be installed in the venv running the tests (torchvision lives in
    a venv of its own, see .ci/run): then its import name stands for its distribution's, which
    holds for every extra declared, and an undeclared one still fails below."""
    names = importlib.metadata.packages_distributions().get(module, [module])
    return {_requirement_name(n) for n in names}


def test_every_import_is_a_declared_dependency(tmp_path: Path) -> None:
    """Imported at import time: a required dependency. Imported inside a function: required or
    an extra (``optuna_dashboard`` is found, never imported). Nothing undeclared."""
    required, extras = _declared()
    optional = {_requirement_name(r) for group in extras.values() for r in group}
    roots = [ROOT / folder for folder in ("margin_tune", "pipeline", "trainables", "search_spaces")]
    problems = []
    for module, where in sorted(third_party_imports(roots).items()):
        provided_by = _distributions(module)
        if provided_by & required.keys():
            continue
        if provided_by & optional and where == {"function"}:
            continue
        problems.append(f"{module} ({provided_by}, imported in a {'/'.join(sorted(where))})")
    assert problems == []
    # Every required dependency is used: an unused one is weight every user installs.
    used = {name for module in third_party_imports(roots) for name in _distributions(module)}
    assert sorted(set(required) - used) == []
    planted = tmp_path / "planted"
    planted.mkdir()
    (planted / "uses.py").write_text(
        "import requests\n\ndef f():\n    import pytorch_metric_learning\n"
    )
    assert third_party_imports([planted]) == {
        "requests": {"module"},
        "pytorch_metric_learning": {"function"},
    }


def test_ci_installs_the_lower_bounds_it_declares() -> None:
    """CI tests the oldest versions pyproject.toml allows: the constraints pin each lower bound,
    and .ci/run installs torch at its bound."""
    required, extras = _declared()
    pins = dict(
        line.split("==")
        for line in (ROOT / ".ci" / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    declared = [*required.values(), *(r for group in extras.values() for r in group)]
    bounds = {
        _requirement_name(r): found[1] for r in declared if (found := re.search(r">=([0-9.]+)", r))
    }
    for name in ("torch", "ray", "mlflow", "optuna"):
        assert re.search(r"<\d", required[name]), f"{name} has no upper bound"
    assert f"torch=={bounds['torch']}" in (ROOT / ".ci" / "run").read_text()
    for name in required.keys() - {"torch"}:
        assert pins.get(name) == bounds[name], name
    for name, version in pins.items():
        assert bounds[_requirement_name(name)] == version, name
    assert "-c .ci/constraints.txt" in (ROOT / ".ci" / "run").read_text()
