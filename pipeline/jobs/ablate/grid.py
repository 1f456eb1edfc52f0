"""Ablation grids: YAML data → validated factors → the cells of a factorial design.

A grid file names config paths and their levels; a level may carry factors of its own, which
then vary only in that level's cells (a scheduler's parameters under that scheduler)::

    metric: val_map_at_r
    seeds: 3
    factors:
      margin.scheduler:
        dams:
          margin.target_easy_ratio: [0.9, 0.95]
          margin.step_size: [0.02, 0.05]
        linear:
          margin.rate: [0.005, 0.02]
        constant: {}
      miner.name: [all, semihard]

gives (4 + 2 + 1) × 2 = 14 cells, each run with training seeds 0..seeds−1. Every cell is
checked against the trial config when the file is loaded; a factor that varies a scheduler's
parameter in cells of a scheduler without it (cells that would repeat one another) is refused.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from margin_tune.pipeline.search.space import DEFAULT_METRIC, apply_overrides
from margin_tune.trainables.config import Config, config_fields, read_yaml
from margin_tune.trainables.errors import ConfigError, quote
from margin_tune.trainables.metric_names import TEST_PREFIX, TUNABLE_METRICS, best_mode
from margin_tune.trainables.parts import config_from_dict
from margin_tune.trainables.schedulers import SCHEDULERS

#: What a grid ranks its cells by: a validation column at the trial's last epoch. Test metrics
#: are reported beside it for every cell but never rank or pick one: choosing the best cell by
#: its test value would select on the data the table is meant to test on.
DEFAULT_SEEDS = 3
#: Most training seeds a grid may run each cell with (``seeds`` in the file, or ``--seeds``).
MAX_SEEDS = 1_000
#: Most cells a grid may have, counted from its factors' levels before any cell is built.
MAX_CELLS = 10_000
_KEYS = ("description", "metric", "mode", "seeds", "factors")
SCHEDULER_PATH = "margin.scheduler"


@dataclass(frozen=True)
class Level:
    """One value of a factor, and the factors that vary only where the factor takes it."""

    value: Any
    factors: tuple[Factor, ...] = ()


@dataclass(frozen=True)
class Factor:
    """A config path and its levels."""

    path: str
    levels: tuple[Level, ...]


@dataclass(frozen=True)
class Cell:
    """One point of the design: the factor values it sets, in the grid file's order, and the
    trial config they give over the grid's base config."""

    values: Mapping[str, Any]
    label: str
    config: Config


@dataclass(frozen=True)
class AblationGrid:
    """A validated grid: its factors, cells, the metric summarised and training seeds."""

    name: str
    factors: tuple[Factor, ...]
    cells: tuple[Cell, ...]
    metric: str
    mode: Literal["max", "min"]
    seeds: int
    source: Path | None = None
    description: str = ""

    @property
    def factor_paths(self) -> list[str]:
        """Every factor's path, each once, in the file's order (a nested one after its parent)."""
        return list(dict.fromkeys(_paths(self.factors)))

    def cell(self, label: str) -> Cell:
        return next(cell for cell in self.cells if cell.label == label)


def packaged_grids() -> dict[str, Path]:
    """Name (file stem) to path of every grid shipped in ``search_spaces/grids``."""
    root = resources.files("margin_tune.search_spaces") / "grids"
    return {
        Path(entry.name).stem: Path(str(entry))
        for entry in root.iterdir()
        if entry.name.endswith(".yaml")
    }


def load_grid(spec: str | Path, base: Config, *, seeds: int | None = None) -> AblationGrid:
    """Read and validate a grid file (or a packaged grid's name); ``seeds`` overrides the file."""
    path = Path(spec)
    if not (path.is_file() or path.suffix in (".yaml", ".yml")):
        packaged = packaged_grids()
        if str(spec) not in packaged:
            raise ConfigError(
                "--grid",
                f"{str(spec)!r} is neither a file nor a packaged grid; packaged: "
                f"{', '.join(sorted(packaged))}",
            )
        path = packaged[str(spec)]
    data = read_yaml(path, field_name="--grid")
    return parse_grid(data, base, name=path.stem, source=path, seeds=seeds)


def parse_grid(
    data: Any,
    base: Config,
    *,
    name: str,
    source: Path | None = None,
    seeds: int | None = None,
) -> AblationGrid:
    if not isinstance(data, Mapping):
        raise ConfigError("grid", f"must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise ConfigError(f"grid.{unknown[0]}", f"unknown key; allowed: {', '.join(_KEYS)}")
    metric = data.get("metric", DEFAULT_METRIC)
    if isinstance(metric, str) and metric.startswith(TEST_PREFIX):
        raise ConfigError(
            "grid.metric",
            f"{metric!r} is a test metric: cells are ranked on validation classes, and test "
            f"metrics are reported for every cell without ranking; allowed: "
            f"{', '.join(TUNABLE_METRICS)}",
        )
    if metric not in TUNABLE_METRICS:
        raise ConfigError(
            "grid.metric", f"unknown metric {metric!r}; allowed: {', '.join(TUNABLE_METRICS)}"
        )
    mode = data.get("mode", best_mode(metric))
    if mode not in ("max", "min"):
        raise ConfigError("grid.mode", f"unknown value {mode!r}; allowed: max, min")
    seed_count = data.get("seeds", DEFAULT_SEEDS) if seeds is None else seeds
    field_name = "grid.seeds" if seeds is None else "--seeds"
    if not isinstance(seed_count, int) or isinstance(seed_count, bool) or seed_count < 1:
        raise ConfigError(field_name, f"must be an integer >= 1, got {quote(seed_count)}")
    if seed_count > MAX_SEEDS:
        raise ConfigError(field_name, f"must be <= {MAX_SEEDS:,}, got {quote(seed_count)}")
    factors = _parse_factors(data.get("factors"), "grid.factors", ())
    cell_count = _count_cells(factors)
    if cell_count > MAX_CELLS:
        raise ConfigError(
            "grid.factors",
            f"the levels give {cell_count:,} cells, above the limit of {MAX_CELLS:,}; vary fewer "
            "factors or fewer levels",
        )
    cells = _checked_cells(_points(factors), base)
    return AblationGrid(
        name=name,
        factors=factors,
        cells=cells,
        metric=metric,
        mode=mode,
        seeds=seed_count,
        source=source,
        description=str(data.get("description", "")),
    )


def _parse_factors(raw: Any, field: str, enclosing: tuple[str, ...]) -> tuple[Factor, ...]:
    """Factors at one nesting level; ``enclosing`` are the paths already set by outer levels."""
    if not isinstance(raw, Mapping) or (not raw and not enclosing):
        raise ConfigError(field, "must be a non-empty mapping of config path → levels")
    known = config_fields()
    factors = []
    for path, spec in raw.items():
        here = f"{field}.{path}"
        if path not in known:
            raise ConfigError(here, f"unknown config path; known: {', '.join(sorted(known))}")
        if path in enclosing:
            raise ConfigError(here, "already set by an enclosing factor; a path varies once")
        factors.append(Factor(str(path), _parse_levels(spec, here, (*enclosing, str(path)))))
    return tuple(factors)


def _parse_levels(spec: Any, field: str, enclosing: tuple[str, ...]) -> tuple[Level, ...]:
    if isinstance(spec, list):
        levels = tuple(Level(value) for value in spec)
    elif isinstance(spec, Mapping):
        levels = tuple(
            Level(value, _parse_factors(nested or {}, f"{field}.{value}", enclosing))
            for value, nested in spec.items()
        )
    else:
        raise ConfigError(
            field,
            "must be a list of levels, or a mapping of level → the factors that vary only "
            f"at that level; got {type(spec).__name__}",
        )
    if not levels:
        raise ConfigError(field, "needs at least one level")
    if len(levels) > MAX_CELLS:  # each level gives a cell at least: the grid is too large
        raise ConfigError(
            field, f"has {len(levels):,} levels, above the limit of {MAX_CELLS:,} cells a grid has"
        )
    seen = [repr(level.value) for level in levels]
    repeated = sorted({text for text in seen if seen.count(text) > 1})
    if repeated:
        raise ConfigError(field, f"level {repeated[0]} is listed twice")
    return levels


def _count_cells(factors: tuple[Factor, ...]) -> int:
    """How many points :func:`_points` gives, counted without building them."""
    return math.prod(
        sum(_count_cells(level.factors) for level in factor.levels) for factor in factors
    )


def _points(factors: tuple[Factor, ...]) -> list[dict[str, Any]]:
    """The full factorial of ``factors``, each level's own factors crossed in under it."""
    points: list[dict[str, Any]] = [{}]
    for factor in factors:
        points = [
            {**point, factor.path: level.value, **below}
            for point in points
            for level in factor.levels
            for below in _points(level.factors)
        ]
    return points


def _paths(factors: tuple[Factor, ...]) -> list[str]:
    return [
        path
        for factor in factors
        for path in (
            factor.path,
            *(nested for level in factor.levels for nested in _paths(level.factors)),
        )
    ]


def _label(values: Mapping[str, Any]) -> str:
    """``dams target_easy_ratio=0.9 miner=semihard``: the scheduler bare, a ``name`` by its
    section, other paths by their last part unless two factors share it."""
    tails = [path.rsplit(".", 1)[-1] for path in values]
    parts = []
    for path, value in values.items():
        section, _, tail = path.rpartition(".")
        text = str(value)  # shortest round-trip form: distinct floats keep distinct labels
        if path == SCHEDULER_PATH:
            parts.append(text)
        elif tail == "name":
            parts.append(f"{section}={text}")
        else:
            parts.append(f"{tail if tails.count(tail) == 1 else path}={text}")
    return " ".join(parts) or "base"


def _checked_cells(points: list[dict[str, Any]], base: Config) -> tuple[Cell, ...]:
    """The cells of ``points``, each a valid trial that varies only what its scheduler has and
    gives a config no other cell gives."""
    scheduler_parameters = {
        parameter for name in SCHEDULERS.names() for parameter in SCHEDULERS.get(name).parameters
    }
    seen: dict[str, str] = {}
    cells = []
    for point in points:
        label = _label(point)
        try:
            config = apply_overrides(base, point)
        except ConfigError as error:
            raise ConfigError(
                "grid.factors", f"cell '{label}' gives an invalid trial: {error}"
            ) from None
        own = SCHEDULERS.get(config.margin.scheduler).parameters
        for path in point:
            section, _, parameter = path.partition(".")
            if section == "margin" and parameter in scheduler_parameters and parameter not in own:
                having = [n for n in SCHEDULERS if parameter in SCHEDULERS.get(n).parameters]
                raise ConfigError(
                    f"grid.factors.{path}",
                    f"is a parameter of {', '.join(having)} only, but varies in cells where "
                    f"margin.scheduler is {config.margin.scheduler}, which would repeat one "
                    f"another; nest it under that scheduler: "
                    f"margin.scheduler: {{{having[0]}: {{{path}: [...]}}}}",
                )
        key = repr(config.to_dict())
        if key in seen:
            raise ConfigError(
                "grid.factors",
                f"cells '{seen[key]}' and '{label}' give the same trial config",
            )
        seen[key] = label
        cells.append(Cell(point, label, config))
    return tuple(cells)


#: The copy of the grid file an ablation directory keeps, so ``resume`` and ``sync`` never
#: depend on a file outside it.
GRID_COPY = "grid.yaml"


def load_ablation_grid(out: Path, manifest: dict[str, Any]) -> AblationGrid:
    """The grid an ablation directory ran, from its copy of the grid file."""
    base = config_from_dict(manifest["base"])
    grid = load_grid(out / GRID_COPY, base, seeds=manifest["seeds"])
    return dataclasses.replace(grid, name=manifest["grid_name"])
