"""Output directories: created only after every input was checked, never overwritten."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from margin_tune.pipeline.runtime.interrupts import InterruptedRunError
from margin_tune.pipeline.runtime.logs import LOG_FILE, log_file
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.yaml_io import dump_yaml

#: The lock file of an output directory in use (see :func:`output_lock`).
LOCK_FILE = ".margin-tune.lock"

#: The resolved base config a comparison or ablation trained, beside its tables (and among a
#: comparison's artifacts).
BASE_CONFIG = "base_config.yaml"
#: A sweep's space file, copied into its output directory: what ``resume`` and a later
#: ``tune --warm-start DIR`` read.
SPACE_COPY = "space.yaml"


def default_out(name: str) -> Path:
    """``runs/<name>-<timestamp>``: a new directory per invocation."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "sweep"
    return Path("runs") / f"{slug}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_output_dir(path: Path, *, field: str = "--out") -> None:
    """Refuse a non-empty existing directory (or a file) before anything is computed."""
    if path.exists() and (not path.is_dir() or any(p.name != LOCK_FILE for p in path.iterdir())):
        raise ConfigError(field, f"{path} already exists and is not empty; choose a new directory")


def create_output_dir(path: Path, *, field: str = "--out") -> Path:
    check_output_dir(path, field=field)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(field, f"cannot create {path}: {error.strerror}") from None
    return path


@contextlib.contextmanager
def new_output_dir(path: Path, *, field: str = "--out") -> Iterator[Path]:
    """Create ``path`` and hold it for the block; a refusal inside leaves no trace.

    The folder exists and is locked before Ray or MLflow start, so a path that cannot be
    written is refused first. When the block is refused with a :class:`ConfigError` (a store
    check, a cluster too small) while the folder still holds nothing but the lock, the folder
    is removed again if this call created it: bad input leaves nothing half-written (the
    log of the refused start goes with it).
    """
    existed = path.exists()
    created = create_output_dir(path, field=field)
    try:
        with output_lock(created, field=field, new=True):
            yield created
    except ConfigError:
        left = {p.name for p in created.iterdir()}
        if not existed and left <= {LOCK_FILE, LOG_FILE}:
            with contextlib.suppress(OSError):
                for name in left:
                    (created / name).unlink()
                created.rmdir()
        raise


@contextlib.contextmanager
def output_lock(path: Path, *, field: str = "DIR", new: bool = False) -> Iterator[None]:
    """Hold ``path`` for one command: a second command on it is refused, naming the holder.

    An advisory ``flock`` on ``path/.margin-tune.lock``, which also records the holder's PID.
    The kernel releases it when the holder exits, however it exits, so a lock left by a killed
    command is free and the next command takes it over. ``new``: the directory was just created
    for this command, and must still hold nothing but the lock once it is taken (another
    command may have filled it between the check and the lock).
    """
    lock = path / LOCK_FILE
    try:
        handle = open(lock, "a+", encoding="utf-8")  # noqa: SIM115  # held for the whole block
    except OSError as error:
        raise ConfigError(field, f"cannot write in {path}: {error.strerror}") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise ConfigError(
                field,
                f"{path} is in use by another margin-tune command (PID {holder}); wait for it "
                "to end or stop it, then try again",
            ) from None
        if new:
            check_output_dir(path, field="--out")
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            with log_file(path):
                yield
        except InterruptedRunError as stop:
            stop.out = stop.out or path  # what `margin-tune resume` continues
            raise
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_new_file(target: Path, suffix: str, *, field: str = "--out") -> None:
    """Refuse, before any work, a ``target`` that exists, lacks ``suffix`` or has no folder."""
    if target.exists():
        raise ConfigError(field, f"{target} already exists; choose a new file")
    if target.suffix.lower() != suffix:
        raise ConfigError(field, f"{target}: the output is written as {suffix}")
    if not target.parent.is_dir():
        raise ConfigError(field, f"{target.parent} is not a folder")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_new_file(target: Path, write: Callable[[Path], object], *, field: str = "--out") -> None:
    """``write`` a file beside ``target``, then link it into place: never half a file, and
    never over a file that appeared meanwhile (a user's file is not overwritten)."""
    handle, name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=target.suffix, dir=target.parent
    )
    os.close(handle)
    temporary = Path(name)
    # mkstemp's file is private (0600); the user's file gets the mode any new file would.
    os.chmod(temporary, 0o666 & ~_umask())
    taken = ConfigError(field, f"{target} already exists; choose a new file")
    try:
        write(temporary)
        try:
            os.link(temporary, target)  # fails if the file appeared meanwhile
        except FileExistsError:
            raise taken from None
        except OSError:  # a file system without hard links: an exclusive create instead
            try:
                with open(target, "xb") as stream:
                    stream.write(temporary.read_bytes())
            except FileExistsError:
                raise taken from None
    finally:
        temporary.unlink(missing_ok=True)


def write_yaml(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(dump_yaml(dict(data)), encoding="utf-8")


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(json_text(data) + "\n", encoding="utf-8")


def json_text(data: Mapping[str, Any]) -> str:
    """``data`` as JSON, NaN and infinities as null (what every JSON reader accepts)."""
    return json.dumps(json_safe(data), indent=2, default=str)


class CsvAppender:
    """Appends rows as they come, so an interrupted run keeps every finished epoch on disk."""

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.path = path
        self.columns = list(columns)
        with path.open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerow(self.columns)

    def append(self, row: Mapping[str, Any]) -> None:
        with self.path.open("a", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerow([_csv_value(row.get(name)) for name in self.columns])


def _csv_value(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def json_safe(value: Any) -> Any:
    """JSON has no NaN: write null, which every reader understands; numpy scalars become
    Python numbers."""
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
        value = value.item()  # a numpy scalar
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
