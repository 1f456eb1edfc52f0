"""Processes below a process, and the TCP sockets they listen on, from Linux's /proc.

Used to check what a local sweep's Ray exposes: every listening socket of the command and of
all its descendants (GCS, raylet, workers, agents), with the address it is bound to.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's st column


@dataclass(frozen=True)
class Listener:
    process: str
    pid: int
    address: str
    port: int

    @property
    def loopback(self) -> bool:
        return ipaddress.ip_address(self.address).is_loopback


def _address(hex_address: str) -> str:
    """/proc/net/tcp{,6} local address: little-endian 32-bit words of the IP."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(words)
    mapped = getattr(ip, "ipv4_mapped", None)  # an IPv6 socket bound to ::ffff:127.0.0.1
    return str(mapped or ip)


def _listening_inodes() -> dict[int, tuple[str, int]]:
    inodes: dict[int, tuple[str, int]] = {}
    for table in ("tcp", "tcp6"):
        path = PROC / "net" / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != LISTEN:
                continue
            address, port = fields[1].split(":")
            inodes[int(fields[9])] = (_address(address), int(port, 16))
    return inodes


def processes() -> dict[int, tuple[int, int]]:
    """Every process of this machine: pid → (parent pid, session id)."""
    found: dict[int, tuple[int, int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: after the last ')' come
        # state, ppid, pgrp, session, ...
        fields = stat.rsplit(")", 1)[1].split()
        found[int(entry.name)] = (int(fields[1]), int(fields[3]))
    return found


def descendants(root: int) -> set[int]:
    """``root`` and every process below it (Ray's processes stay under the driver)."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in processes().items():
        children.setdefault(parent, []).append(pid)
    tree, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in tree:
                tree.add(child)
                todo.append(child)
    return tree


def process_name(pid: int) -> str:
    """The kernel's short name of ``pid`` (15 characters at most), or '' once it is gone."""
    try:
        return (PROC / str(pid) / "comm").read_text().strip()
    except OSError:
        return ""


def listeners(root: int) -> set[Listener]:
    """Every TCP socket in LISTEN state held by ``root`` or a descendant."""
    inodes = _listening_inodes()
    found: set[Listener] = set()
    for pid in descendants(root):
        name = process_name(pid)
        try:
            fds = os.listdir(PROC / str(pid) / "fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(PROC / str(pid) / "fd" / fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inode = int(target[8:-1])
                if inode in inodes:
                    address, port = inodes[inode]
                    found.add(Listener(name, pid, address, port))
    return found
