"""What ran, where: the tags every run margin-tune opens carries, read once per process.

MLflow's own ``mlflow.source.*`` tags fill the UI's Source column: the command (or the script
that called the API), ``LOCAL``, and the git commit of margin-tune's own checkout. Beside
them, ours: the whole command line, margin-tune's version, its commit and whether that tree
had uncommitted changes, the versions of Python and of the libraries a result depends on, and
the host.

The commit is margin-tune's only when margin-tune runs from a git checkout of itself (an
editable install): the package's ``__init__.py`` must be a file that work tree tracks. A
wheel installed into a virtual environment inside the user's own repository sits in that
repository's tree, but untracked, so no commit is recorded for it rather than the user's.
"""

from __future__ import annotations

import functools
import getpass
import platform
import shlex
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import margin_tune
from margin_tune.pipeline.runtime.secrets import redact_uri
from margin_tune.pipeline.tracking.vocabulary import (
    COMMAND_TAG,
    GIT_COMMIT_TAG,
    GIT_DIRTY_TAG,
    HOST_TAG,
    RESUMED_BY_PREFIX,
    VERSION_TAG,
    VERSIONS_PREFIX,
)

#: margin-tune's distribution name, as its pyproject.toml declares it.
DISTRIBUTION = "margin-tune"
#: The distributions whose versions a result depends on.
LIBRARIES = ("torch", "ray", "optuna", "mlflow", "numpy")
#: What ``margin_tune.git_commit`` says where margin-tune does not run from its checkout.
NO_CHECKOUT = "none: not run from a git checkout of margin-tune"
#: The package's own ``__init__.py`` as imported (not resolved: in a checkout, ``pipeline/``
#: is linked into ``margin_tune/``, and only ``margin_tune/__init__.py`` is margin-tune's).
_PACKAGE_FILE = Path(margin_tune.__file__ or "__init__.py")


def _git(*args: str, cwd: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], capture_output=True, text=True, cwd=cwd, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def own_checkout(package_file: Path = _PACKAGE_FILE) -> tuple[str, bool | None] | None:
    """(commit, dirty) of the git work tree that tracks margin-tune's own ``__init__.py``;
    None where no work tree tracks it (a wheel, wherever it is installed); dirty is None
    where ``git status`` did not answer."""
    where = package_file.parent
    if _git("ls-files", "--error-unmatch", package_file.name, cwd=where) is None:
        return None
    # Tracked, but by whose repository? margin-tune's own has the package at its top level
    # beside the pyproject.toml that names it; a copy vendored into another repository
    # (its pyproject names another project, or the package sits deeper) is not ours.
    top = _git("rev-parse", "--show-toplevel", cwd=where)
    if top is None or Path(top).resolve() != where.resolve().parent:
        return None
    if not _declares_margin_tune(Path(top) / "pyproject.toml"):
        return None
    commit = _git("rev-parse", "HEAD", cwd=where)
    if not commit:
        return None
    changes = _git("status", "--porcelain", "--untracked-files=no", cwd=where)
    return commit, None if changes is None else bool(changes)


def _declares_margin_tune(pyproject: Path) -> bool:
    import tomllib

    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return bool(project.get("name") == DISTRIBUTION)


def source_name(argv: list[str] | None = None) -> str:
    """``margin-tune compare`` for a command; the script's path for a script; ``python``."""
    args = sys.argv if argv is None else argv
    program = Path(args[0]).name if args and args[0] else ""
    own_main = bool(args and args[0]) and Path(args[0]).parent.name == "margin_tune"
    if program == "margin-tune" or (program == "__main__.py" and own_main):
        command = next((arg for arg in args[1:] if not arg.startswith("-")), "")
        return f"margin-tune {command}".strip()
    if args and args[0] and Path(args[0]).is_file():
        return str(Path(args[0]).resolve())
    return "python"


#: MLflow keeps a tag value of at most this many characters (``MAX_TAG_VAL_LENGTH``).
MAX_TAG_LENGTH = 8000


def command_line(argv: list[str] | None = None) -> str:
    """The command as a user would type it again: ``margin-tune compare --preset quick …``
    for the CLI (whatever path started it), the script's path and its arguments for a script,
    ``python`` for an interpreter without one. A password in a store URI (``--tracking-uri
    http://u:pw@host`` or ``--storage=postgresql://…``) is shown as ``***``."""
    args = sys.argv if argv is None else argv
    program = source_name(args)
    if program == "python":
        return program
    head = "margin-tune" if program.startswith("margin-tune") else program
    shown = shlex.join([head, *(_redacted(arg) for arg in args[1:])])
    if len(shown) > MAX_TAG_LENGTH:
        shown = shown[: MAX_TAG_LENGTH - 1] + "…"
    return shown


def _redacted(arg: str) -> str:
    flag, equals, value = arg.partition("=")
    if equals and flag.startswith("--"):
        return f"{flag}={redact_uri(value)}"
    return redact_uri(arg)


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


@functools.cache
def provenance_tags() -> dict[str, str]:
    """The tags (see the module's docstring), computed once per process."""
    checkout = own_checkout()
    tags = {
        "mlflow.source.type": "LOCAL",
        "mlflow.source.name": source_name(),
        "mlflow.user": _user(),
        VERSION_TAG: _version(DISTRIBUTION),
        GIT_COMMIT_TAG: checkout[0] if checkout else NO_CHECKOUT,
        HOST_TAG: socket.gethostname(),
        COMMAND_TAG: command_line(),
        f"{VERSIONS_PREFIX}python": platform.python_version(),
        **{f"{VERSIONS_PREFIX}{name}": _version(name) for name in LIBRARIES},
    }
    if checkout is not None:
        tags["mlflow.source.git.commit"] = checkout[0]
        dirty = checkout[1]
        tags[GIT_DIRTY_TAG] = "unknown" if dirty is None else "true" if dirty else "false"
    return tags


def reopening_tags(tags: dict[str, str]) -> dict[str, str]:
    """The tags a run that already exists gets when it is opened again (a resumed command):
    the others as given, but this process's provenance under ``resumed_by.``, so that what
    created the run, and its results, stays what its tags say."""
    own = provenance_tags()
    return {
        (RESUMED_BY_PREFIX + key if key in own and value == own[key] else key): value
        for key, value in tags.items()
    }


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return "unknown"
