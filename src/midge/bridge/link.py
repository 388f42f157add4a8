"""One bridge at run time: connect both sides, pass packets, retry, report.

`BridgeLink.run` is the bridge's life, by its start type:

- *automatic*: connect, and after any failure or loss wait (backoff with
  jitter: `restart_delay` growing to `restart_delay_max`) and connect again;
- *lazy*: connect once the messages waiting for the remote reach
  `threshold`, and let go after `idle_timeout` seconds without traffic;
- *once*: one attempt (every address in turn), never again.

Before any of it, before the broker's listeners open, `prime` makes (or
updates) the bridge's local session: it subscribes to what goes out, so that
from the broker's first moment what is published for the remote waits in
the store, link or no link; it also ends subscriptions of rules no longer
configured, and sets the session's own queue bound.

A connection attempt opens the remote first (CONNECT, CONNACK: its Receive
Maximum sets how many messages go out at once), then the local session; both
subscribe; then two relays run, one per direction, until either side ends,
and both close. What each side had in flight it sends again on the next
connection (splice.py).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from midge.bridge.config import BridgeConfig
from midge.bridge.splice import Splice
from midge.bridge.wire import (
    LinkError,
    Refused,
    Side,
    disconnect_reason,
    handshake,
    open_local,
    open_remote,
)
from midge.protocol.packets import (
    ConnectReturnCode,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    SubAck,
    UnsubAck,
    Unsubscribe,
)

if TYPE_CHECKING:
    from midge.broker.broker import Broker

log = logging.getLogger("midge.bridge")

LAZY_POLL = 1.0  # seconds between looks at the waiting messages of a lazy bridge
STABLE = 30.0  # a connection up this long resets the backoff


class BridgeLink:
    def __init__(self, config: BridgeConfig, core: Broker, notify: Callable[[bool], None]) -> None:
        """`notify(up)`: the link came up or went down (the state topic)."""
        self.config = config
        self.core = core
        self.notify = notify
        self.state = "starting"  # down, connecting, up, waiting (lazy), stopped
        self.address = ""  # the remote's address while up
        self.splice = Splice(config, config.try_private)  # made again without if refused
        self.connections = 0
        self.last_error = ""
        self._session_present = False
        self._next_address = 0
        self._delay = config.restart_delay
        self._last_traffic = 0.0

    # ------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """After `prime`: the link, by the start type, until cancelled."""
        config = self.config
        if config.start == "once":
            await self._attempt()
            self.state = "stopped"
            return
        while True:
            if config.start == "lazy":
                self.state = "waiting"
                await self._wait_for_threshold()
            started = asyncio.get_running_loop().time()
            try:
                idle = await self._attempt()
            except Exception:  # a bug: the link ends; the bridge tries again, later
                log.exception("bridge %s: internal error: the link ends", config.name)
                idle = False
            if not idle:
                await self._back_off(asyncio.get_running_loop().time() - started)

    async def _attempt(self) -> bool:
        """Every address in turn until one connects; then the link until it
        ends. True when it ended on purpose (a lazy link idle, the primary
        address back): the next attempt need not wait."""
        addresses = self.config.addresses
        start = self._next_address if self.config.round_robin else 0
        for offset in range(len(addresses)):
            index = (start + offset) % len(addresses)
            self._next_address = (index + 1) % len(addresses)
            try:
                return await self._connect_and_run(addresses[index])
            except LinkError as exc:
                self._failed(str(exc))
        return False

    async def _back_off(self, up_for: float) -> None:
        """Wait before the next attempt: decorrelated jitter, reset after a stable link."""
        config = self.config
        if up_for >= STABLE:
            self._delay = config.restart_delay
        delay = self._delay
        self._delay = min(config.restart_delay_max, random.uniform(config.restart_delay, delay * 3))
        self.state = "down"
        log.info("bridge %s: next attempt in %.1f s", config.name, delay)
        await asyncio.sleep(delay)

    def _failed(self, why: str) -> None:
        if why != self.last_error:  # a remote that stays away is logged once
            log.warning("bridge %s: %s", self.config.name, why)
        self.last_error = why
        self.state = "down"  # (from "up" too: the link is gone)

    # ------------------------------------------------------------ one connection

    async def _connect_and_run(self, address: str) -> bool:
        """Raises LinkError if the link cannot be made; once it was up, returns
        when it ends (True: on purpose, see `_attempt`)."""
        self.state = "connecting"
        remote = await self._open_remote(address)
        try:
            local = open_local(self.core)
            try:
                await self._run_linked(local, remote, address)
                return True
            except LinkError as exc:
                if self.state != "up":
                    raise
                self._failed(f"connection to {address} lost: {exc}")
                return False
            finally:
                local.close(disconnect=True)
        finally:
            if self.address:  # it was up: a clean end says so at the remote (no will)
                remote.send(self.splice.remote_state(False))
            remote.close(disconnect=True)
            self.splice.connection_lost()
            if self.address:
                self.address = ""
                self.notify(False)

    async def _open_remote(self, address: str) -> Side:
        """The remote connected (CONNACK 0), falling back from the bridge flag."""
        config = self.config
        while True:
            remote = await open_remote(config, address, config.connect_timeout)
            try:
                connack = await handshake(
                    remote, self.splice.remote_connect(), config.connect_timeout
                )
            except LinkError as exc:
                remote.close()
                if not self._refuses_private(exc):
                    raise
                log.info(
                    "bridge %s: %s does not take the bridge flag: without it", config.name, address
                )
                figures = self.splice.figures
                self.splice = Splice(config, False)
                self.splice.figures = figures
                continue
            self.splice.remote_connected(connack)
            self._session_present = connack.session_present
            return remote

    def _refuses_private(self, error: LinkError) -> bool:
        """A 3.1.1 remote that does not know protocol level 0x84 refuses it
        with CONNACK 1 (as Mosquitto reads it: a connection closed in the
        handshake may have any cause, and costs the flag nothing)."""
        return (
            self.splice.private
            and isinstance(error, Refused)
            and error.return_code == ConnectReturnCode.UNACCEPTABLE_PROTOCOL_VERSION
        )

    async def _run_linked(self, local: Side, remote: Side, address: str) -> None:
        splice = self.splice
        connack = await handshake(local, splice.local_connect(), self.config.connect_timeout)
        splice.local_connected(connack)
        for side, subscribe in (
            (local, splice.local_subscribe()),
            (remote, splice.remote_subscribe()),
        ):
            if subscribe is not None:
                side.send([subscribe])
        self._went_up(address)
        remote.send(splice.remote_state(True))
        local.send(splice.to_local)
        relays = [
            asyncio.create_task(self._relay(local, local, remote)),
            asyncio.create_task(self._relay(remote, local, remote)),
            asyncio.create_task(self._keep_alive(remote)),
        ]
        if self.config.start == "lazy":
            relays.append(asyncio.create_task(self._idle_watch()))
        config = self.config
        if not config.round_robin and address != config.addresses[0]:
            relays.append(asyncio.create_task(self._primary_watch()))
        try:
            done, _ = await asyncio.wait(relays, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in relays:
                task.cancel()
            await asyncio.gather(*relays, return_exceptions=True)
        for task in done:
            task.result()  # a LinkError says why it went down; None: on purpose

    def _went_up(self, address: str) -> None:
        config = self.config
        self.state = "up"
        self.address = address
        self.last_error = ""
        self.connections += 1
        self._last_traffic = asyncio.get_running_loop().time()
        version = "MQTT 5.0" if config.protocol == "5" else "MQTT 3.1.1"
        log.info(
            "bridge %s: connected to %s (%s%s, session %s)",
            config.name,
            address,
            version,
            ", as a bridge" if self.splice.private else "",
            "resumed" if self._session_present else "new",
        )
        self.notify(True)

    async def _relay(self, source: Side, local: Side, remote: Side) -> None:
        """`source`'s packets (it is `local` or `remote`) into the splice; what
        that queues, out to both sides."""
        splice = self.splice
        handle = splice.from_local if source is local else splice.from_remote
        other = remote if source is local else local
        loop = asyncio.get_running_loop()
        while True:
            for packet in await source.packets():
                kind = type(packet)
                if kind is SubAck or kind is UnsubAck or kind is PingResp:
                    self._answered(source, packet)
                elif kind is Disconnect:
                    assert isinstance(packet, Disconnect)
                    raise LinkError(f"{source.name} disconnected: {disconnect_reason(packet)}")
                else:
                    handle(packet)
                    self._last_traffic = loop.time()
            local.send(splice.to_local)
            remote.send(splice.to_remote)
            await other.drain()  # a slow side slows the other: nothing piles up here

    def _answered(self, side: Side, packet: Packet) -> None:
        if isinstance(packet, SubAck):
            refused = [code for code in packet.return_codes if code >= 0x80]
            if refused:
                log.warning(
                    "bridge %s: %s refused %d of the bridge's subscriptions",
                    self.config.name,
                    side.name,
                    len(refused),
                )

    async def _keep_alive(self, remote: Side) -> None:
        """PINGREQ every keepalive; a remote silent for a whole round is gone."""
        interval = self.config.keepalive
        if not interval:
            await asyncio.Event().wait()
        loop = asyncio.get_running_loop()
        pinged = 0.0
        while True:
            await asyncio.sleep(interval)
            if pinged and remote.received_at < pinged:
                raise LinkError(f"{remote.name} did not answer PINGREQ within {interval} s")
            pinged = loop.time()
            remote.send([PingReq()])

    async def _primary_watch(self) -> None:
        """Linked to another address than the first, without round robin: the
        first is tried every primary_retry seconds, and once it answers the
        link ends (returns) so that the next attempt starts there, at once."""
        config = self.config
        primary = config.addresses[0]
        while True:
            await asyncio.sleep(config.primary_retry)
            try:
                side = await open_remote(config, primary, config.connect_timeout)
            except LinkError:
                continue
            side.close()
            log.info("bridge %s: %s answers again: going back to it", config.name, primary)
            return

    async def _idle_watch(self) -> None:
        """Lazy: returns (the link ends) after idle_timeout without a message."""
        timeout = self.config.idle_timeout
        loop = asyncio.get_running_loop()
        while True:
            idle = loop.time() - self._last_traffic
            if idle >= timeout:
                log.info("bridge %s: idle for %g s: disconnecting", self.config.name, timeout)
                return
            await asyncio.sleep(timeout - idle)

    # ------------------------------------------------------------ the local session

    async def prime(self) -> None:
        """Subscribe the local session to what goes out (and only that)."""
        config = self.config
        local = open_local(self.core)
        try:
            await handshake(local, self.splice.local_connect(), config.connect_timeout)
            subscribe = self.splice.local_subscribe()
            stale = self._stale_filters()
            if subscribe is not None:
                local.send([subscribe])
            if stale:
                local.send([Unsubscribe(2, tuple(stale))])
            await self._answers(local, (subscribe is not None) + bool(stale))
        finally:
            local.close(disconnect=True)
        self.core.set_queue_limits(
            config.local_client_id, config.queue_limit, config.queue_full == "drop_oldest"
        )

    def _stale_filters(self) -> list[str]:
        session = self.core.sessions.get(self.config.local_client_id)
        if session is None:
            return []
        wanted = {rule.local_filter for rule in self.config.topics if rule.outgoing}
        return [item for item in session.subscriptions if item not in wanted]

    async def _answers(self, local: Side, count: int) -> None:
        """Wait for `count` SUBACK / UNSUBACK (the broker re-sends what was in
        flight first: left unanswered, it stays in flight)."""
        async with asyncio.timeout(self.config.connect_timeout):
            while count:
                for packet in await local.packets():
                    if isinstance(packet, SubAck | UnsubAck):
                        count -= 1

    async def _wait_for_threshold(self) -> None:
        config = self.config
        while True:
            session = self.core.sessions.get(config.local_client_id)
            waiting = len(session.queue) + len(session.inflight) if session else 0
            if waiting >= config.threshold:
                return
            await asyncio.sleep(LAZY_POLL)

    def figures(self) -> dict[str, int]:
        """Counts for $SYS (`$SYS/broker/midge/bridges/<name>/...`) and /metrics."""
        session = self.core.sessions.get(self.config.local_client_id)
        figures = self.splice.figures
        return {
            "connected": int(self.state == "up"),
            "queued": len(session.queue) + len(session.inflight) if session else 0,
            "sent": figures.sent,
            "received": figures.received,
            "refused": figures.refused,
            "unrouted": figures.unrouted,
            "too_large": figures.too_large,
            "dropped": session.dropped_messages if session else 0,
            "connections": self.connections,
        }

    def describe(self) -> dict[str, object]:
        """The bridge for the HTTP API: its configuration's essentials and figures."""
        config = self.config
        return {
            "name": config.name,
            "state": self.state,
            "address": self.address or None,
            "addresses": list(config.addresses),
            "protocol": config.protocol,
            "client_id": config.remote_client_id,
            "start": config.start,
            "last_error": self.last_error or None,
            "topics": [
                {
                    "pattern": rule.pattern,
                    "direction": rule.direction,
                    "qos": rule.qos,
                    "local_prefix": rule.local_prefix,
                    "remote_prefix": rule.remote_prefix,
                }
                for rule in config.topics
            ],
            **self.figures(),
        }
