"""The broker's authorization: may this client publish, subscribe, receive?

Asks the auth hook first (if one is configured), then the ACL file (if
one is configured); with neither, the broker has no `Authorizer` at all and
pays nothing for it. The rules themselves are in `acl.py`, the hook
interface in `hooks.py`.

Publish and receive decisions are cached per client id and topic: most
traffic repeats a few topics, so after the first message a check is two
dict lookups. A client's cache goes when it connects under another user
name, when its session ends, and (all of them) when the rules are replaced
by `Broker.reload_auth()`. The user name of an offline persistent session
is the one it last connected with, as in Mosquitto; a session restored
from the store that has not reconnected since has no known user name, so
its messages are queued unchecked and checked when they are sent.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from midge.broker.acl import AccessControl, AclFileError, load_acl_file
from midge.broker.config import BrokerConfig, ConfigError
from midge.broker.connection import State
from midge.broker.hooks import Action, AuthHook, ask_authorize
from midge.broker.internal import INTERNAL_LISTENER

if TYPE_CHECKING:
    from midge.broker.connection import Connection

log = logging.getLogger("midge.broker")

MAX_CACHED_TOPICS = 4096  # per client and direction; beyond it that cache starts afresh
READERS_CACHE_SIZE = 65536  # topics whose allowed receivers are remembered


class _Client:
    """What is known about one client id: its user name and cached decisions."""

    __slots__ = ("read", "username", "write")

    def __init__(self, username: str | None) -> None:
        self.username = username
        self.read: dict[str, bool] = {}
        self.write: dict[str, bool] = {}


class Authorizer:
    def __init__(self, acl: AccessControl | None, hook: AuthHook | None) -> None:
        self.acl = acl
        self.hook = hook
        self._clients: dict[str, _Client] = {}
        # Topic -> (the router's receivers, those allowed to read). The router
        # returns the same dict for a topic until subscriptions change, so a
        # hit costs one lookup and an identity test per message, not one per
        # receiver. Cleared whenever a known user name or the rules change.
        self._readers: dict[str, tuple[dict[str, int], dict[str, int]]] = {}

    def replace_acl(self, acl: AccessControl | None) -> None:
        """New rules: every cached decision goes (known user names stay)."""
        self.acl = acl
        self._readers.clear()
        for client in self._clients.values():
            client.read = {}
            client.write = {}

    def identify(self, client_id: str, username: str | None) -> None:
        """A client connected: its user name decides for its session from now on."""
        self._client(client_id, username)

    def forget(self, client_id: str) -> None:
        """The session ended: nothing about this client id is needed any more."""
        if self._clients.pop(client_id, None) is not None:
            self._readers.clear()

    # ------------------------------------------------------------- questions

    def can_publish(self, connection: Connection, topic: str) -> bool:
        """May this client's PUBLISH (or will) to `topic` be routed? Logs a refusal once."""
        if connection.listener is INTERNAL_LISTENER:
            return True  # the embedding program's own client
        client_id, username = connection.client_id, connection.username
        if connection.state is not State.CONNECTED:
            # A will, published as its connection closes: the session may be
            # gone already, so nothing is cached for it.
            return self._decide_publish(client_id, username, topic)
        cache = self._client(client_id, username).write
        allowed = cache.get(topic)
        if allowed is None:
            allowed = _remember(cache, topic, self._decide_publish(client_id, username, topic))
        return allowed

    def can_subscribe(self, connection: Connection, topic_filter: str) -> bool:
        """Not cached: SUBSCRIBE is rare next to PUBLISH."""
        if connection.listener is INTERNAL_LISTENER:
            return True
        return self._decide(connection.client_id, connection.username, "subscribe", topic_filter)

    def can_receive(self, connection: Connection, topic: str) -> bool:
        """May a message on `topic` be sent to this connected client?"""
        if connection.listener is INTERNAL_LISTENER:
            return True
        client_id = connection.client_id
        return self._can_read(client_id, self._client(client_id, connection.username), topic)

    def readers(
        self, topic: str, targets: dict[str, int], connections: dict[str, Connection]
    ) -> dict[str, int]:
        """The subscribers among `targets` (client id -> QoS) that may read `topic`.

        The caller must not change the result (it is cached).
        """
        cached = self._readers.get(topic)
        if cached is not None and cached[0] is targets:
            return cached[1]
        allowed = {}
        for client_id, qos in targets.items():
            connection = connections.get(client_id)
            if connection is not None:
                if not self.can_receive(connection, topic):
                    continue
            else:
                client = self._clients.get(client_id)
                # None: restored from the store and not seen since; checked when sent.
                if client is not None and not self._can_read(client_id, client, topic):
                    continue
            allowed[client_id] = qos
        if len(self._readers) >= READERS_CACHE_SIZE:
            self._readers.clear()
        # Holding `targets` keeps its identity from being reused by another dict.
        self._readers[topic] = (targets, allowed)
        return allowed

    # -------------------------------------------------------------- answers

    def _client(self, client_id: str, username: str | None) -> _Client:
        client = self._clients.get(client_id)
        if client is None or client.username != username:
            client = self._clients[client_id] = _Client(username)
            self._readers.clear()  # this client's answers may differ now
        return client

    def _can_read(self, client_id: str, client: _Client, topic: str) -> bool:
        cache = client.read
        allowed = cache.get(topic)
        if allowed is None:
            allowed = self._decide(client_id, client.username, "read", topic)
            if not allowed:
                log.debug("not delivering %r to client %r: no read access", topic, client_id)
            _remember(cache, topic, allowed)
        return allowed

    def _decide_publish(self, client_id: str, username: str | None, topic: str) -> bool:
        allowed = self._decide(client_id, username, "publish", topic)
        if not allowed:
            log.info(
                "client %r (user %r) may not publish to %r: message dropped",
                client_id,
                username,
                topic,
            )
        return allowed

    def _decide(self, client_id: str, username: str | None, action: Action, topic: str) -> bool:
        if self.hook is not None:
            answer = ask_authorize(self.hook, client_id, username, action, topic)
            if answer is not None:
                return answer
        acl = self.acl
        if acl is None:
            return True  # a hook without an opinion and no ACL file: as without either
        if action == "publish":
            return acl.can_publish(client_id, username, topic)
        if action == "read":
            return acl.can_read(client_id, username, topic)
        return acl.can_subscribe(client_id, username, topic)


def _remember(cache: dict[str, bool], topic: str, allowed: bool) -> bool:
    if len(cache) >= MAX_CACHED_TOPICS:
        cache.clear()  # a client walking many topics must not grow memory
    cache[topic] = allowed
    return allowed


# ------------------------------------------------------------------ loading


def load_acl(path: str) -> AccessControl | None:
    """The ACL of `acl_file` (None when unset); raises AclFileError."""
    return AccessControl(load_acl_file(path)) if path else None


def build_authorizer(config: BrokerConfig, hook: AuthHook | None) -> Authorizer | None:
    """At start: None when neither an ACL file nor a hook is configured.

    A broken ACL file stops the start: ConfigError names the key, file and line.
    """
    try:
        acl = load_acl(config.acl_file)
    except AclFileError as exc:
        raise ConfigError(f"config key 'acl_file': {exc}") from None
    if acl is None and hook is None:
        return None
    return Authorizer(acl, hook)
