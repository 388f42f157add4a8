"""`midge pub`: what mosquitto_pub does, on the Midge client library.

One message (-m, -n, -f FILE, -s for all of stdin) published --repeat times,
or one message per stdin line (-l) as the lines arrive. QoS 1/2 messages are
pipelined up to -M at a time and the command exits only when every one of
them is acknowledged, so exit status 0 means the broker has them all.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
from collections.abc import AsyncIterator
from concurrent.futures import CancelledError
from pathlib import Path

from midge.client import Client
from midge.client.errors import ClientError
from midge.protocol.properties import Properties
from midge.protocol.topics import is_valid_topic_name
from midge.tools.common import (
    UsageError,
    disconnect,
    make_client,
    parse_target,
    report,
    run_until,
)
from midge.tools.pubsub import EXIT_OK

PIPELINE = 1000  # publish() calls waiting at once: bounds memory for a long -l input


def run_pub(args: argparse.Namespace) -> int:
    target = parse_target(args)
    topic = args.topic or target.topic
    if not topic:
        raise UsageError("a topic is required: -t TOPIC")
    if not is_valid_topic_name(topic):
        raise UsageError(f"invalid topic {topic!r}: no wildcards (+ #), not empty")
    sources = (args.file, args.stdin_line, args.null_message, args.stdin_file)
    if args.message is None and not any(sources):
        raise UsageError("a message is required: -m MESSAGE, -f FILE, -l, -n or -s")
    try:
        payload = None if args.stdin_line else _payload(args)
    except OSError as exc:
        error = OSError(f"cannot read {exc.filename or 'stdin'}: {exc.strerror or exc}")
        return report("pub", None, error, args.quiet)
    client = make_client(args, "pub", target)
    return asyncio.run(_main(args, client, topic, payload))


def _payload(args: argparse.Namespace) -> bytes:
    """The one message of -m, -n, -f or -s, read before connecting (as mosquitto does)."""
    if args.message is not None:
        return str(args.message).encode("utf-8", "surrogateescape")
    if args.file:
        return Path(args.file).read_bytes()
    if args.stdin_file:
        return sys.stdin.buffer.read()
    return b""


async def _main(args: argparse.Namespace, client: Client, topic: str, payload: bytes | None) -> int:
    try:
        status = await run_until(_publish_all(args, client, topic, payload))
    except (ClientError, OSError) as exc:
        status = report("pub", client, exc, args.quiet)
    finally:
        await disconnect(client, args)
    return EXIT_OK if status is None else status


async def _publish_all(
    args: argparse.Namespace, client: Client, topic: str, payload: bytes | None
) -> int:
    await client.connect()
    source = _stdin_lines() if payload is None else _repeated(payload, args)
    props = args.properties.get("publish")
    await _pipeline(client, topic, source, args.qos, args.retain, props)
    return EXIT_OK


async def _repeated(payload: bytes, args: argparse.Namespace) -> AsyncIterator[bytes]:
    for index in range(args.repeat):
        if index and args.repeat_delay:
            await asyncio.sleep(args.repeat_delay)
        yield payload


async def _stdin_lines() -> AsyncIterator[bytes]:
    """-l: each line without its newline (empty lines are empty messages); a
    last line without a newline is sent too.

    A daemon thread reads stdin, so the client keeps answering keep-alive
    while stdin is quiet, and Ctrl-C never waits for a blocked read.
    """
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1000)

    def read() -> None:
        try:
            for line in iter(sys.stdin.buffer.readline, b""):
                asyncio.run_coroutine_threadsafe(lines.put(line), loop).result()
            asyncio.run_coroutine_threadsafe(lines.put(b""), loop).result()
        except (RuntimeError, CancelledError):
            return  # the command ended (its loop is closed) while stdin was open

    threading.Thread(target=read, name="stdin", daemon=True).start()
    while line := await lines.get():
        yield line[:-1] if line.endswith(b"\n") else line


async def _pipeline(
    client: Client,
    topic: str,
    payloads: AsyncIterator[bytes],
    qos: int,
    retain: bool,
    properties: Properties | None = None,
    window: int = PIPELINE,
) -> None:
    """Publish in order with at most `window` publish() calls waiting (the
    client's max_inflight, -M, bounds what is on the wire); raise the first failure."""
    pending: set[asyncio.Task[int]] = set()
    try:
        async for payload in payloads:
            if len(pending) >= window:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
            # Tasks start in creation order and publish() hands the message to
            # the protocol before its first await: the order is kept.
            publish = client.publish(topic, payload, qos, retain, properties=properties)
            pending.add(asyncio.create_task(publish))
        for completed in asyncio.as_completed(pending):
            await completed
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
