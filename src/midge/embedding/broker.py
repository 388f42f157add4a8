"""`midge.Broker`: the whole broker inside any asyncio program.

    async with midge.Broker(port=0, store="memory") as broker:
        print(broker.listeners[0].port)
        async with broker.subscribe("sensors/#") as messages:
            await broker.publish("sensors/t1", b"21.5", qos=1)
            print(await messages.get())

Entering the context opens the store, restores what it kept and binds every
listener; when it returns, clients can connect. Leaving it closes the
listeners and every connection (sessions kept, wills not published: a
broker stopping is not a client failing), commits what was submitted and
closes the store. It installs no signal handlers and touches no process-wide
setting, so it runs in any thread that runs an event loop; call its methods
from that loop's thread. `midge serve` is this plus signals (server.py).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from midge import __version__, compiled
from midge.broker.broker import Broker as Core
from midge.broker.closing import CloseReason
from midge.broker.config import BrokerConfig, ListenerConfig, load_config, prepare_data_dir
from midge.broker.internal import API_LISTENER, INTERNAL_LISTENER
from midge.broker.listeners import start_listener
from midge.broker.views import (
    ClientInfo,
    SessionInfo,
    SubscriptionInfo,
    public_message,
    session_info,
    subscription_info,
)
from midge.client.client import Client
from midge.client.connecting import Streams
from midge.client.events import Message
from midge.embedding.hooks import EventHooks, load_hooks
from midge.embedding.pipe import Pipe
from midge.embedding.services import Service, services_for
from midge.embedding.subscription import Subscription
from midge.embedding.timers import TimerDriver
from midge.protocol.packets import PROTOCOL_MQTT_5
from midge.protocol.properties import Properties
from midge.store.base import Store
from midge.store.memory import MemoryStore
from midge.store.sqlite import SQLiteStore
from midge.store.writer import GroupCommitWriter

if TYPE_CHECKING:
    from midge.bridge.link import BridgeLink
    from midge.cluster.node import ClusterNode

log = logging.getLogger("midge.server")

STORE_FILE = "midge.db"
INTERNAL_CLIENT_PREFIX = "midgeinproc"  # letters and digits: valid under strict_client_id


@dataclass(frozen=True, slots=True)
class ListenerAddress:
    """Where one listener is bound: the real port when the config asked for 0."""

    host: str
    port: int
    transport: str  # tcp, tls, ws or wss; http or https (the HTTP API)
    label: str  # how the log names it: mqtt, mqtt+tls, mqtt+ws, mqtt+wss, http, https


def open_store(config: BrokerConfig) -> Store:
    """The configured store; raises StoreError when its file cannot be used."""
    if config.store == "memory":
        return MemoryStore()
    synchronous = "full" if config.durability == "full" else "normal"
    return SQLiteStore(Path(config.data_dir) / STORE_FILE, synchronous)


class Broker:
    """A Midge broker in the current event loop (see the module docstring).

    `config` is a `BrokerConfig`, a path to a TOML config file, or None for
    the defaults; keyword `settings` override single keys of it, as
    `midge serve`'s flags do (`Broker(port=0, store="memory")`). `hooks` are
    event hook objects (see `midge.Hooks`), called after those the config's
    `hooks` key names. `reuse_port` binds the MQTT listeners with
    SO_REUSEPORT, so that other processes may listen on the same ports
    (`midge serve --workers`).
    """

    def __init__(
        self,
        config: BrokerConfig | str | Path | None = None,
        *,
        hooks: Sequence[object] = (),
        reuse_port: bool = False,
        **settings: Any,
    ) -> None:
        base = config if isinstance(config, BrokerConfig) else load_config(config)
        self.config = base.override(**settings) if settings else base.validate()
        self._hook_objects = [*load_hooks(self.config.hooks), *hooks]
        self._reuse_port = reuse_port  # SO_REUSEPORT: a worker of `midge serve --workers`
        self._core: Core | None = None
        self._store: Store | None = None
        self._writer: GroupCommitWriter | None = None
        self._cluster: ClusterNode | None = None
        self._timers: TimerDriver | None = None
        self._events: EventHooks | None = None
        self._servers: list[asyncio.Server] = []
        self._services: list[Service] = []
        self._listeners: list[ListenerAddress] = []
        self._publisher: Client | None = None
        self._publisher_lock = asyncio.Lock()
        self._client_numbers = itertools.count(1)

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Broker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Create the data dir's last folder if missing, open the store, restore
        it, bind every listener. Raises StoreError, ConfigError (a TLS file, a
        data dir whose parent is missing) or OSError (an address in use); then
        nothing stays open."""
        if self._core is not None:
            raise RuntimeError("this broker is already started")
        loop = asyncio.get_running_loop()
        config = self.config
        prepare_data_dir(config)
        store: Store
        if config.cluster is not None:
            # Sessions and retained messages live in Redis (cluster/node.py).
            from midge.cluster.node import ClusterNode  # noqa: PLC0415

            self._cluster = ClusterNode(config.cluster)
            store = self._store = await self._cluster.open()
        else:
            store = self._store = open_store(config)
        try:
            state = await asyncio.to_thread(store.load) if self._cluster else store.load()
            # The broker's own state is all a memory store could hold.
            on_disk = not isinstance(store, MemoryStore)
            # A disk store commits on its own thread, so the loop never waits on it.
            if on_disk:
                self._writer = GroupCommitWriter(store, loop.call_soon_threadsafe)
            self._timers = TimerDriver(loop)
            self._events = EventHooks(self._hook_objects) if self._hook_objects else None
            core = self._core = Core(
                config,
                store=store if on_disk else None,
                committer=self._writer,
                wake_at=self._timers.wake_at,
                events=self._events,
            )
            core.clock_offset = core.wall_clock() - loop.time()
            self._timers.start(core)
            if self._cluster is not None:
                self._cluster.attach(core)
                self._cluster.on_reload = self._reload_files
            core.restore(state)
            log.info(
                "store: %s; %d sessions, %d retained messages",
                store.description,
                len(state.sessions),
                len(state.retained),
            )
            if self._cluster is not None:
                await self._cluster.start()
            services = services_for(config, core.sessions)
            for service in services:  # what must be in place before any client comes
                prepare = getattr(service, "prepare", None)
                if prepare is not None:
                    await prepare(self)
            for listener in config.effective_listeners():
                server = await start_listener(core, listener, reuse_port=self._reuse_port)
                self._servers.append(server)
                self._note_listening(server, listener)
            for service in services:
                await service.start(self)
                self._services.append(service)
        except BaseException:
            await self._close(log_counts=False)
            raise

    async def stop(self) -> None:
        """Close listeners and connections, commit, close the store. Idempotent."""
        if self._core is None:
            return
        log.info("stopping: closing %d connections", self._core.open_connections)
        await self._close(log_counts=True)
        log.info("stopped")

    async def _close(self, log_counts: bool) -> None:
        while self._services:
            await self._services.pop().stop()
        if self._cluster is not None:
            await self._cluster.stop_reading()
        core, self._core = self._core, None
        for server in self._servers:
            server.close()
        if core is not None:
            core.close_all()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        self._listeners.clear()
        self._publisher = None
        if self._events is not None:
            await self._events.drain()
        if self._timers is not None:
            self._timers.stop()
        writer, self._writer = self._writer, None
        if writer is not None:
            await asyncio.to_thread(writer.stop)
            if log_counts:
                commits, operations = writer.commits, writer.operations
                log.info("store: %d commits of %d operations in all", commits, operations)
        cluster, self._cluster = self._cluster, None
        if cluster is not None:
            await cluster.close()
        if self._store is not None:
            self._store.close()
            self._store = None

    def _note_listening(self, server: asyncio.Server, listener: ListenerConfig) -> None:
        for sock in server.sockets:
            host, port = sock.getsockname()[:2]
            self._note_bound(ListenerAddress(host, port, listener.transport, listener.label))

    def _note_bound(self, address: ListenerAddress) -> None:
        """A listener is bound (an MQTT one, or a service's such as the HTTP API's):
        it joins `listeners` and the log says so, in the line tests and tools wait for."""
        self._listeners.append(address)
        build = "compiled with mypyc" if compiled() else "pure Python"
        log.info(
            "midge %s (%s) listening on %s:%d (%s)",
            __version__,
            build,
            address.host,
            address.port,
            address.label,
        )

    @property
    def listeners(self) -> tuple[ListenerAddress, ...]:
        """Every bound address, in config order (a host name may bind several)."""
        return tuple(self._listeners)

    @property
    def port(self) -> int:
        """The first listener's port (the one a test fixture usually wants)."""
        self._started()
        return self._listeners[0].port

    @property
    def cluster(self) -> ClusterNode | None:
        """This node's part in a cluster (`[cluster]`); None for a lone broker."""
        return self._cluster

    @property
    def bridges(self) -> Sequence[BridgeLink]:
        """The bridges to other brokers (`[[bridges]]`), in config order."""
        for service in self._services:
            links: Sequence[BridgeLink] | None = getattr(service, "bridge_links", None)
            if links is not None:
                return links
        return ()

    @property
    def core(self) -> Core:
        """The sans-IO broker underneath (its tables, `stats`); not a stable API."""
        return self._started()

    def _started(self) -> Core:
        if self._core is None:
            raise RuntimeError("the broker is not running: use `async with midge.Broker(...)`")
        return self._core

    # ---------------------------------------------------- in-process clients

    def client(self, client_id: str = "", *, trusted: bool = True, **options: Any) -> Client:
        """A `midge.client.Client` connected in-process (no socket), not yet
        connected: `async with broker.client("app") as client:`. Any Client
        option applies (protocol_version, clean_session, will, ...). It logs in
        without credentials and the ACL does not apply to it. With
        `trusted=False` (the HTTP API's publishers) it still logs in without a
        password, but the ACL applies to it under its `username` option, as to
        a network client of that user."""
        self._started()
        loop = asyncio.get_running_loop()
        listener = INTERNAL_LISTENER if trusted else API_LISTENER

        async def open_stream() -> Streams:
            pipe = Pipe(self._started(), loop, listener)
            return pipe.reader, pipe.writer

        options.setdefault("protocol_version", PROTOCOL_MQTT_5)
        options.setdefault("keepalive", 0)  # no network in between to fail silently
        name = client_id or f"{self._internal_prefix()}{next(self._client_numbers)}"
        return Client("in-process", 0, client_id=name, open_stream=open_stream, **options)

    def _internal_prefix(self) -> str:
        """In-process clients' ids: in a cluster, each node's are its own
        (one client id has one connection cluster-wide)."""
        cluster = self.config.cluster
        if cluster is None:
            return INTERNAL_CLIENT_PREFIX
        return INTERNAL_CLIENT_PREFIX + "".join(c for c in cluster.node_name if c.isalnum()) + "x"

    async def publish(
        self,
        topic: str,
        payload: bytes | str = b"",
        qos: int = 0,
        retain: bool = False,
        *,
        properties: Properties | None = None,
    ) -> int:
        """Publish as a client would, and return when its QoS flow completes:
        a QoS 1/2 message is then stored (with a durable store) and routed.
        The ACL does not apply; on_publish hooks do. Returns the 5.0 reason
        code (0, or 0x10 when no subscriber matched)."""
        publisher = await self._shared_publisher()
        return await publisher.publish(topic, payload, qos, retain, properties=properties)

    async def _shared_publisher(self) -> Client:
        async with self._publisher_lock:
            publisher = self._publisher
            if publisher is None or not publisher.connected:
                publisher = self.client(max_inflight=0)
                await publisher.connect()
                self._publisher = publisher
            return publisher

    def subscribe(self, topic_filter: str, qos: int = 1, **options: Any) -> Subscription:
        """The messages matching `topic_filter`, from now on, as an async
        iterator: `async with broker.subscribe("a/#") as messages:`. Each
        subscription is its own in-process client (clean session, ACL not
        applied); `options` are subscribe()'s (no_local, retain_handling, ...)."""
        return Subscription(self.client(), topic_filter, qos, options)

    # ----------------------------------------------------------------- views

    def clients(self) -> list[ClientInfo]:
        """Every connected client, in-process ones included (listener "in-process")."""
        core = self._started()
        return [core.client_info(connection) for connection in core.connections.values()]

    def get_client(self, client_id: str) -> ClientInfo | None:
        core = self._started()
        connection = core.connections.get(client_id)
        return None if connection is None else core.client_info(connection)

    def sessions(self) -> list[SessionInfo]:
        """Every session, online or offline."""
        return [session_info(session) for session in self._started().sessions.values()]

    def subscriptions(self) -> list[SubscriptionInfo]:
        """Every subscription of every session, shared ones ($share/...) included."""
        return [
            subscription_info(session.client_id, topic_filter, options)
            for session in self._started().sessions.values()
            for topic_filter, options in session.subscriptions.items()
        ]

    def retained(self, topic_filter: str = "#") -> list[Message]:
        """The retained messages whose topics match `topic_filter`."""
        core = self._started()
        wall_now = core.wall_clock()
        return [
            public_message(message)
            for message in core.retained.match(topic_filter)
            if not message.expired(wall_now)
        ]

    async def disconnect(self, client_id: str) -> bool:
        """Close a client's connection (a 5.0 client gets DISCONNECT 0x98,
        Administrative action); its will is published as for a lost connection.
        False if it was not connected."""
        core = self._started()
        connection = core.connections.get(client_id)
        if connection is None:
            return False
        core.now = asyncio.get_running_loop().time()
        core.close_connection(connection, CloseReason.ADMINISTRATIVE)
        core.flush()
        return True

    async def delete_session(self, client_id: str) -> bool:
        """Discard a session, online or offline, with its subscriptions and queued
        messages (removed from the store too). A connected client is disconnected
        first as by `disconnect` (DISCONNECT 0x98, its will published). False if
        there was no such session."""
        core = self._started()
        session = core.sessions.get(client_id)
        if session is None:
            return False
        core.now = asyncio.get_running_loop().time()
        connection = core.connections.get(client_id)
        if connection is not None:
            core.close_connection(connection, CloseReason.ADMINISTRATIVE)
        if core.sessions.get(client_id) is session:  # a clean session is gone already
            core.discard_session(session)
        core.flush()
        return True

    async def reload(self) -> None:
        """What SIGHUP does (`midge serve`): read the password, ACL and API key
        files again; a broken file keeps the old rules. In a cluster every
        node does it."""
        self._reload_files()
        if self._cluster is not None:
            await self._cluster.announce_reload()

    def _reload_files(self) -> None:
        self._started().reload_auth()
        self.reload_services()

    def reload_services(self) -> None:
        """SIGHUP (`midge serve`): services that read files (the HTTP API's
        api_key_file) read them again; a broken file keeps the old contents."""
        for service in self._services:
            reload = getattr(service, "reload", None)
            if reload is not None:
                reload()
