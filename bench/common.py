"""What every benchmark module returns, so ``python -m bench`` can tabulate them alike."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    """One row of ``bench/RESULTS.md``: the headline figure and how it was measured."""

    id: str
    what: str
    target: str
    value: str
    met: bool | None  # None when the target is "report" or the figure was not measured
    details: str
