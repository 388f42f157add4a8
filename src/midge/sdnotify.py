"""systemd's readiness protocol (sd_notify) without libsystemd: one datagram to $NOTIFY_SOCKET.

A unit with `Type=notify` (contrib/systemd/midge.service) is "started" only
when the service says `READY=1`, so units ordered after Midge start once it
listens, not once its process exists; `STOPPING=1` says a stop has begun.
systemd passes the socket's path in NOTIFY_SOCKET: a file system path, or
an abstract socket name written with a leading `@`. Outside systemd the
variable is unset and `notify` does nothing, so callers need no check.
"""

from __future__ import annotations

import os
import socket

READY = "READY=1"
STOPPING = "STOPPING=1"


def notify(message: str) -> bool:
    """Send `message` (e.g. "READY=1") to systemd; True if it was sent.

    False when NOTIFY_SOCKET is unset, names an address family this does not
    speak (systemd also allows `vsock:` addresses), or the send fails: a
    readiness note must never stop the broker.
    """
    address = os.environ.get("NOTIFY_SOCKET", "")
    if address.startswith("@"):
        address = "\0" + address[1:]  # the abstract namespace: no file, a leading NUL
    elif not address.startswith("/"):
        return False
    family = getattr(socket, "AF_UNIX", None)
    if family is None:  # not a Unix system: no systemd either
        return False
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
    except OSError:
        return False
    return True
