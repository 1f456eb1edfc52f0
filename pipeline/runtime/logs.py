"""The logs of a command: every library's records through one place, the console shown only
what its verbosity asks for, the whole of it in the output directory's ``margin-tune.log``.

Ray, MLflow and Optuna each install their own stderr handler when imported (and stop
propagation), so each prints its INFO lines whatever the application wants: "A new study
created in memory", "Creating initial MLflow database tables", Ray's token notice. For the
length of a command, :func:`routed` takes those handlers off, lets the records propagate to the
root logger, shows the console WARNING and above (INFO too under ``-v``), and puts everything
back afterwards, so a test or a notebook that calls the CLI in-process keeps its own setup.
Libraries do not configure logging: only the CLI calls :func:`routed`; the API leaves logging
to its caller.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from margin_tune.pipeline.runtime.console import PROGRESS_LOGGER, Console

#: The full log of the commands that ran in an output directory (appended by ``resume``).
LOG_FILE = "margin-tune.log"

#: Loggers that the libraries give their own handlers; routed to the root for a command.
LIBRARY_LOGGERS = ("ray", "mlflow", "optuna", "alembic", "sqlalchemy.engine", "huey")

#: Notices that say a default is in place, shown only under ``-v`` (the file has them):
#: Ray's "Token authentication is enabled for this Ray cluster" on every local start, and its
#: "Remote file not found: .../result.json" when population-based training restarts a member
#: that has not written its results file yet (the file is written with its next result).
QUIET_NOTICES = (
    "Token authentication is enabled for this Ray cluster",
    "Remote file not found:",
)

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _ConsoleFilter(logging.Filter):
    """What the console handler leaves out: progress lines (the console printed them
    already) and, unless verbose, the notices of :data:`QUIET_NOTICES`."""

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == PROGRESS_LOGGER or record.name.startswith(PROGRESS_LOGGER + "."):
            return False
        if not self.verbose and record.levelno < logging.ERROR:
            message = record.getMessage()
            return not any(message.startswith(notice) for notice in QUIET_NOTICES)
        return True


@contextmanager
def routed(console: Console) -> Iterator[None]:
    """Route every library's records to the root logger for the block; show the console
    WARNING and above (``-v``: INFO and above) on stderr; restore all of it at the end."""
    unset = "MLFLOW_CONFIGURE_LOGGING" not in os.environ
    if unset:  # MLflow's documented switch, for an mlflow imported during the command
        os.environ["MLFLOW_CONFIGURE_LOGGING"] = "false"
    saved = []
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.propagate, logger.level))
        logger.handlers = []
        logger.propagate = True
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            logger.setLevel(logging.INFO)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)  # one line per query
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.INFO if console.verbose else logging.WARNING)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(_ConsoleFilter(console.verbose))
    root_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(root_level)
        for logger, handlers, propagate, level in saved:
            logger.handlers, logger.propagate = handlers, propagate
            logger.setLevel(level)
        if unset:
            os.environ.pop("MLFLOW_CONFIGURE_LOGGING", None)


@contextmanager
def log_file(directory: Path) -> Iterator[Path]:
    """Append what the root logger receives to ``directory/margin-tune.log`` for the block.

    What reaches it is what the root logger passes: under the CLI (:func:`routed`) every
    library's INFO and the progress lines, whatever the console shows; in a script, what the
    script's own logging setup lets through.
    """
    path = directory / LOG_FILE
    handler = logging.FileHandler(path, mode="a", encoding="utf-8", delay=True)
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        handler.close()
