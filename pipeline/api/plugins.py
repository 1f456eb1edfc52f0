"""``margin_tune.register``: a scheduler, miner, sampler, loss, dataset, model or searcher of
the user's own, under a name a config (or ``--searcher``) can use, without forking.

Two ways, for two lifetimes:

- from a script or notebook, ``margin_tune.register("scheduler", "plateau", PlateauMargin)``
  (or as a decorator): for this process, and shipped to the workers of every sweep it starts;
- from an installed package, an entry point in the group ``margin_tune.<role>s``, which every
  process finds, ``margin-tune`` commands and ``resume`` in a new shell included::

      [project.entry-points."margin_tune.schedulers"]
      plateau = "my_package.schedulers:PlateauMargin"

What a part must provide is its role's protocol (``MarginScheduler``, ``TripletMiner``, ...);
README "Adding a part, end to end" says what each takes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

from margin_tune.pipeline.search.searchers import SEARCHERS
from margin_tune.trainables.parts import REGISTRIES
from margin_tune.trainables.registry import Registry

T = TypeVar("T")

#: Every registry a user may add to, by role.
ROLES: dict[str, Registry[Any]] = {**REGISTRIES, "searcher": SEARCHERS}


@overload
def register(role: str, name: str, part: T, *, replace: bool = False) -> T: ...


@overload
def register(
    role: str, name: str, part: None = None, *, replace: bool = False
) -> Callable[[T], T]: ...


def register(
    role: str, name: str, part: T | None = None, *, replace: bool = False
) -> T | Callable[[T], T]:
    """Register ``part`` as the ``role`` named ``name``; without ``part``, a decorator.

    Raises:
        ValueError: an unknown role (the message lists them) or a name already taken.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; allowed: {', '.join(sorted(ROLES))}")
    registry = ROLES[role]
    if part is not None:
        return registry.add(name, part, replace=replace)

    def decorate(entry: T) -> T:
        return registry.add(name, entry, replace=replace)

    return decorate
