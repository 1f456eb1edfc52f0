"""Coordinate descent over a search space, as a Ray Tune searcher.

The searcher keeps an incumbent: the best configuration evaluated so far. It optimises one
searched parameter at a time, holding the others at the incumbent's values, over a small batch
of candidates around the incumbent:

* a float parameter: the incumbent ± ``step`` in unit coordinates (the range mapped to [0, 1],
  in log space for ``log_uniform``), clipped to the bounds;
* an int parameter (a batch size's P or K): the same, rounded to the parameter's grid, and at
  least one grid step away, so it tries the neighbours once the step is finer than the grid;
* a categorical parameter: every other choice.

When the batch has finished it moves the incumbent to the batch's best if that is strictly
better (ties keep the incumbent), otherwise halves that parameter's step, and goes on with the
next parameter, cycling until Tune's budget ends. The very first batch also holds the start
point itself: the base config's value of each parameter when it lies in the space, else the
middle of the range (geometric middle for log scales) or the first choice.

A configuration already evaluated is never suggested again. When no parameter has a new
candidate even at the finest step (``MIN_STEP``), every neighbour of the incumbent has been
tried: the searcher answers ``FINISHED`` and the sweep ends before its budget.

Candidates of one batch are handed out one per ``suggest`` call, so ``max_concurrent_trials``
trials run at once; when the batch is handed out but results are pending, ``suggest`` answers
``None`` (Tune asks again later). Only a trial that trained the whole epoch budget counts with
its value: one stopped early (by ASHA or a collapse), an errored one and one without the metric
count as the worst value, as the sweep never picks them as its winner. Given the seed (which
orders the parameters) and the order results arrive in, the suggestions are deterministic;
``save``/``restore`` pickle the whole state, so a resumed sweep continues exactly where it
stopped.
"""

from __future__ import annotations

import math
import pickle
import random
from collections.abc import Mapping
from typing import Any

from ray.tune.search import Searcher

from margin_tune.pipeline.search.space import Parameter, SearchSpace

#: The first step, in unit coordinates: candidates a quarter of the range either side.
INITIAL_STEP = 0.25
#: The finest step: 1/64 of the range, four halvings below the first.
MIN_STEP = INITIAL_STEP / 16
Key = tuple[Any, ...]


class CoordinateSearch(Searcher):
    """Cyclic coordinate descent with shrinking steps; see the module docstring."""

    def __init__(
        self,
        space: SearchSpace,
        *,
        seed: int = 0,
        start: Mapping[str, Any] | None = None,
        epochs: int = 1,
    ) -> None:
        super().__init__(metric=space.metric, mode=space.mode)
        self.budget_epochs = epochs
        self.parameters = {p.path: p for p in space.searched}
        self.fixed = dict(space.fixed)
        order = sorted(self.parameters)
        random.Random(seed).shuffle(order)
        self.order = order
        self.incumbent = {
            path: _start_value(p, (start or {}).get(path)) for path, p in self.parameters.items()
        }
        self.incumbent_score: float | None = None
        self.steps = dict.fromkeys(self.parameters, INITIAL_STEP)
        self.coordinate = 0
        self.queue: list[dict[str, Any]] = []
        self.pending: dict[str, dict[str, Any]] = {}
        self.batch: list[dict[str, Any]] = []
        self.scores: dict[Key, float] = {}

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        """The space, metric and mode were given at construction; Tune's are not used."""
        return False

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if not self.queue and not self.pending and not self._next_batch():
            return Searcher.FINISHED  # type: ignore[return-value]  # Ray types it Optional[Dict]
        if not self.queue:
            return None
        candidate = self.queue.pop(0)
        self.pending[trial_id] = candidate
        return {**self.fixed, **candidate}

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        candidate = self.pending.pop(trial_id, None)
        if candidate is None:  # a trial Tune re-ran after a restore, already counted
            return
        self.scores[self._key(candidate)] = -math.inf if error else self._score(result)
        if not self.queue and not self.pending:
            self._close_batch()

    def get_state(self) -> dict[str, Any]:
        return {
            "order": list(self.order),
            "incumbent": dict(self.incumbent),
            "incumbent_score": self.incumbent_score,
            "steps": dict(self.steps),
            "coordinate": self.coordinate,
            "queue": list(self.queue),
            "pending": dict(self.pending),
            "batch": list(self.batch),
            "scores": dict(self.scores),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    def save(self, checkpoint_path: str) -> None:
        """Pickle the state, as Ray's own searchers do; the file lives in the sweep's output."""
        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self.get_state(), handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as handle:
            self.set_state(pickle.load(handle))

    @property
    def best(self) -> tuple[dict[str, Any], float | None]:
        """The incumbent and its score (the metric, negated when minimising)."""
        return dict(self.incumbent), self.incumbent_score

    def _score(self, result: Mapping[str, Any] | None) -> float:
        ran = (result or {}).get("epoch", (result or {}).get("training_iteration", 0))
        if int(ran) < self.budget_epochs:
            return -math.inf
        value = (result or {}).get(self.metric)
        if not isinstance(value, int | float) or math.isnan(value):
            return -math.inf
        return float(value) if self.mode == "max" else -float(value)

    def _key(self, values: Mapping[str, Any]) -> Key:
        return tuple(values[path] for path in self.order)

    def _next_batch(self) -> bool:
        """Queue the next parameter's new candidates; False when none is left anywhere.

        A parameter without a new candidate is narrowed and skipped; after enough skips every
        step is at ``MIN_STEP`` and a whole cycle without a candidate means the end.
        """
        levels = round(math.log2(INITIAL_STEP / MIN_STEP)) + 1
        for _ in range(len(self.order) * levels + 1):
            path = self.order[self.coordinate]
            values = [self.incumbent[path]] if self.incumbent_score is None else []
            values += _candidates(self.parameters[path], self.incumbent[path], self.steps[path])
            queue: list[dict[str, Any]] = []
            for value in values:
                candidate = {**self.incumbent, path: value}
                if self._key(candidate) not in self.scores and candidate not in queue:
                    queue.append(candidate)
            if queue:
                self.queue, self.batch = queue, list(queue)
                return True
            self._narrow(path)
            self._advance()
        return False

    def _close_batch(self) -> None:
        """Move to the batch's best; ties go to the earliest candidate, whatever arrived first."""
        path = self.order[self.coordinate]
        scored = [(candidate, self.scores[self._key(candidate)]) for candidate in self.batch]
        if self.incumbent_score is None:
            self.incumbent_score = self.scores[self._key(self.incumbent)]
        best, best_score = max(scored, key=lambda item: item[1])
        if best_score > self.incumbent_score:
            self.incumbent, self.incumbent_score = dict(best), best_score
        else:
            self._narrow(path)
        self.batch = []
        self._advance()

    def _narrow(self, path: str) -> None:
        self.steps[path] = max(MIN_STEP, self.steps[path] / 2)

    def _advance(self) -> None:
        self.coordinate = (self.coordinate + 1) % len(self.order)


def _start_value(parameter: Parameter, given: Any) -> Any:
    """The base config's value when the space can produce it, else the middle of the space."""
    if parameter.distribution == "categorical":
        return given if given in parameter.choices else parameter.choices[0]
    low, high = float(parameter.low or 0), float(parameter.high or 0)
    if isinstance(given, int | float) and not isinstance(given, bool) and low <= given <= high:
        return _snap(parameter, float(given))
    return _from_unit(parameter, 0.5)


def _candidates(parameter: Parameter, value: Any, step: float) -> list[Any]:
    """The values to try for one parameter around ``value``: below first, then above."""
    if parameter.distribution == "categorical":
        return [choice for choice in parameter.choices if choice != value]
    centre = _to_unit(parameter, value)
    found = []
    for direction in (-1, 1):
        unit = min(1.0, max(0.0, centre + direction * step))
        candidate = _from_unit(parameter, unit)
        if parameter.distribution == "int" and candidate == value:
            grid = parameter.step or 1
            candidate = value + direction * grid
            if not parameter.low <= candidate <= parameter.high:
                continue
        if candidate != value and candidate not in found:
            found.append(candidate)
    return found


def _is_log(parameter: Parameter) -> bool:
    return parameter.distribution == "log_uniform" or parameter.log


def _to_unit(parameter: Parameter, value: float) -> float:
    low, high = float(parameter.low or 0), float(parameter.high or 0)
    if _is_log(parameter):
        return math.log(value / low) / math.log(high / low)
    return (value - low) / (high - low)


def _from_unit(parameter: Parameter, unit: float) -> Any:
    low, high = float(parameter.low or 0), float(parameter.high or 0)
    if _is_log(parameter):
        return _snap(parameter, low * (high / low) ** unit)
    return _snap(parameter, low + unit * (high - low))


def _snap(parameter: Parameter, value: float) -> Any:
    """An int parameter's nearest grid point (``low + k·step`` within bounds); floats as is."""
    if parameter.distribution != "int":
        return value
    low, high, grid = int(parameter.low or 0), int(parameter.high or 0), parameter.step or 1
    snapped = low + grid * round((value - low) / grid)
    return min(max(snapped, low), low + grid * ((high - low) // grid))
