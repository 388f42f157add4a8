"""The listeners of a mosquitto.conf as Midge's [[listeners]] tables.

A Mosquitto listener becomes one table: its address (`listener PORT
[ADDRESS]`, or `port` / `bind_address` for the default listener),
`protocol` and the presence of certfile + keyfile choose the transport
(tcp, tls, ws, wss), its TLS options map one to one, and with
`per_listener_settings true` its own allow_anonymous. A listener Midge
cannot open as Mosquitto did (a Unix socket, TLS with a certfile but no
keyfile, client certificates without a cafile) is left out with every one
of its lines reported. Options Midge has no key for are reported one by
one, and max_connections / max_topic_alias, per listener in Mosquitto and
global in Midge, are translated when they mean the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from midge.tools.mosquitto_conf import Directive
from midge.tools.mosquitto_conf_rules import (
    LISTENER_DEFAULTS,
    LISTENER_REASONS,
    Skip,
    flag,
    integer,
)
from midge.tools.mosquitto_conf_toml import Table


class Report(Protocol):
    """Where the listener and bridge translations report lines and resolve paths."""

    def skip(self, directive: Directive, why: str) -> None: ...

    def note(self, directive: Directive, text: str) -> None: ...

    def path(self, value: str) -> str: ...


@dataclass(eq=False)
class Listener:
    """A Mosquitto listener and the directives that configure it."""

    opener: Directive | None  # its `listener` line; None: the default listener
    options: dict[str, Directive] = field(default_factory=dict)
    security: dict[str, list[Directive]] = field(default_factory=dict)
    opened: bool = False  # the default listener opens only when configured

    def directives(self) -> list[Directive]:
        found = [self.opener] if self.opener is not None else []
        found += self.options.values()
        found += (item for items in self.security.values() for item in items)
        return sorted(found, key=lambda item: (item.part, item.line))

    def last(self, name: str) -> Directive | None:
        items = self.security.get(name)
        return items[-1] if items else None


class ListenerTranslator:
    """Turns `Listener`s into [[listeners]] tables, reporting through `report`."""

    def __init__(self, report: Report, per_listener: bool) -> None:
        self.report = report
        self.per_listener = per_listener

    def table(self, listener: Listener) -> Table | None:
        """The [[listeners]] table, or None (reported) for a listener Midge cannot open."""
        try:
            table = self.address(listener)
            self.transport(listener, table)
        except Skip as why:
            self.drop(listener, str(why))
            return None
        for name, item in listener.options.items():
            if name in LISTENER_REASONS:
                if LISTENER_DEFAULTS.get(name) == item.first:
                    self.report.note(item, "Midge's behaviour too")
                else:
                    self.report.skip(item, LISTENER_REASONS[name])
        if self.per_listener:
            self.anonymous(listener, table)
        return table

    def drop(self, listener: Listener, why: str) -> None:
        head = listener.opener or next(iter(listener.directives()))
        for item in listener.directives():
            self.report.skip(
                item,
                why
                if item is head
                else f"belongs to the listener of {head.where}, which is not translated",
            )

    def address(self, listener: Listener) -> Table:
        options = listener.options
        if listener.opener is None:
            where = "the default listener (port, bind_address)"
            port_line = options.get("port")
            port = integer(port_line) if port_line else 1883
            host = options["bind_address"].value if "bind_address" in options else ""
            first = port_line or options.get("bind_address") or listener.directives()[0]
        else:
            first = listener.opener
            where = first.where
            words = first.words
            port = integer(first)
            host = words[1] if len(words) > 1 and not words[1].startswith("#") else ""
            if port == 0:
                raise Skip("a Unix socket listener: Midge listens on TCP ports only")
        if not 1 <= port <= 65535:
            raise Skip(f"port {port} is not 1..65535 (Mosquitto would refuse it)")
        table = Table(f"{where} `{first.text}`", first.where)
        table.set("port", port, first.where)
        domain = options.get("socket_domain")
        if domain is not None:
            host = self.socket_domain(domain, host)
        if host:
            bound = options.get("bind_address") if listener.opener is None else None
            table.set("host", host, (bound or first).where)
        return table

    def socket_domain(self, item: Directive, host: str) -> str:
        every = {"ipv4": "0.0.0.0", "ipv6": "::"}
        if item.first not in every:
            raise Skip(f"socket_domain {item.first!r} is not ipv4 or ipv6 (Mosquitto refuses it)")
        if not host:
            self.report.note(item, f"every {item.first} address: {every[item.first]}")
            return every[item.first]
        if ":" in host or host.replace(".", "").isdigit():
            self.report.note(item, "the address already has that family")
        else:
            self.report.skip(item, "Midge listens on every address the host name resolves to")
        return host

    def transport(self, listener: Listener, table: Table) -> None:
        options = listener.options
        protocol = options.get("protocol")
        websocket = protocol is not None and protocol.first == "websockets"
        if protocol is not None and protocol.first not in ("mqtt", "websockets"):
            raise Skip(f"protocol {protocol.first!r}: Midge serves mqtt and websockets")
        cert, key = options.get("certfile"), options.get("keyfile")
        if (cert is None) != (key is None):
            raise Skip("TLS needs both certfile and keyfile (Mosquitto would refuse to start)")
        secure = cert is not None
        transport = {(False, False): "tcp", (True, False): "tls", (False, True): "ws"}.get(
            (secure, websocket), "wss"
        )
        table.set("transport", transport, protocol.where if protocol else table.where)
        if secure:
            self.tls(listener, table)
        else:
            for name in (
                "cafile",
                "require_certificate",
                "use_identity_as_username",
                "tls_version",
            ):
                if name in options:
                    self.report.skip(
                        options[name],
                        "no effect without certfile and keyfile (Mosquitto ignores it)",
                    )

    def tls(self, listener: Listener, table: Table) -> None:
        options = listener.options
        for name in ("certfile", "keyfile", "cafile"):
            if name in options:
                table.set(name, self.report.path(options[name].value), options[name].where)
        demand = options.get("require_certificate")
        required = demand is not None and flag(demand)
        identity = options.get("use_identity_as_username")
        if identity is not None and flag(identity):
            table.set("use_identity_as_username", True, identity.where)
            if not required:
                self.report.note(
                    identity,
                    "require_certificate = true too: Mosquitto refuses a client "
                    "without a certificate at CONNECT, Midge at the TLS handshake",
                )
                demand, required = identity, True
        if required and demand is not None:
            if "cafile" not in options:
                raise Skip("client certificates need a cafile in Midge (capath is not read)")
            table.set("require_certificate", True, demand.where)
        version = options.get("tls_version")
        if version is not None:
            midge = {"tlsv1.2": "1.2", "tlsv1.3": "1.3"}.get(version.first)
            if midge is None:
                self.report.skip(
                    version, "Midge's oldest TLS version is 1.2 (tls_version 1.2 or 1.3)"
                )
            else:
                table.set("tls_version", midge, version.where)

    def anonymous(self, listener: Listener, table: Table) -> None:
        item = listener.last("allow_anonymous")
        if item is None:
            table.set(
                "allow_anonymous",
                False,
                "Mosquitto's default",
                "per_listener_settings: not set for this listener",
            )
            return
        try:
            table.set("allow_anonymous", flag(item), item.where)
        except Skip as why:
            self.report.skip(item, str(why))
            table.set("allow_anonymous", False, "Mosquitto's default")

    def limit(self, opened: list[Listener], name: str, default: int, top: Table) -> None:
        """A per-listener Mosquitto limit that Midge has once (`name` in `top`): translated
        when it means the same for every listener."""
        lines = [item for listener in opened if (item := listener.options.get(name))]
        if not lines:
            return
        try:
            values = {integer(item) for item in lines}
        except Skip as why:
            for item in lines:
                self.report.skip(item, str(why))
            return
        if len(lines) < len(opened):
            values.add(default)
        if name == "max_connections":
            values = {max(value, -1) for value in values}
            if values == {-1}:
                for item in lines:
                    self.report.note(item, "no limit, as in Midge")
                return
            if len(opened) > 1:
                for item in lines:
                    self.report.skip(
                        item,
                        "Mosquitto limits each listener; Midge's max_connections "
                        "counts the clients of all listeners together",
                    )
                return
        if len(values) > 1:
            for item in lines:
                self.report.skip(item, f"listeners differ; Midge has one {name} for all of them")
            return
        value = values.pop()
        if name == "max_topic_alias" and not 0 <= value <= 65535:
            for item in lines:
                self.report.skip(item, "must be 0..65535 (Mosquitto refuses it)")
            return
        top.set(name, max(value, 0), ", ".join(item.where for item in lines))
