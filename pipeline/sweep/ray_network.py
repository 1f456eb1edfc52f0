"""Keep a local Ray on loopback: a sweep on one machine must not listen on the network.

Ray decides where its processes listen from the node IP it gives them. When that IP is
127.0.0.1 the GCS server, the raylet, the object manager, every worker and the runtime-env
agent bind to loopback only; for any other IP they bind to every interface (measured here with
Ray 2.60, see ``tests/pipeline/sweep/test_loopback.py``).
``ray.init(_node_ip_address="127.0.0.1")`` cannot ask for loopback, because ``ray.init``
rewrites a loopback address to the host's IP. What Ray does use is its single-machine mode,
the one it runs in on macOS and Windows: with the documented variable
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` false, ``ray._private.services.get_node_ip_address``
answers 127.0.0.1 (https://docs.ray.io/en/latest/cluster/getting-started.html,
"Multi-node Ray clusters are only supported on Linux … RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1").

Ray reads that variable once, when ``ray`` is first imported. So :func:`prefer_loopback` sets it
when the package is imported before Ray, and :func:`release` removes it again before a local
Ray starts, so that nothing this process spawns later (a ``ray start`` of the user's, for
instance) inherits it. Joining a cluster is not affected: ``ray.init(address=…)`` takes the node
IP from the node it joins, and an address of 127.0.0.1 is then kept instead of being rewritten.
A user who sets the variable decides for themselves; :func:`loopback_warning` says when a local
Ray is about to listen on the network.
"""

from __future__ import annotations

import ipaddress
import os
import stat
import sys
from pathlib import Path

SINGLE_MACHINE_VARIABLE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"

_set_here = False


def prefer_loopback() -> None:
    """Before Ray's first import: ask for its single-machine mode unless the user chose."""
    global _set_here
    if "ray" in sys.modules or SINGLE_MACHINE_VARIABLE in os.environ:
        return
    os.environ[SINGLE_MACHINE_VARIABLE] = "0"
    _set_here = True


def release() -> None:
    """Take the variable out of the environment again once Ray has read it."""
    global _set_here
    if _set_here and "ray" in sys.modules:
        os.environ.pop(SINGLE_MACHINE_VARIABLE, None)
        _set_here = False


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def loopback_warning(node_ip: str) -> str | None:
    """One line for stderr when a local Ray would listen beyond loopback, else None."""
    if is_loopback(node_ip):
        return None
    if os.environ.get(SINGLE_MACHINE_VARIABLE, "").strip().lower() in ("1", "true"):
        why = f"{SINGLE_MACHINE_VARIABLE} is set"
    else:
        why = (
            "ray was imported before margin-tune; set "
            f"{SINGLE_MACHINE_VARIABLE}=0 before importing ray to keep it on loopback"
        )
    return (
        f"margin-tune: warning: the local Ray listens on every interface (node IP {node_ip}): "
        f"{why}. Its token authentication stays on."
    )


#: Where Ray reads its token from a file: ``RAY_AUTH_TOKEN_PATH``, else this default
#: (https://docs.ray.io/en/latest/ray-security/token-auth.html).
TOKEN_PATH_VARIABLE = "RAY_AUTH_TOKEN_PATH"


def token_path() -> Path:
    chosen = os.environ.get(TOKEN_PATH_VARIABLE)
    return Path(chosen).expanduser() if chosen else Path.home() / ".ray" / "auth_token"


def token_exposure_warning(path: Path | None = None) -> str | None:
    """One line when other users of this machine can read Ray's token file, else None.

    Ray writes the token with the process umask (0644 here). It stays private only while a
    folder above it denies other users entry, as a 0700 home does. margin-tune never copies the
    token and never changes its mode: it says when the file is open to others.
    """
    path = token_path() if path is None else path
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if not mode & stat.S_IROTH:
        return None
    for folder in path.absolute().parents:
        try:
            if not folder.stat().st_mode & stat.S_IXOTH:
                return None  # other users cannot reach the file
        except OSError:
            return None
    return (
        f"margin-tune: warning: Ray's token file {path} is readable by every user of this "
        f"machine (mode {stat.S_IMODE(mode):04o}); anyone holding it can run code in this "
        f"Ray: chmod 600 {path}"
    )
