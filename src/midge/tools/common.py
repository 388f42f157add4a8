"""What `midge pub` and `midge sub` share: arguments -> Client, errors -> exit status.

Every failure a shell user can meet ends in one line on stderr that names
the broker (host:port) and what went wrong, and a documented exit status
(see `midge.tools.pubsub`); tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import ssl
import sys
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote, urlsplit

from midge.client import Client, Will
from midge.client.errors import ClientError, ConnectionRefused
from midge.client.options import check_disconnect
from midge.protocol.packets import (
    PROTOCOL_MQTT_3_1_1,
    PROTOCOL_MQTT_5,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
)
from midge.protocol.properties import Properties
from midge.tools.properties import PropertyError, parse_properties
from midge.tools.pubsub import EXIT_ERROR, NEVER_EXPIRES

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883
DEFAULT_WS_PORT = 80  # --ws: the ports of ws:// and wss:// URLs
DEFAULT_WSS_PORT = 443


class UsageError(Exception):
    """Arguments that do not make sense together: argparse's exit status 2."""


@dataclass(slots=True)
class Target:
    """Where to connect and as whom, after -L and -h/-p/-u/-P are combined."""

    host: str
    port: int
    username: str | None
    password: str | None
    topic: str | None
    tls: bool
    websocket_path: str | None = None  # --ws / --ws-path: MQTT over a WebSocket at this path


def parse_target(args: argparse.Namespace) -> Target:
    """Combine -L URL with -h/-p/-u/-P/-t; explicit flags win over the URL."""
    host, port, user, password, topic, tls = None, None, None, None, None, False
    if args.url:
        parts = urlsplit(args.url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise UsageError("-L needs mqtt://[user[:password]@]host[:port]/topic (or mqtts://)")
        tls = parts.scheme == "mqtts"
        host, user = parts.hostname, parts.username
        password = unquote(parts.password) if parts.password else None
        try:
            port = parts.port
        except ValueError:
            raise UsageError(f"bad port in -L {args.url!r}") from None
        topic = unquote(parts.path[1:]) or None
    tls = tls or bool(args.cafile or args.capath or args.cert or args.insecure)
    websocket_path = _websocket_path(args)
    if websocket_path is not None:
        default_port = DEFAULT_WSS_PORT if tls else DEFAULT_WS_PORT
    else:
        default_port = DEFAULT_TLS_PORT if tls else DEFAULT_PORT
    return Target(
        host=args.host or host or DEFAULT_HOST,
        port=args.port if args.port is not None else port or default_port,
        username=args.username if args.username is not None else user,
        password=args.password if args.password is not None else password,
        topic=topic,
        tls=tls,
        websocket_path=websocket_path,
    )


def _websocket_path(args: argparse.Namespace) -> str | None:
    """--ws (path /mqtt) or --ws-path PATH: the WebSocket's path; None for plain MQTT."""
    path: str | None = args.ws_path
    if path is None:
        return "/mqtt" if args.ws else None
    if not path.startswith("/"):
        raise UsageError(f"--ws-path must start with '/': {path!r}")
    return path


def ssl_context(args: argparse.Namespace, tls: bool) -> ssl.SSLContext | None:
    """TLS as mosquitto's flags ask: --cafile/--capath (or the system's CAs),
    --cert/--key for a client certificate, --insecure skips only the host name."""
    if not tls:
        return None
    if bool(args.cert) != bool(args.key):
        raise UsageError("--cert and --key go together")
    try:
        context = ssl.create_default_context(cafile=args.cafile, capath=args.capath)
        if args.cert:
            context.load_cert_chain(args.cert, args.key)
    except OSError as exc:  # ssl.SSLError is an OSError too
        raise UsageError(f"cannot load TLS files: {exc}") from exc
    if args.insecure:
        context.check_hostname = False
    return context


def client_id(args: argparse.Namespace, tool: str) -> str:
    if args.id and args.id_prefix:
        raise UsageError("-i and -I cannot be used together")
    if args.id_prefix:
        return f"{args.id_prefix}{os.getpid()}"
    if args.id:
        return str(args.id)
    if args.persistent:
        raise UsageError("-c needs a client id (-i): a persistent session is found by its id")
    return f"midge-{tool}-{secrets.token_hex(4)}"


def protocol_version(args: argparse.Namespace, tool: str) -> int:
    """-V, or 5 when -D asks for properties (as mosquitto does), else 3.1.1.
    Sets `args.properties`, the -D properties by command; UsageError for
    MQTT 5.0 options on an older protocol."""
    try:
        args.properties = parse_properties(tool, args.property)
    except PropertyError as exc:
        raise UsageError(str(exc)) from exc
    version: int | None = args.protocol_version
    if version is None:
        version = PROTOCOL_MQTT_5 if args.properties else PROTOCOL_MQTT_3_1_1
    if version != PROTOCOL_MQTT_5:
        used = [
            flag
            for flag, given in (
                ("-D", args.properties),
                ("-x", args.session_expiry_interval is not None),
                ("--retain-as-published", getattr(args, "retain_as_published", False)),
            )
            if given
        ]
        if used:
            raise UsageError(f"{', '.join(used)} need MQTT 5.0: use -V mqttv5")
    return version


def connect_properties(args: argparse.Namespace) -> Properties | None:
    """-D connect ..., with -x (or -c's never-expiring session) as Session Expiry Interval."""
    props: Properties | None = args.properties.get("connect")
    expiry = args.session_expiry_interval
    if props is not None and props.session_expiry_interval is not None:
        if expiry is not None:
            raise UsageError("-x and -D connect session-expiry-interval: give one")
        return props
    if expiry is None and args.persistent:
        expiry = NEVER_EXPIRES  # what -c means to mosquitto's 5.0 clients
    if expiry is None:
        return props
    return replace(props or Properties(), session_expiry_interval=expiry)


def make_client(
    args: argparse.Namespace, tool: str, target: Target, *, reconnect: bool = False
) -> Client:
    """The Client the flags describe; UsageError for combinations that make no sense."""
    version = protocol_version(args, tool)
    v5 = version == PROTOCOL_MQTT_5
    if target.password is not None and target.username is None and version == 4:
        raise UsageError("-P needs -u: MQTT 3.1.1 allows no password without a user name")
    identity = client_id(args, tool)
    connect = connect_properties(args) if v5 else None
    try:
        check_disconnect(connect, args.properties.get("disconnect"))
    except ValueError as exc:
        raise UsageError(
            f"-D disconnect: {exc} (set -x or -D connect session-expiry-interval)"
        ) from exc
    trace = DebugTrace(identity) if args.debug else None
    try:
        return Client(
            target.host,
            target.port,
            client_id=identity,
            clean_session=not args.persistent,
            keepalive=args.keepalive,
            username=target.username,
            password=target.password,
            will=make_will(args),
            protocol_version=version,
            properties=connect,
            connect_timeout=args.connect_timeout,
            ssl=ssl_context(args, target.tls),
            transport="tcp" if target.websocket_path is None else "websocket",
            path=target.websocket_path or "/mqtt",
            trace=trace,
            reconnect=reconnect,
            max_inflight=getattr(args, "max_inflight", 20),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def make_will(args: argparse.Namespace) -> Will | None:
    if args.will_topic is None:
        given = args.will_payload is not None or args.will_retain or args.will_qos
        if given or "will" in args.properties:
            raise UsageError(
                "--will-payload, --will-qos, --will-retain and -D will need --will-topic"
            )
        return None
    payload = (args.will_payload or "").encode("utf-8")
    props = args.properties.get("will")
    return Will(args.will_topic, payload, args.will_qos, args.will_retain, props)


async def disconnect(client: Client, args: argparse.Namespace) -> None:
    """DISCONNECT with -D disconnect's properties (5.0), then close."""
    await client.disconnect(properties=args.properties.get("disconnect"))


def report(tool: str, client: Client | None, exc: BaseException, quiet: bool) -> int:
    """One line on stderr for a failure; returns the exit status it stands for."""
    status = EXIT_ERROR
    if isinstance(exc, ConnectionRefused):
        status = exc.return_code
        where = f"{client.address}: " if client is not None else ""
        text = f"{where}{exc}"
    elif isinstance(exc, ClientError | OSError):
        text = str(exc)
    else:
        raise exc
    if not quiet:
        print(f"midge {tool}: {text}", file=sys.stderr, flush=True)
    return status


async def run_until(work: Coroutine[Any, Any, int], timeout: float | None = None) -> int | None:
    """Run `work` to its exit status; None when SIGINT / SIGTERM stopped it
    first (the tools then disconnect cleanly and exit 0). Raises TimeoutError
    when `timeout` seconds pass first."""
    stop = stop_on_signals()
    task = asyncio.create_task(work)
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait(
            {task, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        stopper.cancel()
    if task in done:
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    if stop.is_set():
        return None
    raise TimeoutError


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT / SIGTERM, so the tools disconnect cleanly and exit 0."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Unix
            loop.add_signal_handler(signum, stop.set)
    return stop


class DebugTrace:
    """-d: one line per packet on stderr, in mosquitto_pub/sub's words."""

    def __init__(self, identity: str) -> None:
        self.identity = identity

    def __call__(self, direction: str, packet: Packet) -> None:
        verb = "sending" if direction == "sent" else "received"
        line = f"Client {self.identity} {verb} {describe(packet)}"
        print(line, file=sys.stderr, flush=True)


def describe(packet: Packet) -> str:
    """A packet as mosquitto's debug output names it."""
    name = type(packet).__name__.upper()
    if isinstance(packet, Publish):
        flags = f"d{packet.dup:d}, q{packet.qos}, r{packet.retain:d}, m{packet.packet_id or 0}"
        return f"PUBLISH ({flags}, '{packet.topic}', ... ({len(packet.payload)} bytes))"
    if isinstance(packet, Connect):
        return f"CONNECT (c{int(packet.clean_session)}, k{packet.keep_alive}, '{packet.client_id}')"
    if isinstance(packet, ConnAck):
        return f"CONNACK ({packet.return_code})"
    if isinstance(packet, Disconnect | Auth) and packet.reason_code:
        return f"{name} ({packet.reason_code})"
    if isinstance(packet, Subscribe):
        subs = ", ".join(f"{s.topic_filter} QoS {s.qos}" for s in packet.subscriptions)
        return f"SUBSCRIBE (Mid: {packet.packet_id}, {subs})"
    if isinstance(packet, SubAck):
        return f"SUBACK (Mid: {packet.packet_id}, granted: {list(packet.return_codes)})"
    if isinstance(packet, Unsubscribe):
        return f"UNSUBSCRIBE (Mid: {packet.packet_id}, {', '.join(packet.topic_filters)})"
    if isinstance(packet, PubAck | PubRec | PubRel | PubComp) and packet.reason_code:
        return f"{name} (Mid: {packet.packet_id}, RC:{packet.reason_code})"
    if isinstance(packet, PubAck | PubRec | PubRel | PubComp | UnsubAck):
        return f"{name} (Mid: {packet.packet_id})"
    return name
