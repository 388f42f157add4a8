"""`midge pub` and `midge sub`: the arguments of mosquitto_pub / mosquitto_sub.

The short flags are mosquitto's, so `-h` is the host and help is `--help`
only. This module only defines arguments and dispatches: the client and the
tools' work are imported when a command runs, so `midge --help` stays fast.

Exit status (both commands, as in mosquitto_pub / mosquitto_sub where they
have one): 0 success; 1 no connection (nothing listening, DNS, TLS), the
connection lost, a timeout while connecting, or a file that cannot be read;
2 bad arguments; the CONNACK return code when the broker refuses the
connection (MQTT 3.1.1: 1 unacceptable protocol version, 2 identifier
rejected, 3 server unavailable, 4 bad user name or password, 5 not
authorized; MQTT 5.0: its reason code, e.g. 134 bad user name or password,
135 not authorized); 27 when `sub -W` runs out of time. stderr always says
which.

MQTT 5.0 (`-V mqttv5`, implied by -D): `-D COMMAND PROPERTY VALUE` adds a
property to a packet as mosquitto's -D does (`-D connect
session-expiry-interval 60`, `-D publish user-property NAME VALUE`, `-D
subscribe subscription-identifier 5`); `-x SECONDS` sets the session expiry
interval (-1: never; with -c the default is never).
"""

from __future__ import annotations

import argparse

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_TIMED_OUT = 27  # mosquitto's MOSQ_ERR_TIMEOUT, what mosquitto_sub -W exits with

VERSIONS = {"mqttv31": 3, "31": 3, "mqttv311": 4, "311": 4, "mqttv5": 5, "5": 5}


def _qos(text: str) -> int:
    if text not in ("0", "1", "2"):
        raise argparse.ArgumentTypeError(f"QoS must be 0, 1 or 2, not {text!r}")
    return int(text)


def _keepalive(text: str) -> int:
    value = _non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError("keepalive must be 0..65535 seconds")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def _version(text: str) -> int:
    if text.lower() not in VERSIONS:
        raise argparse.ArgumentTypeError("use mqttv5, mqttv311 or mqttv31 (or 5, 311, 31)")
    return VERSIONS[text.lower()]


NEVER_EXPIRES = 0xFFFFFFFF


def _session_expiry(text: str) -> int:
    """-x: 0..4294967295 seconds; -1 (or ∞, as mosquitto takes) for never."""
    if text in ("-1", "∞"):
        return NEVER_EXPIRES
    value = _non_negative_int(text)
    if value > NEVER_EXPIRES:
        raise argparse.ArgumentTypeError(f"must be at most {NEVER_EXPIRES} (or -1 for never)")
    return value


def _epilog() -> str | None:
    return "\n\n".join(__doc__.split("\n\n")[2:4]) if __doc__ else None


def _add_connection_arguments(parser: argparse.ArgumentParser, commands: str) -> None:
    """The flags both commands share: broker, identity, session, will, TLS."""
    parser.add_argument("--help", action="help", help="show this help and exit")
    net = parser.add_argument_group("broker")
    net.add_argument("-h", "--host", help="broker host (default localhost)")
    net.add_argument("-p", "--port", type=int, help="broker port (default 1883, 8883 with TLS)")
    net.add_argument(
        "-L", "--url", help="mqtt(s)://[user[:password]@]host[:port]/topic (for -h -p -u -P -t)"
    )
    net.add_argument(
        "-w",
        "--ws",
        action="store_true",
        help="MQTT over WebSocket, path /mqtt; wss with the TLS flags "
        "(default port 80, 443 with TLS; Midge extension)",
    )
    net.add_argument(
        "--ws-path",
        metavar="PATH",
        help="MQTT over WebSocket at this path (implies --ws; Midge extension)",
    )
    net.add_argument(
        "-V",
        "--protocol-version",
        type=_version,
        metavar="VERSION",
        help="mqttv5 (or 5), mqttv311 (or 311; the default without -D) or mqttv31 (or 31)",
    )
    net.add_argument(
        "-k",
        "--keepalive",
        metavar="SECONDS",
        type=_keepalive,
        default=60,
        help="seconds (default 60)",
    )
    net.add_argument(
        "--connect-timeout",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="give up connecting after this long (default 10)",
    )
    ident = parser.add_argument_group("client")
    ident.add_argument("-i", "--id", help="client id (default: a random midge-pub-/midge-sub- id)")
    ident.add_argument(
        "-I", "--id-prefix", metavar="PREFIX", help="client id: this prefix and the process id"
    )
    ident.add_argument("-u", "--username", metavar="USER", help="user name")
    ident.add_argument("-P", "--pw", dest="password", help="password")
    ident.add_argument(
        "-c",
        "--disable-clean-session",
        dest="persistent",
        action="store_true",
        help="persistent session (clean session off); needs -i",
    )
    ident.add_argument("-q", "--qos", type=_qos, default=0, help="0, 1 or 2 (default 0)")
    ident.add_argument(
        "-d", "--debug", action="store_true", help="print packets sent and received on stderr"
    )
    ident.add_argument("--quiet", action="store_true", help="print no error messages")
    mqtt5 = parser.add_argument_group("MQTT 5.0")
    mqtt5.add_argument(
        "-D",
        "--property",
        nargs="+",
        action="append",
        default=[],
        metavar=("COMMAND PROPERTY", "VALUE"),
        help="add an MQTT 5.0 property to a packet, as mosquitto's -D: COMMAND is "
        f"{commands}, PROPERTY the spec's name with '-' (e.g. -D connect "
        "session-expiry-interval 60, -D connect user-property NAME VALUE); implies -V mqttv5",
    )
    mqtt5.add_argument(
        "-x",
        "--session-expiry-interval",
        type=_session_expiry,
        metavar="SECONDS",
        help="keep the session this long after disconnecting (-1: never; default 0, "
        "never with -c); MQTT 5.0 only",
    )
    will = parser.add_argument_group("will")
    will.add_argument("--will-topic", metavar="TOPIC", help="topic of the will message")
    will.add_argument("--will-payload", metavar="PAYLOAD", help="will payload (default empty)")
    will.add_argument(
        "--will-qos", metavar="QOS", type=_qos, default=0, help="will QoS (default 0)"
    )
    will.add_argument("--will-retain", action="store_true", help="retain the will")
    tls = parser.add_argument_group("TLS")
    tls.add_argument("--cafile", help="CA certificates (PEM) to verify the broker; turns TLS on")
    tls.add_argument("--capath", help="directory of CA certificates; turns TLS on")
    tls.add_argument("--cert", help="client certificate (PEM), for brokers that require one")
    tls.add_argument("--key", help="the client certificate's private key (PEM)")
    tls.add_argument(
        "--insecure",
        action="store_true",
        help="do not check the broker certificate's host name (the chain is still verified)",
    )
    parser.set_defaults(tool_parser=parser)


def add_pub_arguments(parser: argparse.ArgumentParser) -> None:
    """`midge pub`: publish one message, a file, stdin, or stdin line by line."""
    parser.description = "Publish MQTT messages (the flags of mosquitto_pub)."
    parser.epilog = _epilog()
    _add_connection_arguments(parser, "connect, publish, disconnect or will")
    msg = parser.add_argument_group("message")
    msg.add_argument("-t", "--topic", help="topic to publish to")
    source = msg.add_mutually_exclusive_group()
    source.add_argument("-m", "--message", help="the payload")
    source.add_argument("-f", "--file", help="send this file's contents as one message")
    source.add_argument(
        "-l", "--stdin-line", action="store_true", help="send each line of stdin as a message"
    )
    source.add_argument(
        "-n", "--null-message", action="store_true", help="send an empty (zero length) message"
    )
    source.add_argument(
        "-s", "--stdin-file", action="store_true", help="send all of stdin as one message"
    )
    msg.add_argument("-r", "--retain", action="store_true", help="retain the message")
    msg.add_argument(
        "--repeat", type=_positive_int, default=1, metavar="N", help="publish the message N times"
    )
    msg.add_argument(
        "--repeat-delay",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="wait this long between repeats",
    )
    msg.add_argument(
        "-M",
        "--max-inflight",
        type=_positive_int,
        default=20,
        metavar="N",
        help="QoS 1/2 messages unacknowledged at once with -l or --repeat (default 20)",
    )


def add_sub_arguments(parser: argparse.ArgumentParser) -> None:
    """`midge sub`: subscribe and print what arrives."""
    parser.description = "Subscribe to MQTT topics and print messages (the flags of mosquitto_sub)."
    parser.epilog = _epilog()
    _add_connection_arguments(parser, "connect, subscribe, unsubscribe, disconnect or will")
    sub = parser.add_argument_group("subscription")
    sub.add_argument(
        "-t", "--topic", action="append", default=[], help="topic filter (repeat for several)"
    )
    sub.add_argument(
        "-U",
        "--unsubscribe",
        action="append",
        default=[],
        metavar="FILTER",
        help="unsubscribe from this filter after subscribing (repeatable; with -c)",
    )
    sub.add_argument(
        "-T",
        "--filter-out",
        action="append",
        default=[],
        metavar="FILTER",
        help="do not print messages whose topic matches this filter (repeatable)",
    )
    sub.add_argument("-C", "--count", type=_positive_int, help="exit after this many messages")
    sub.add_argument(
        "-W",
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help=f"exit with status {EXIT_TIMED_OUT} after this many seconds",
    )
    sub.add_argument(
        "-E",
        "--exit-on-subscribed",
        action="store_true",
        help="exit as soon as the broker acknowledged the subscriptions",
    )
    sub.add_argument(
        "-R", "--no-retained", action="store_true", help="skip retained (stale) messages"
    )
    sub.add_argument(
        "--retain-as-published",
        action="store_true",
        help="retained flag as the publisher set it, not 'stale' (MQTT 5.0 only)",
    )
    sub.add_argument(
        "--reconnect",
        action="store_true",
        help="reconnect after a lost connection instead of exiting (Midge extension)",
    )
    out = parser.add_argument_group("output")
    out.add_argument("-v", "--verbose", action="store_true", help='print "topic payload"')
    out.add_argument(
        "-F",
        "--format",
        help="mosquitto_sub's -F format string (%%t topic, %%p payload, ...; 5.0 properties: "
        "%%A topic alias, %%C content type, %%D correlation data, %%E message expiry, "
        "%%F payload format, %%P user properties, %%R response topic, %%S subscription "
        "identifiers), or 'json' (one object per line)",
    )
    out.add_argument("-N", "--no-eol", action="store_true", help="no newline after each message")
    out.add_argument("--pretty", action="store_true", help="indented JSON for -F %%j, %%J and json")


def run(args: argparse.Namespace) -> int:
    """Run `midge pub` or `midge sub`; returns the exit status."""
    from midge.tools.common import UsageError  # noqa: PLC0415 - keeps `midge --help` fast

    try:
        if args.command == "pub":
            from midge.tools.pub import run_pub  # noqa: PLC0415

            return run_pub(args)
        from midge.tools.sub import run_sub  # noqa: PLC0415

        return run_sub(args)
    except UsageError as exc:
        args.tool_parser.error(str(exc))  # exits with status 2, like any argparse error
        return EXIT_USAGE
