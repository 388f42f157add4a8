"""Event hooks: Python code told what happens in the broker, and asked about messages.

A hook object has any of these methods (subclass `Hooks` and override what
you need; the others cost nothing, since only overridden methods are called):

- `on_connect(client)`: a client's CONNECT was accepted (after CONNACK 0).
- `on_disconnect(client, reason)`: a connected client's connection ended.
- `on_subscribe(client, topic_filter, qos)`: a subscription was granted.
- `on_unsubscribe(client, topic_filter)`: a subscription was removed.
- `on_publish(client, message)`: a client's PUBLISH or will, before routing.
  Return None (or True) to route it unchanged, a `Message` to route that one
  instead (`dataclasses.replace(message, payload=...)`: topic, payload,
  retain and properties may change, the QoS stays the publisher's, and the
  ACL applies to what is returned), False to drop it. A dropped QoS 1/2
  message is still acknowledged; a 5.0 client's acknowledgement says 0x10
  (no matching subscribers).
- `on_deliver(client_id, message)`: a message was routed to this session
  (sent now, or queued for it).

`client` is a `ClientInfo` snapshot. Each method may be a plain function
or `async def`. A plain one runs on the broker's loop, inside the packet's
handling: it must not block. An async `on_publish` is awaited before the
message is routed, and the client's later packets wait for it (in order);
any other async hook runs as a task, and the broker does not wait for it.
An exception in a hook is logged with its traceback and costs only that
event: for `on_publish` the message is not routed (fail closed; a 5.0
client's acknowledgement says 0x80), and the client stays connected.

Hooks come from the config (`hooks = ["package.module:ClassName"]`, each made
with no arguments) or are passed to `midge.Broker(hooks=[...])`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Final

from midge.broker.config import ConfigError
from midge.broker.hooks import make_instance
from midge.broker.views import ClientInfo
from midge.client.events import Message
from midge.protocol.reasons import NO_MATCHING_SUBSCRIBERS, SUCCESS, UNSPECIFIED_ERROR

log = logging.getLogger("midge.hooks")

EVENTS: Final = (
    "on_connect",
    "on_disconnect",
    "on_subscribe",
    "on_unsubscribe",
    "on_publish",
    "on_deliver",
)

PublishVerdict = Message | bool | None
"""What `on_publish` answers: None/True route unchanged, False drop, a Message replaces."""
Decision = tuple[int, Message]
"""A reason code (SUCCESS: route) and the message to route."""
Deciding = Coroutine[Any, Any, Decision]


class Hooks:
    """No opinion on anything: subclass it and override the events you need."""

    def on_connect(self, client: ClientInfo) -> Any:
        return None

    def on_disconnect(self, client: ClientInfo, reason: str) -> Any:
        return None

    def on_subscribe(self, client: ClientInfo, topic_filter: str, qos: int) -> Any:
        return None

    def on_unsubscribe(self, client: ClientInfo, topic_filter: str) -> Any:
        return None

    def on_publish(
        self, client: ClientInfo | None, message: Message
    ) -> PublishVerdict | Awaitable[PublishVerdict]:
        return None

    def on_deliver(self, client_id: str, message: Message) -> Any:
        return None


class EventHooks:
    """The hooks a broker calls: per event, the overriding methods of every hook
    object, in the order given. `has(event)` is what the core checks first."""

    def __init__(self, hooks: Sequence[object]) -> None:
        self.handlers: dict[str, list[Callable[..., Any]]] = {name: [] for name in EVENTS}
        for hook in hooks:
            for name in EVENTS:
                method = getattr(hook, name, None)
                if method is None or _inherited_no_op(hook, name):
                    continue
                if not callable(method):
                    raise ConfigError(f"hook {type(hook).__name__}.{name} is not callable")
                self.handlers[name].append(method)
        self.connect = tuple(self.handlers["on_connect"])
        self.disconnect = tuple(self.handlers["on_disconnect"])
        self.subscribe = tuple(self.handlers["on_subscribe"])
        self.unsubscribe = tuple(self.handlers["on_unsubscribe"])
        self.publish = tuple(self.handlers["on_publish"])
        self.deliver = tuple(self.handlers["on_deliver"])
        self._tasks: set[asyncio.Task[Any]] = set()

    def __bool__(self) -> bool:
        return any(self.handlers.values())

    def notify(self, handlers: tuple[Callable[..., Any], ...], *args: Any) -> None:
        """Call each handler; an async one runs as a task; exceptions are logged."""
        for handler in handlers:
            try:
                result = handler(*args)
            except Exception:
                log.exception("hook %s failed", _name(handler))
                continue
            if inspect.isawaitable(result):
                self._spawn(handler, result)

    def _spawn(self, handler: Callable[..., Any], awaitable: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)  # a task nobody holds may be collected mid-way
        task.add_done_callback(partial_done(self._tasks, handler))

    def when_decided(self, decision: Deciding, then: Callable[[int, Message, float], None]) -> None:
        """Await an async on_publish's `decision` as a task, then call
        `then(code, message, loop_time)` (not if the broker stops first)."""
        task = asyncio.ensure_future(decision)
        self._tasks.add(task)

        def done(finished: asyncio.Task[Decision]) -> None:
            self._tasks.discard(finished)
            if not finished.cancelled():
                code, message = finished.result()  # decide() catches the hooks' exceptions
                then(code, message, asyncio.get_running_loop().time())

        task.add_done_callback(done)

    async def drain(self) -> None:
        """Wait for the hook tasks still running (the broker's stop)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def decide(self, client: ClientInfo | None, message: Message) -> Decision | Deciding:
        """Run the on_publish handlers in turn: (reason code, the message to route).
        The code is SUCCESS (route it), NO_MATCHING_SUBSCRIBERS (a hook dropped
        it) or UNSPECIFIED_ERROR (a hook failed). A coroutine instead when a
        handler answered with an awaitable: the caller awaits it."""
        for index, handler in enumerate(self.publish):
            try:
                verdict = handler(client, message)
            except Exception:
                log.exception("hook %s failed; the message is not routed", _name(handler))
                return UNSPECIFIED_ERROR, message
            if inspect.isawaitable(verdict):
                return self._decide_async(client, message, index, verdict)
            code, message = _apply(verdict, message, handler)
            if code != SUCCESS:
                return code, message
        return SUCCESS, message

    async def _decide_async(
        self, client: ClientInfo | None, message: Message, index: int, first: Awaitable[Any]
    ) -> Decision:
        pending: Awaitable[Any] | None = first
        for handler in self.publish[index:]:
            try:
                verdict = await pending if pending is not None else handler(client, message)
                if inspect.isawaitable(verdict):
                    verdict = await verdict
            except Exception:
                log.exception("hook %s failed; the message is not routed", _name(handler))
                return UNSPECIFIED_ERROR, message
            pending = None
            code, message = _apply(verdict, message, handler)
            if code != SUCCESS:
                return code, message
        return SUCCESS, message


def _apply(verdict: Any, message: Message, handler: Callable[..., Any]) -> Decision:
    if verdict is None or verdict is True:
        return SUCCESS, message
    if verdict is False:
        return NO_MATCHING_SUBSCRIBERS, message
    if isinstance(verdict, Message):
        return SUCCESS, verdict
    log.error(
        "hook %s answered %r; expected None, True, False or a Message: not routed",
        _name(handler),
        verdict,
    )
    return UNSPECIFIED_ERROR, message


def partial_done(
    tasks: set[asyncio.Task[Any]], handler: Callable[..., Any]
) -> Callable[[asyncio.Task[Any]], None]:
    def done(task: asyncio.Task[Any]) -> None:
        tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("hook %s failed", _name(handler), exc_info=task.exception())

    return done


def _inherited_no_op(hook: object, name: str) -> bool:
    """Whether `hook`'s method `name` is `Hooks`'s own, which does nothing."""
    return getattr(type(hook), name, None) is getattr(Hooks, name)


def _name(handler: Callable[..., Any]) -> str:
    owner = getattr(handler, "__self__", None)
    label = getattr(handler, "__qualname__", repr(handler))
    return f"{type(owner).__name__}.{handler.__name__}" if owner is not None else label


def load_hooks(specs: Sequence[str]) -> list[object]:
    """One instance of each "package.module:ClassName" (config key `hooks`)."""
    return [make_instance(spec, "hooks") for spec in specs]
