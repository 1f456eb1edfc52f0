"""What every benchmark module returns, so ``python -m bench`` can tabulate them alike, and
the state of the checkout it measures."""

from __future__ import annotations

import compileall
from dataclasses import dataclass
from pathlib import Path

#: The checkout ``bench/`` sits in: its package (``margin_tune/`` and the folders it links to)
#: is the code measured, a ``git worktree`` of an older commit for a baseline, also when a sweep
#: runs in a scratch directory (:func:`bench.p1_sweep_vs_pool.sweep_env`).
CHECKOUT = Path(__file__).resolve().parent.parent
PACKAGE_FOLDERS = ("margin_tune", "pipeline", "trainables", "search_spaces")


def compile_package() -> int:
    """Write the bytecode of the checkout's package; the number of folders compiled.

    An installed package has its bytecode (pip compiles it), and Python writes it on the first
    import of an editable one, unless ``PYTHONDONTWRITEBYTECODE`` is set, as it is in this
    machine's environment. Then every process a command starts (the driver and each of Ray's
    trial workers) compiled margin_tune's modules from their source again: 0.7 s of a sweep's
    driver imports here (4.2 against 3.4 s), while the reference sides of the benchmarks (Ray,
    torch, a plain pool) import only compiled packages. ``compileall`` writes the bytecode
    whatever that variable says; ``margin_tune/``'s links to the other folders are compiled
    through the folders themselves (``compileall`` does not follow a linked folder).
    """
    return sum(bool(compileall.compile_dir(CHECKOUT / name, quiet=1)) for name in PACKAGE_FOLDERS)


@dataclass(frozen=True)
class Figure:
    """One row of ``bench/RESULTS.md``: the headline figure and how it was measured."""

    id: str
    what: str
    target: str
    value: str
    met: bool | None  # None when the target is "report" or the figure was not measured
    details: str
