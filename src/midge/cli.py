"""`midge` command line: `midge serve`, `midge config import`, `midge bench`, `check`, `pub`, `sub`,
`passwd`; each command's code lives in its own module."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from midge import __version__, logs
from midge.bench.cli import add_arguments as add_bench_arguments
from midge.broker.auth import PasswordFileError
from midge.broker.config import (
    LOG_LEVELS,
    BrokerConfig,
    ConfigError,
    load_config,
)
from midge.conformance.cli import add_arguments as add_check_arguments
from midge.store.base import StoreError
from midge.tools.apikey import add_arguments as add_apikey_arguments
from midge.tools.config_command import add_arguments as add_config_arguments
from midge.tools.passwd import add_arguments as add_passwd_arguments
from midge.tools.pubsub import add_pub_arguments, add_sub_arguments


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="midge", description="Midge MQTT broker and tools")
    parser.add_argument("--version", action="version", version=f"midge {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the MQTT broker")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (default 1883; 0 picks a free one)")
    serve.add_argument("--config", metavar="FILE", help="TOML config file; flags override it")
    serve.add_argument("--data-dir", metavar="DIR", help="where the broker keeps its data")
    serve.add_argument("--log-level", choices=LOG_LEVELS, help="default info")
    serve.add_argument(
        "--cluster", metavar="URL", help="join the cluster on this Redis (redis://HOST:PORT/DB)"
    )
    serve.add_argument("--node-name", metavar="NAME", help="this node's name (default: host name)")
    serve.add_argument(
        "--cluster-prefix", metavar="PREFIX", help="Redis key prefix (default midge)"
    )
    serve.add_argument(
        "--workers",
        type=worker_count,
        default=1,
        metavar="N",
        help="N processes on the same ports, one cluster node each; 'auto': one per core "
        "(default 1); without --cluster, a private redis-server (docs/cluster.md)",
    )
    # Set by the --workers supervisor on the processes it starts (midge/workers/worker.py).
    serve.add_argument("--worker-ports", help=argparse.SUPPRESS)
    serve.add_argument("--worker-no-http", action="store_true", help=argparse.SUPPRESS)
    config = commands.add_parser("config", help="configuration tools: import a mosquitto.conf")
    add_config_arguments(config)
    bench = commands.add_parser("bench", help="load-test a broker; compare Midge with Mosquitto")
    add_bench_arguments(bench)
    check = commands.add_parser("check", help="run the conformance scenarios against any broker")
    add_check_arguments(check)
    pub = commands.add_parser("pub", add_help=False, help="publish messages (like mosquitto_pub)")
    add_pub_arguments(pub)
    sub = commands.add_parser("sub", add_help=False, help="print messages (like mosquitto_sub)")
    add_sub_arguments(sub)
    passwd = commands.add_parser("passwd", help="manage a password file (like mosquitto_passwd)")
    add_passwd_arguments(passwd)
    apikey = commands.add_parser("apikey", help="manage the HTTP API's keys (api_key_file)")
    add_apikey_arguments(apikey)
    return parser


def worker_count(text: str) -> int:
    """`--workers`: a number of processes, or "auto" for one per core."""
    if text == "auto":
        return os.cpu_count() or 1
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError("at least 1")
    return count


def configure_logging(level: str, log_format: str = "text") -> None:
    """Log lines to standard error, as text or JSON lines (midge/logs.py)."""
    logs.configure_logging(level, log_format)


def serve_config(args: argparse.Namespace, cluster_url: str | None = None) -> BrokerConfig:
    """The config file (if any) with the flags over it; `cluster_url` wins over --cluster."""
    return load_config(
        args.config,
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        log_level=args.log_level,
        cluster_url=cluster_url or args.cluster,
        node_name=args.node_name,
        cluster_prefix=args.cluster_prefix,
    )


def serve_command(args: argparse.Namespace, argv: Sequence[str] = ()) -> int:
    """`midge serve`; `argv` (from "serve" on) is what a --workers supervisor
    gives its workers."""
    if args.workers > 1:
        return supervise_command(args, argv)
    from midge.server import run  # noqa: PLC0415 - keeps `midge --help` fast

    try:
        config = serve_config(args)
        configure_logging(config.log_level, config.log_format)
        worker = args.worker_ports is not None
        if worker:  # started by a --workers supervisor
            from midge.workers.worker import become_worker  # noqa: PLC0415

            config = become_worker(config, args.worker_ports, http=not args.worker_no_http)
    except ConfigError as exc:
        return config_error(exc)
    try:
        run(config, reuse_port=worker)
    except ConfigError as exc:  # found only when used: a data dir, a TLS file, a hook
        return config_error(exc)
    except PasswordFileError as exc:
        print(f"midge: bad password file: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"midge: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"midge: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1
    return 0


def supervise_command(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from midge.workers.supervisor import supervise  # noqa: PLC0415

    try:
        return supervise(
            args.workers, argv, lambda url: serve_config(args, url), args.cluster, args.config
        )
    except ConfigError as exc:
        return config_error(exc)


def config_error(exc: ConfigError) -> int:
    """Every problem on its own line (all of a file's at once); exit status 2."""
    for problem in exc.problems or (str(exc),):
        for line in problem.splitlines():
            print(f"midge: {line}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(given)
    if args.command == "serve":
        return serve_command(args, given)
    if args.command == "config":
        from midge.tools.config_command import run as config_command  # noqa: PLC0415

        return config_command(args)
    if args.command == "bench":
        from midge.bench.cli import run as bench_command  # noqa: PLC0415

        return bench_command(args)
    if args.command == "check":
        from midge.conformance.cli import run as check_command  # noqa: PLC0415

        return check_command(args)
    if args.command == "passwd":
        from midge.tools.passwd import run as passwd_command  # noqa: PLC0415

        return passwd_command(args)
    if args.command == "apikey":
        from midge.tools.apikey import run as apikey_command  # noqa: PLC0415

        return apikey_command(args)
    if args.command in ("pub", "sub"):
        from midge.tools.pubsub import run as pubsub_command  # noqa: PLC0415

        return pubsub_command(args)
    return 2
