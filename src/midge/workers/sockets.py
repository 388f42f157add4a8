"""The operating-system pieces of `midge serve --workers`: shared ports,
readiness notes from the workers, and children that die with the supervisor.

- `reserve_port`: the supervisor binds each MQTT listener's address itself,
  with SO_REUSEPORT, and keeps the sockets bound but never listening. Port 0
  becomes a real port once, for every worker and every restart of one; the
  kernel hands connections only to listening sockets, so the reservation
  takes none of them, and it keeps the port ours while a worker restarts.
- `NotifySocket`: a worker says READY=1 (midge/sdnotify.py, as it does to
  systemd) on a datagram socket of its own in the abstract namespace, so no
  file is left behind and the supervisor knows which worker is ready.
- `parent_death_hook`: children get SIGTERM when the supervisor dies, even
  by SIGKILL, so no worker and no private redis-server outlives it.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import socket
import sys
from collections.abc import Callable

RESERVE_ATTEMPTS = 10  # port 0 on several addresses: another process may hold the port on one
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def supported() -> str | None:
    """None when this system can run workers, else why not."""
    if not sys.platform.startswith("linux"):
        # SO_REUSEPORT spreads connections over listeners only on Linux.
        return "--workers needs Linux (SO_REUSEPORT load balancing)"
    return None


def _bindable_addresses(host: str, port: int) -> list[tuple[int, tuple[str, int]]]:
    """What asyncio's create_server binds for `host`: every address it resolves
    to ("" : every interface), once each."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    found: dict[tuple[int, str], tuple[int, tuple[str, int]]] = {}
    for family, _kind, _proto, _name, address in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            found.setdefault((family, str(address[0])), (family, (str(address[0]), port)))
    return list(found.values())


def _bound(family: int, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:  # as asyncio does: the IPv4 address is bound on its own
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def reserve_port(host: str, port: int) -> tuple[int, list[socket.socket]]:
    """(the port, the bound sockets) for a listener of `host` and `port`.

    Port 0 picks a free port on the first address and takes the same one on
    the others. Raises OSError when the address cannot be bound (in use by a
    process that did not ask for SO_REUSEPORT, or not an address of this host).
    """
    addresses = _bindable_addresses(host, port)
    for attempt in range(RESERVE_ATTEMPTS):
        chosen, sockets = port, []
        try:
            for family, (address, _port) in addresses:
                sockets.append(_bound(family, address, chosen))
                chosen = int(sockets[-1].getsockname()[1])
        except OSError:
            for sock in sockets:
                sock.close()
            if port != 0 or attempt == RESERVE_ATTEMPTS - 1:
                raise
            continue
        return chosen, sockets
    raise AssertionError("unreachable")  # the loop returns or raises


class NotifySocket:
    """Where one worker says READY=1: `address` goes into its NOTIFY_SOCKET."""

    def __init__(self, label: str) -> None:
        name = f"midge-{os.getpid()}-{label}-{secrets.token_hex(4)}"
        self.address = "@" + name  # sdnotify's spelling of the abstract namespace
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + name)
        self.sock.setblocking(False)

    def messages(self) -> list[str]:
        """Every note received so far (a worker may send several in one run)."""
        notes: list[str] = []
        while True:
            try:
                data = self.sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                return notes
            notes.append(data.decode("utf-8", "replace"))

    def close(self) -> None:
        self.sock.close()


def parent_death_hook() -> Callable[[], None]:
    """A `preexec_fn` that asks Linux to send the child SIGTERM when this
    process dies, and exits at once if it already has.

    Runs between fork and exec, so it only calls what is resolved now (the
    supervisor starts no threads, which makes a preexec_fn safe).
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()
    sigterm = int(signal.SIGTERM)

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, sigterm)
        if os.getppid() != parent:  # the supervisor died before prctl: nobody would stop us
            os._exit(1)

    return hook
