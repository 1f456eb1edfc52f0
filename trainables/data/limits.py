"""How much memory a dataset may take, checked from declared sizes before anything is allocated.

Every source computes what loading will need from what it is told (the config of a generated
dataset, the array headers of an ``.npz``, the file count of an image folder) and calls
:func:`check_dataset_bytes` first, so that a forged header or a huge ``num_classes`` is refused
in milliseconds instead of exhausting the machine.
"""

from __future__ import annotations

import dataclasses
import os

from margin_tune.trainables.config import DatasetConfig
from margin_tune.trainables.errors import ConfigError

_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def physical_memory() -> int | None:
    """This machine's physical memory in bytes, or None where the OS does not say."""
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):  # pragma: no cover - not Linux/macOS
        return None
    return pages * page_size if pages > 0 and page_size > 0 else None


def format_bytes(count: int) -> str:
    """``8.0 GiB``: a byte count for a message."""
    size = float(count)
    for unit in _UNITS[:-1]:
        if abs(size) < 1024:
            return f"{count:,} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} {_UNITS[-1]}"


def dataset_byte_limit(config: DatasetConfig) -> tuple[int, str]:
    """The bound on a dataset's memory, and what sets it.

    ``dataset.max_bytes`` or this machine's physical memory, whichever is smaller: physical
    memory (not the memory free right now) keeps the answer the same from one run to the next.
    """
    memory = physical_memory()
    if memory is not None and memory < config.max_bytes:
        allowed = format_bytes(config.max_bytes)
        return memory, f"this machine's physical memory, below dataset.max_bytes ({allowed})"
    return config.max_bytes, "dataset.max_bytes; raise it to allow more"


def check_dataset_bytes(config: DatasetConfig, field: str, what: str, needed: int) -> None:
    """Refuse a dataset whose loading would need more than :func:`dataset_byte_limit`.

    ``what`` says where ``needed`` comes from (``"100 x 40 samples of 64 features"``).

    Raises:
        ConfigError: for ``field``, giving the size, the limit and what sets the limit.
    """
    limit, source = dataset_byte_limit(config)
    if needed > limit:
        raise ConfigError(
            field,
            f"{what} needs about {format_bytes(needed)} of memory, above the limit of "
            f"{format_bytes(limit)} ({source})",
        )


def largest_field(config: DatasetConfig, *names: str) -> str:
    """``dataset.<name>`` of the size field furthest above its default: the one to name when
    their product is too large."""
    defaults = {item.name: item.default for item in dataclasses.fields(DatasetConfig)}
    name = max(names, key=lambda name: getattr(config, name) / defaults[name])
    return f"dataset.{name}"
