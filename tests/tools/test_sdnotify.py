"""sd_notify without systemd: a real Unix datagram socket stands in for it."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from midge import sdnotify

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs Unix sockets")


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        yield sock


def test_unset_notify_socket_is_a_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify(sdnotify.READY) is False


def test_ready_reaches_a_socket_in_the_file_system(tmp_path, monkeypatch, listening):
    path = tmp_path / "notify"
    listening.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    assert sdnotify.notify("READY=1") is True
    assert listening.recv(1024) == b"READY=1"
    assert sdnotify.notify(sdnotify.STOPPING) is True
    assert listening.recv(1024) == b"STOPPING=1"


def test_an_abstract_socket_is_written_with_a_leading_at(monkeypatch, listening):
    name = f"midge-sdnotify-test-{os.getpid()}"
    listening.bind("\0" + name)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    assert sdnotify.notify("STATUS=serving") is True
    assert listening.recv(1024) == b"STATUS=serving"


@pytest.mark.parametrize("address", ["/nonexistent/notify", "vsock:2:1234", "relative"])
def test_an_unusable_address_returns_false(monkeypatch, address):
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    assert sdnotify.notify(sdnotify.READY) is False
