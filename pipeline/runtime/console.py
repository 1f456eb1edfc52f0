"""How much a running command says, and where: one setting per command.

A sweep of 16 trials used to print Ray's result table for every trial (about 45 lines each)
and every library's INFO log. Now a command says, by default, one line when a trial ends and,
on a terminal, keeps one progress bar over the trials; ``-q`` leaves only the final summary and
the paths; ``-v`` brings back Ray's own reporting and the libraries' INFO logs. The CLI sets
the console from its flags; a script sets it with :func:`margin_tune.verbosity`. When the
stream is not a terminal (a pipe, a file, CI), what is written is plain lines: no bar, no
carriage return, no colour.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO

from margin_tune.trainables.errors import ConfigError

#: How much a command says: the final summary only, progress lines, or everything.
VERBOSITIES = ("quiet", "normal", "verbose")

#: The logger the progress lines also go to (the log file has them; the console does not
#: print them twice).
PROGRESS_LOGGER = "margin_tune.pipeline.progress"

_logger = logging.getLogger(PROGRESS_LOGGER)


@dataclass(frozen=True)
class Console:
    """Where progress goes (``stream``, default stdout at the time of writing) and how much.

    ``--json`` keeps stdout for the one JSON document: its console writes to stderr.
    """

    verbosity: str = "normal"
    stream: TextIO | None = None

    def __post_init__(self) -> None:
        if self.verbosity not in VERBOSITIES:
            raise ConfigError(
                "verbosity",
                f"unknown value {self.verbosity!r}; allowed: {', '.join(VERBOSITIES)}",
            )

    @property
    def out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stdout

    @property
    def quiet(self) -> bool:
        return self.verbosity == "quiet"

    @property
    def verbose(self) -> bool:
        return self.verbosity == "verbose"

    @property
    def live(self) -> bool:
        """A progress bar redrawn in place: only on a terminal, and not beside Ray's own
        reporting (``-v``), which would tear it."""
        return self.verbosity == "normal" and is_terminal(self.out)

    @property
    def ray_verbose(self) -> int:
        """Ray Tune's ``RunConfig(verbose=…)``: its status tables only under ``-v``."""
        return 1 if self.verbose else 0

    def say(self, line: str) -> None:
        """One progress line (unless quiet), above a live bar; always into the log."""
        _logger.info(line)
        if self.quiet:
            return
        if self.live:
            from tqdm import tqdm

            tqdm.write(line, file=self.out)
        else:
            print(line, file=self.out, flush=True)


def is_terminal(stream: TextIO) -> bool:
    """A terminal that can redraw a line (not ``TERM=dumb``)."""
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):  # a closed or odd stream
        return False


_CURRENT = Console()


def current() -> Console:
    """The console of the command (or script block) running now."""
    return _CURRENT


@contextmanager
def using(console: Console) -> Iterator[Console]:
    """Make ``console`` the current one for the block."""
    global _CURRENT
    previous, _CURRENT = _CURRENT, console
    try:
        yield console
    finally:
        _CURRENT = previous


@contextmanager
def verbosity(level: str = "normal", *, stream: TextIO | None = None) -> Iterator[Console]:
    """``with margin_tune.verbosity("quiet"): margin_tune.tune(...)``: how much the runs in
    the block print (``quiet``, ``normal``, ``verbose``), and to which stream."""
    with using(Console(level, stream)) as console:
        yield console
