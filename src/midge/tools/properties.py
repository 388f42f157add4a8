"""mosquitto_pub / mosquitto_sub's `-D COMMAND PROPERTY VALUE`: MQTT 5.0 properties
from the command line.

Command and property names are mosquitto's: the packet (connect, publish,
subscribe, unsubscribe, disconnect, will) and the specification's property
name with `-` between words, either in any case. `user-property` takes a
name and a value. Which command each tool takes follows mosquitto's manual
(pub: connect, publish, disconnect, will; sub: connect, subscribe,
unsubscribe, disconnect, will); which property a command takes follows the
specification, less what only a server may send. Unlike mosquitto, a number
that is not one, or out of the property's range, is an error, not 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from midge.protocol import properties as spec
from midge.protocol.properties import Properties, PropertyId

COMMANDS: Final = {
    "pub": ("connect", "publish", "disconnect", "will"),
    "sub": ("connect", "subscribe", "unsubscribe", "disconnect", "will"),
}
_PACKETS: Final = {
    "connect": spec.CONNECT,
    "publish": spec.PUBLISH,
    "subscribe": spec.SUBSCRIBE,
    "unsubscribe": spec.UNSUBSCRIBE,
    "disconnect": spec.DISCONNECT,
    "will": spec.WILL,
}
# A client must not send a Subscription Identifier on PUBLISH [MQTT-3.3.4-6].
_NOT_FROM_CLIENTS: Final = {("publish", PropertyId.SUBSCRIPTION_IDENTIFIER)}
_BY_NAME: Final = {s.attribute.replace("_", "-"): s for s in spec.SPECS.values()}
_INTEGERS: Final = (spec.BYTE, spec.TWO_BYTE, spec.FOUR_BYTE, spec.VARIABLE)


class PropertyError(ValueError):
    """A -D argument that names no command or property, or has a bad value."""


def names(command: str) -> list[str]:
    """The property names `command` accepts (for messages and --help)."""
    packet = _PACKETS[command]
    return [
        name
        for name, s in _BY_NAME.items()
        if packet in s.packets and (command, s.identifier) not in _NOT_FROM_CLIENTS
    ]


def parse_properties(tool: str, arguments: Sequence[Sequence[str]]) -> dict[str, Properties]:
    """Every -D of the command line, as the properties of each command given."""
    values: dict[str, dict[str, object]] = {}
    for argument in arguments:
        command, name, value = _split(tool, argument)
        attribute, parsed = _value(command, name, value)
        fields = values.setdefault(command, {})
        if attribute == "user_properties":
            previous = fields.get(attribute, ())
            assert isinstance(previous, tuple)
            fields[attribute] = (*previous, parsed)
        elif attribute in fields:
            raise PropertyError(f"-D {command} {name} is given twice")
        else:
            fields[attribute] = parsed
    return {command: Properties(**fields) for command, fields in values.items()}  # type: ignore[arg-type]


def _split(tool: str, argument: Sequence[str]) -> tuple[str, str, list[str]]:
    if len(argument) < 3:
        raise PropertyError("-D needs COMMAND PROPERTY VALUE (user-property: NAME VALUE)")
    command, name, *value = (argument[0].lower(), argument[1].lower(), *argument[2:])
    if command not in COMMANDS[tool]:
        raise PropertyError(
            f"-D: unknown command {argument[0]!r}; use one of {', '.join(COMMANDS[tool])}"
        )
    if name not in names(command):
        raise PropertyError(
            f"-D {command}: unknown property {argument[1]!r}; "
            f"{command} takes {', '.join(names(command))}"
        )
    wanted = 2 if name == "user-property" else 1
    if len(value) != wanted:
        usage = "NAME VALUE" if wanted == 2 else "VALUE"
        raise PropertyError(f"-D {command} {name} takes {usage}")
    return command, name, value


def _value(command: str, name: str, value: list[str]) -> tuple[str, object]:
    """The `Properties` attribute and the typed value of one -D."""
    s = _BY_NAME[name]
    if s.kind == spec.STRING_PAIR:
        return "user_properties", (value[0], value[1])
    if name == "subscription-identifier":
        return "subscription_identifiers", (_integer(name, value[0], s),)
    if s.kind in _INTEGERS:
        return s.attribute, _integer(name, value[0], s)
    if s.kind == spec.BINARY:
        return s.attribute, value[0].encode("utf-8", "surrogateescape")
    return s.attribute, value[0]


def _integer(name: str, text: str, s: spec.PropertySpec) -> int:
    try:
        number = int(text)
    except ValueError:
        raise PropertyError(f"-D {name}: not a whole number: {text!r}") from None
    if not s.low <= number <= s.high:
        raise PropertyError(f"-D {name}: {number} is outside {s.low}..{s.high}")
    return number
