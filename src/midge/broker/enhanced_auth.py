"""MQTT 5.0 enhanced authentication: the methods the broker offers (section 4.12).

A 5.0 CONNECT that names an Authentication Method starts an *exchange*: the
broker answers each step with AUTH 0x18 (continue) until the exchange
succeeds (CONNACK 0, or AUTH 0x00 when the client re-authenticates with AUTH
0x19) or fails (CONNACK 0x86, or DISCONNECT 0x87). An exchange is any object
with `step(data) -> (status, data)` and the `username` it authenticated:

- the auth hook's `start_auth(method, client_id, username, peer)` is asked
  first (see hooks.py); it returns an exchange, or None for a method it does
  not handle;
- "SCRAM-SHA-256" is built in when `scram_file` names a credentials file
  (`midge passwd --scram` writes one): see midge/scram.py.

Any other method gets CONNACK 0x8C (bad authentication method).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, Protocol

from midge import scram
from midge.broker.config import ConfigError
from midge.protocol.packets import Connect

log = logging.getLogger("midge.broker")

Status = Literal["continue", "success", "failure"]
CONTINUE: Final = "continue"
SUCCESS: Final = "success"
FAILURE: Final = "failure"


class Exchange(Protocol):
    """One authentication conversation: one CONNECT's, or one re-authentication's."""

    username: str | None

    def step(self, data: bytes | None) -> tuple[Status, bytes | None]:
        """The client's Authentication Data in; what to answer and with which data."""
        ...


class StartAuth(Protocol):
    def __call__(
        self, method: str, client_id: str, username: str | None, peer: str
    ) -> Exchange | None: ...


@dataclass(slots=True)
class PendingAuth:
    """An exchange under way on a connection, and the CONNECT waiting for it
    (None for a re-authentication)."""

    method: str
    exchange: Exchange
    connect: Connect | None


class ScramExchange:
    """SCRAM-SHA-256 as an exchange: client-first, then client-final."""

    __slots__ = ("_credentials", "_server", "_started", "username")

    def __init__(self, credentials: dict[str, scram.Credential]) -> None:
        self._credentials = credentials
        self._server = scram.ScramServer()
        self._started = False
        self.username: str | None = None

    def step(self, data: bytes | None) -> tuple[Status, bytes | None]:
        try:
            if not self._started:
                self._started = True
                return CONTINUE, self._server.first(data, self._credentials)
            answer = self._server.final(data)
        except scram.ScramError as exc:
            log.info("SCRAM-SHA-256 for %r failed: %s", self._server.username, exc)
            return FAILURE, None
        self.username = self._server.username
        return SUCCESS, answer


class _Refusing:
    """The exchange of a hook that failed: it refuses."""

    username: str | None = None

    def step(self, data: bytes | None) -> tuple[Status, bytes | None]:
        return FAILURE, None


def load_scram_credentials(path: str) -> dict[str, scram.Credential]:
    """user -> credential from a file of `user:SCRAM-SHA-256$...` lines; other
    lines (comments, blank) are skipped. ConfigError names a bad line."""
    credentials: dict[str, scram.Credential] = {}
    try:
        lines = Path(path).read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config key 'scram_file': cannot read {path}: {exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        username, _, secret = line.partition(":")
        try:
            credentials[username] = scram.parse_credential(secret)
        except scram.ScramError as exc:
            raise ConfigError(f"config key 'scram_file': {path} line {number}: {exc}") from None
    return credentials


class EnhancedAuth:
    """The authentication methods on offer, asked by name."""

    __slots__ = ("_hook_start", "scram_credentials", "scram_file")

    def __init__(self, scram_file: str, hook_start: StartAuth | None) -> None:
        self._hook_start = hook_start
        self.scram_file = scram_file
        self.scram_credentials = load_scram_credentials(scram_file) if scram_file else None

    def reload(self) -> None:
        """Read the credentials file again (SIGHUP); ConfigError keeps the old ones."""
        if self.scram_file:
            self.scram_credentials = load_scram_credentials(self.scram_file)

    def start(
        self, method: str, client_id: str, username: str | None, peer: str
    ) -> Exchange | None:
        """A new exchange for `method`, or None when the method is not offered."""
        if self._hook_start is not None:
            try:
                exchange = self._hook_start(method, client_id, username, peer)
            except Exception:
                log.exception("auth_hook.start_auth failed for client %r", client_id)
                return _Refusing()  # fail closed, as the other hook methods do
            if exchange is not None:
                return exchange
        if method == scram.METHOD and self.scram_credentials is not None:
            return ScramExchange(self.scram_credentials)
        return None
