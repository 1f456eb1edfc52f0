"""The one YAML loader for user input: configs, search spaces, compare specs, grids, ``--set``.

:class:`BoundedLoader` is ``yaml.SafeLoader`` (no ``!!python/...`` tags: nothing is ever
unpickled or called) with four bounds, so that the work and the memory a document costs stay
proportional to its size:

* no aliases: ``*name`` is refused where it appears. Aliases are what lets a few hundred bytes
  expand to gigabytes ("billion laughs"); the files this tool reads are short enough to write out
  in full. An anchor (``&name``) that nothing refers to is harmless and allowed.
* no duplicate mapping keys, at any depth: YAML would silently keep the last value.
* nesting at most :data:`MAX_DEPTH` levels (deeper would exhaust Python's recursion limit).
* at most :data:`MAX_YAML_CHARS` characters of input.

Every failure becomes one :class:`ConfigError` naming the field, the line and the problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from margin_tune.trainables.errors import ConfigError, quote, shorten

MAX_YAML_CHARS = 1 << 20
"""Most characters a YAML input may hold (1 MiB): hand-written files are a few kilobytes."""

MAX_DEPTH = 50
"""Most levels of nested mappings and lists (a config has 2, a nested grid about 6)."""

_MERGE_TAG = "tag:yaml.org,2002:merge"


class RefusedYAMLError(yaml.MarkedYAMLError):
    """Valid YAML that :class:`BoundedLoader` refuses: an alias, a duplicate key, deep nesting."""


class BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses aliases, duplicate keys and deep nesting (see module)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise RefusedYAMLError(
                problem=f"alias *{event.anchor} is not allowed (aliases can expand a short file "
                "to gigabytes); write the value out in full",
                problem_mark=event.start_mark,
            )
        if self._depth >= MAX_DEPTH:
            raise RefusedYAMLError(
                problem=f"nested deeper than {MAX_DEPTH} levels",
                problem_mark=self.peek_event().start_mark,
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            first_line: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    seen = first_line.get(key)
                except TypeError:
                    continue  # unhashable: the safe constructor reports it
                line = key_node.start_mark.line + 1
                if seen is not None:
                    raise RefusedYAMLError(
                        problem=f"duplicate key {quote(key)} (first at line {seen}); a key may "
                        "appear once in a mapping",
                        problem_mark=key_node.start_mark,
                    )
                first_line[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, *, field_name: str, describe: str) -> Any:
    """Parse one YAML document with :class:`BoundedLoader`.

    ``describe`` opens every error message (``invalid YAML in config.yaml``), followed by the
    line and the problem.

    Raises:
        ConfigError: for ``field_name``: too long, a syntax error, a Python tag, an alias, a
            duplicate key or too deep nesting.
    """
    if len(text) > MAX_YAML_CHARS:
        raise ConfigError(
            field_name,
            f"{describe}: {len(text):,} characters, above the limit of {MAX_YAML_CHARS:,}",
        )
    loader = BoundedLoader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(field_name, f"{describe}{line}: {problem}") from None
    except ValueError as error:  # an integer beyond Python's digit limit, a date like 2020-13-45
        problem = str(error).split(";")[0]  # not the advice to raise Python's limit
        raise ConfigError(field_name, f"{describe}: {shorten(problem)}") from None
    except RecursionError:  # pragma: no cover - MAX_DEPTH stops nesting well before
        raise ConfigError(field_name, f"{describe}: nested too deeply") from None
    finally:
        loader.dispose()


def read_yaml_file(path: Path, *, field_name: str) -> Any:
    """Read and parse a YAML file; every failure is a ConfigError naming ``field_name``."""
    most = 4 * MAX_YAML_CHARS  # UTF-8 takes at most 4 bytes a character
    try:
        with path.open("rb") as handle:
            raw = handle.read(most + 1)
        if len(raw) > most:
            raise ConfigError(
                field_name,
                f"{path} is larger than {most:,} bytes; a YAML input may hold at most "
                f"{MAX_YAML_CHARS:,} characters",
            )
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(field_name, f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(field_name, f"cannot read {path}: {error}") from None
    return load_yaml(text, field_name=field_name, describe=f"invalid YAML in {path}")


#: libyaml's emitter where PyYAML was built with it (its wheels are), else the pure-Python one:
#: the same text, about five times faster (a trial's config.yaml: 0.4 against 1.9 ms, which a
#: sweep's driver spends on every trial).
_SAFE_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def dump_yaml(data: Any) -> str:
    """``data`` as YAML, keys in their order, as ``yaml.safe_dump(sort_keys=False)`` writes
    it: what every config and output file the tool writes is."""
    return str(yaml.dump(data, Dumper=_SAFE_DUMPER, sort_keys=False))
