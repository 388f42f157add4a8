"""Authentication and authorization hooks: Python code the broker asks first.

Config key `auth_hook = "package.module:ClassName"` names a class; the
broker imports it and makes one instance (no arguments) at start. Every
method answers True (allow), False (refuse) or None (no opinion: the
password file, `allow_anonymous` and the ACL file decide, as without a hook).

- `authenticate(client_id, username, password, peer)` at each CONNECT
  (`peer` is "address:port"; `client_id` is "" when the client asks the
  broker to assign one). False refuses with CONNACK 4 (bad user name or
  password) when a user name was sent, else 5 (not authorized).
- `authorize(client_id, username, action, topic)` with action "publish"
  (topic name), "subscribe" (topic filter) or "read" (a message on a topic
  name is about to be delivered to this client).

- optionally `start_auth(method, client_id, username, peer)` for MQTT 5.0
  enhanced authentication: an exchange object for `method`, or None for a
  method the hook does not handle (see enhanced_auth.py).

Hooks run synchronously on the broker's event loop: they must not block
(no network or disk per call; load what they need in `__init__`). Answers to
"publish" and "read" are cached per client and topic until the client
connects under another user name or `Broker.reload_auth()` runs. An
exception in a hook is logged and counts as a refusal (fail closed).
Subclass `BaseAuthHook` and override what you need; any class with these two
methods will do.
"""

from __future__ import annotations

import importlib
import logging
from typing import Literal, Protocol

from midge.broker.config import ConfigError

log = logging.getLogger("midge.broker")

Action = Literal["publish", "subscribe", "read"]


class AuthHook(Protocol):
    def authenticate(
        self, client_id: str, username: str | None, password: bytes | None, peer: str
    ) -> bool | None: ...

    def authorize(
        self, client_id: str, username: str | None, action: Action, topic: str
    ) -> bool | None: ...


class BaseAuthHook:
    """A hook with no opinion on anything: subclass it and override what you need."""

    def authenticate(
        self, client_id: str, username: str | None, password: bytes | None, peer: str
    ) -> bool | None:
        return None

    def authorize(
        self, client_id: str, username: str | None, action: Action, topic: str
    ) -> bool | None:
        return None


class HookError(ConfigError):
    """The configured hook cannot be loaded; the message names the config key."""


def load_hook(spec: str) -> AuthHook:
    """Import `package.module:ClassName` and make its one instance."""
    hook = make_instance(spec, "auth_hook")
    for method in ("authenticate", "authorize"):
        if not callable(getattr(hook, method, None)):
            raise HookError(f"config key 'auth_hook': {spec} has no method {method}()")
    return hook  # type: ignore[return-value]


def make_instance(spec: str, key: str) -> object:
    """The one instance (made with no arguments) of the class `spec` names as
    "package.module:ClassName"; HookError names config key `key` otherwise."""
    module_name, _, class_name = spec.partition(":")
    if not module_name or not class_name:
        raise HookError(f"config key {key!r}: {spec!r} is not 'package.module:ClassName'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HookError(f"config key {key!r}: cannot import {module_name!r}: {exc}") from None
    made_by = getattr(module, class_name, None)
    if made_by is None:
        raise HookError(f"config key {key!r}: {module_name!r} has no {class_name!r}")
    try:
        instance: object = made_by()
    except Exception as exc:
        raise HookError(f"config key {key!r}: {spec} failed to start: {exc!r}") from None
    return instance


def ask_authenticate(
    hook: AuthHook, client_id: str, username: str | None, password: bytes | None, peer: str
) -> bool | None:
    """The hook's answer at CONNECT; an exception refuses (fail closed)."""
    try:
        answer = hook.authenticate(client_id, username, password, peer)
    except Exception:
        log.exception("auth_hook.authenticate failed for client %r from %s", client_id, peer)
        return False
    return None if answer is None else bool(answer)


def ask_authorize(
    hook: AuthHook, client_id: str, username: str | None, action: Action, topic: str
) -> bool | None:
    """The hook's answer for one action on one topic; an exception refuses."""
    try:
        answer = hook.authorize(client_id, username, action, topic)
    except Exception:
        log.exception("auth_hook.authorize failed: %s %r by client %r", action, topic, client_id)
        return False
    return None if answer is None else bool(answer)
