"""`midge sub`: what mosquitto_sub does, on the Midge client library.

Subscribes to every -t filter in one SUBSCRIBE and prints each message as
-v / -F / -N say, until -C messages were printed, -W seconds passed (exit
27, "Timed out", like mosquitto_sub), SIGINT / SIGTERM (exit 0), or the
connection ends (exit 1 unless --reconnect). Messages skipped by -R
(retained) or -T (filtered out) do not count towards -C.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from midge.client import Client, SubscribeError, UnsubscribeError
from midge.client.errors import ClientError, reason_name
from midge.protocol.topics import is_valid_topic_filter, topic_matches
from midge.tools.common import (
    UsageError,
    disconnect,
    make_client,
    parse_target,
    report,
    run_until,
)
from midge.tools.output import Formatter, make_formatter
from midge.tools.pubsub import EXIT_ERROR, EXIT_OK, EXIT_TIMED_OUT


def run_sub(args: argparse.Namespace) -> int:
    target = parse_target(args)
    topics = list(args.topic) + ([target.topic] if target.topic else [])
    if not topics and not args.unsubscribe:
        raise UsageError("at least one topic filter is required: -t FILTER (or -U FILTER)")
    for topic_filter in [*topics, *args.filter_out, *args.unsubscribe]:
        if not is_valid_topic_filter(topic_filter):
            raise UsageError(f"invalid topic filter {topic_filter!r}")
    formatter = make_formatter(args.format, args.verbose, not args.no_eol, pretty=args.pretty)
    client = make_client(args, "sub", target, reconnect=args.reconnect)
    return asyncio.run(_main(args, client, topics, formatter))


async def _main(
    args: argparse.Namespace, client: Client, topics: list[str], formatter: Formatter
) -> int:
    try:
        status = await run_until(_receive(args, client, topics, formatter), args.timeout)
    except TimeoutError:
        if not args.quiet:
            print("Timed out", file=sys.stderr, flush=True)
        status = EXIT_TIMED_OUT
    except (ClientError, OSError) as exc:
        status = report("sub", client, exc, args.quiet)
    finally:
        await disconnect(client, args)
    return EXIT_OK if status is None else status


async def _receive(
    args: argparse.Namespace, client: Client, topics: list[str], formatter: Formatter
) -> int:
    await client.connect()
    if topics and not await _subscribe(args, client, topics):
        return EXIT_ERROR
    if args.unsubscribe:
        await _unsubscribe(args, client)
    if args.exit_on_subscribed or not topics:
        return EXIT_OK
    printed = 0
    async for message in client.messages():
        if args.no_retained and message.retain:
            continue
        if any(topic_matches(f, message.topic) for f in args.filter_out):
            continue
        data = formatter(message)
        if data is None:
            continue
        if not _write(data):
            return EXIT_OK  # the reader of our output went away (`| head -1`)
        printed += 1
        if args.count is not None and printed >= args.count:
            return EXIT_OK
    return EXIT_OK


async def _subscribe(args: argparse.Namespace, client: Client, topics: list[str]) -> bool:
    """One SUBSCRIBE for all filters; False when the broker refused every one."""
    try:
        await client.subscribe(
            [(topic, args.qos) for topic in topics],
            retain_as_published=args.retain_as_published,
            properties=args.properties.get("subscribe"),
        )
    except SubscribeError as exc:
        refused = [
            (f, code) for f, code in zip(exc.filters, exc.granted, strict=True) if code >= 0x80
        ]
        if not args.quiet:
            for topic_filter, code in refused:
                why = "" if code == 0x80 else f" ({reason_name(code)})"
                print(f"midge sub: subscription refused: {topic_filter}{why}", file=sys.stderr)
        if len(refused) == len(exc.filters):
            if not args.quiet:
                print("midge sub: every subscription was refused", file=sys.stderr)
            return False
    return True


async def _unsubscribe(args: argparse.Namespace, client: Client) -> None:
    """-U: one UNSUBSCRIBE after the SUBSCRIBE (as mosquitto_sub orders them)."""
    try:
        await client.unsubscribe(args.unsubscribe, properties=args.properties.get("unsubscribe"))
    except UnsubscribeError as exc:
        if not args.quiet:
            print(f"midge sub: {exc}", file=sys.stderr)


def _write(data: bytes) -> bool:
    """Write and flush at once, so a pipe sees each message as it comes."""
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        # Python would complain again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return False
    return True
