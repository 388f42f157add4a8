"""Helpers for the client tests: scripted fake brokers, broker fixtures, CLI processes.

A fake broker is an asyncio server on a loopback port whose behaviour is a
test's coroutine: it can refuse, go silent, break the protocol or hang up,
which a real broker will not do on demand. Every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from brokers import OutputPump, stop
from midge.client import Client
from midge.protocol.codec import Decoder
from midge.protocol.packets import Packet

WAIT = 5.0  # anything that should happen "at once" on loopback
HOST = "127.0.0.1"

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

_ids = itertools.count(1)


def unique(prefix: str) -> str:
    """A short unique name: client ids below 23 characters, topics that never collide."""
    return f"{prefix}{os.getpid() % 1000}x{next(_ids)}"


@asynccontextmanager
async def fake_broker(script: Script) -> AsyncIterator[int]:
    """Serve `script` for every connection on a free loopback port; yields the port."""
    tasks: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await script(reader, writer)
        except (asyncio.CancelledError, EOFError, ConnectionError):
            pass  # cancelled at teardown, or the client went away: the script is over
        finally:
            writer.close()

    server = await asyncio.start_server(handle, HOST, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def read_packet(reader: asyncio.StreamReader, decoder: Decoder) -> Packet:
    """The next packet a client sent to a fake broker."""
    while (packet := decoder.next_packet()) is None:
        data = await asyncio.wait_for(reader.read(4096), WAIT)
        if not data:
            raise EOFError("the client closed the connection")
        decoder.feed(data)
    return packet


def abort(client: Client) -> None:
    """Drop the client's TCP connection without DISCONNECT: a crash, as the broker sees it."""
    link = client._link
    assert link is not None
    link.writer.transport.abort()


async def wait_until(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


def mosquitto_passwd(path: Path, users: dict[str, str]) -> None:
    tool = shutil.which("mosquitto_passwd")
    assert tool is not None
    for index, (user, password) in enumerate(users.items()):
        args = ["-c"] if index == 0 else []
        subprocess.run(
            [tool, *args, "-b", str(path), user, password],
            check=True,
            timeout=10,
            capture_output=True,
        )


class Tool:
    """One command-line client process (midge or mosquitto_*), stdout and stderr piped."""

    def __init__(self, args: Sequence[str], stdin: bytes | None = None) -> None:
        self.args = list(args)
        self.process = subprocess.Popen(
            self.args,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self.pump = OutputPump(self.process)  # stderr, line by line, on a thread
        self._stdout: list[str] = []
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        if stdin is not None:
            assert self.process.stdin is not None
            self.process.stdin.write(stdin.decode("utf-8", "surrogateescape"))
            self.process.stdin.close()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        self._stdout.append(self.process.stdout.read())

    def wait_for_stderr(self, text: str, timeout: float = WAIT) -> None:
        """Block until stderr has a line containing `text` (e.g. the SUBACK of -d)."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self.pump.queue.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                break
            if text in line:
                return
        stop(self.process)
        raise AssertionError(f"{self.args[:3]} wrote no {text!r}; stderr:\n{self.pump.text()}")

    def finish(self, timeout: float = WAIT) -> tuple[int, str, str]:
        """(exit status, stdout, stderr); the process is killed if it overruns."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop(self.process)
            raise AssertionError(
                f"{self.args[:3]} did not exit in {timeout} s; stderr:\n{self.pump.text()}"
            ) from None
        self._reader.join(WAIT)
        self.pump.join()
        return self.process.returncode, "".join(self._stdout), "".join(self.pump.lines)

    def stop(self) -> None:
        stop(self.process)


def midge(*args: str) -> list[str]:
    return [sys.executable, "-m", "midge", *args]
