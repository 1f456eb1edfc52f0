"""Registries: config names to parts, one registry per role.

Each role (scheduler, miner, sampler, loss, dataset, model; the pipeline's searchers too) owns
one registry. Parts come from three places, in this order of precedence:

- the package's own, registered explicitly in the role's ``__init__``;
- installed plug-ins: entry points in the group ``margin_tune.<role>s`` (``margin_tune.schedulers``,
  ``margin_tune.losses``, ...), read the first time a name is looked up, in any process, Ray's
  workers included;
- parts a script registers at run time (:meth:`Registry.add`, or ``margin_tune.register``),
  which a sweep ships to its workers (:meth:`Registry.added`).

An unknown or duplicate name is an error that lists the known names.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

from margin_tune.trainables.errors import ConfigError

T = TypeVar("T")

#: Entry-point groups are named after the package: ``margin_tune.<plural of the role>``.
ENTRY_POINT_PREFIX = __name__.partition(".")[0] + "."


class Registry(Generic[T]):
    """Maps config names to parts of one role."""

    def __init__(self, role: str, plural: str | None = None) -> None:
        self.role = role
        self.group = ENTRY_POINT_PREFIX + (plural or f"{role}s")
        self._entries: dict[str, T] = {}
        self._added: dict[str, T] = {}
        self._plugins_loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: the package's own part ``name`` (registered when its module loads)."""

        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.role} {name!r} is registered twice")
            self._entries[name] = entry
            return entry

        return add

    def add(self, name: str, entry: T, *, replace: bool = False) -> T:
        """Register ``entry`` under ``name`` from a script, at run time.

        It is remembered in :meth:`added`, so a sweep sends it to its trials' workers.
        ``replace`` lets a notebook cell that redefines a part run again.

        Raises:
            ValueError: ``name`` is taken (the package's or a plug-in's part) and not
                ``replace``-able.
        """
        self._load_plugins()
        if not name or not isinstance(name, str):
            raise ValueError(f"a {self.role} name must be a non-empty string, got {name!r}")
        if name in self._entries and not (replace and name in self._added):
            raise ValueError(
                f"{self.role} {name!r} is already registered; known: {', '.join(self.names())}"
            )
        self._entries[name] = entry
        self._added[name] = entry
        return entry

    def added(self) -> dict[str, T]:
        """The parts registered at run time, by name (what a worker process lacks)."""
        return dict(self._added)

    def restore(self, added: Mapping[str, T]) -> None:
        """Register what :meth:`added` returned in another process (a trial's worker)."""
        for name, entry in added.items():
            if self._entries.get(name) is not entry:
                self.add(name, entry, replace=True)

    def get(self, name: str) -> T:
        self._load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(
                f"unknown {self.role} {name!r}; known: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def _load_plugins(self) -> None:
        """Register every installed entry point of :attr:`group`, once per process.

        A plug-in whose name the package already uses is refused: a config naming ``dams`` must
        mean the same scheduler everywhere.
        """
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for point in importlib.metadata.entry_points(group=self.group):
            where = f"entry point {point.name!r} = {point.value!r} of {self.group}"
            if point.name in self._entries:
                raise ConfigError(
                    self.group, f"{where}: {self.role} {point.name!r} is already registered"
                )
            try:
                self._entries[point.name] = point.load()
            except Exception as error:  # a broken plug-in names itself, not a traceback
                raise ConfigError(
                    self.group, f"{where} failed to load: {type(error).__name__}: {error}"
                ) from None
