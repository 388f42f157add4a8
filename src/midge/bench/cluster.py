"""Clusters for `midge bench --cluster N`: N nodes of one broker on a fresh redis-server.

As the single-broker runner gives every run a fresh broker, every run here
gets a fresh redis-server (redisserver.py: append-only, fsync every second)
and N fresh nodes joined to it, all stopped by PID after the run:

- Midge: `python -m midge serve --port 0 --cluster URL --node-name nK
  --cluster-prefix P` with the scenario's settings in a config file (as the
  single Midge gets them, less the store: a node keeps its state in Redis),
  P fresh for every run;
- Aedes: `node benchmarks/aedes/server.js --port 0 --redis URL --id nK`, the
  launcher we own: Aedes with mqemitter-redis and aedes-persistence-redis, as
  Aedes's README recommends for clusters, every option at its default.
  `aedes_problem` says what is missing (node, or the npm modules, and the
  command that installs them).

Publishers connect to node 1 and subscribers to node N (`Target.sub_port`),
so every message crosses nodes. Node 1's CPU share is reported as the
broker's, node N's and Redis's beside it (`nodeN_cpu`, `redis_cpu`).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from midge.bench.brokers import (
    BrokerSettings,
    RunningBroker,
    launch,
    listening_port,
    midge_config,
)
from midge.bench.cli import CLUSTER_DEFAULT
from midge.bench.flows import Deployment, Target
from midge.bench.lineup import Lineup
from midge.bench.redisserver import (
    PERSISTENCE,
    RunningRedis,
    redis_binary,
    redis_version,
    start_redis,
)
from midge.bench.wire import HOST, BenchError

BROKERS = ("midge", "aedes")
# What `--cluster N` runs unless --scenario says otherwise: issue 14's figures
# (defined in cli, which `midge --help` imports, so as not to import this).
DEFAULT_SCENARIOS = CLUSTER_DEFAULT
# Scenarios whose every client connects through flows.pub_spec / sub_spec, so
# that pointed at a cluster their publishers and subscribers are on two nodes.
CROSS_NODE = (
    *DEFAULT_SCENARIOS,
    "qos2",
    "latency",
    "qos1-overload-1",
    "qos1-overload-4",
    "qos2-overload-1",
    "qos2-overload-4",
)
AEDES_MODULES = ("aedes", "mqemitter-redis", "aedes-persistence-redis")
AEDES_INSTALL = "npm install --prefix benchmarks/aedes"
NODE_MAJOR = 20  # what Aedes 1.x and its Redis modules ask for (their "engines")
# Seconds between SIGTERM and SIGKILL for a node. Its state is in the run's own
# Redis, thrown away after it, so a node slow to leave only delays the next run
# (Midge nodes sometimes wait 5 s for their stream acknowledgements).
NODE_GRACE = 2.0

_runs = itertools.count(1)


# ------------------------------------------------------------------ Aedes


def aedes_dir() -> Path:
    """benchmarks/aedes: below the current directory (the bench runs from the
    repository root), else beside the source tree this module came from."""
    here = Path.cwd() / "benchmarks" / "aedes"
    if (here / "server.js").is_file():
        return here
    source = Path(__file__).resolve().parents[3] / "benchmarks" / "aedes"
    return source if (source / "server.js").is_file() else here


def node_binary() -> str | None:
    return shutil.which("node")


def node_version() -> str | None:
    binary = node_binary()
    if binary is None:
        return None
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.strip().removeprefix("v") or None


def aedes_problem() -> str | None:
    """Why Aedes cannot run here, with what to do about it; None when it can."""
    version = node_version()
    if version is None:
        return f"node is not installed (Node.js {NODE_MAJOR} or newer, with npm)"
    if not version.split(".")[0].isdigit() or int(version.split(".")[0]) < NODE_MAJOR:
        return f"node {version} is too old: Aedes needs Node.js {NODE_MAJOR} or newer"
    folder = aedes_dir()
    if not (folder / "server.js").is_file():
        return f"{folder}/server.js not found: run midge bench from the repository root"
    missing = [name for name in AEDES_MODULES if _module_version(folder, name) is None]
    if missing:
        return (
            f"Aedes's npm modules are not installed ({', '.join(missing)}): "
            f"run `{AEDES_INSTALL}` in the repository root"
        )
    return None


def _module_version(folder: Path, name: str) -> str | None:
    try:
        text = (folder / "node_modules" / name / "package.json").read_text(encoding="utf-8")
        version = json.loads(text).get("version")
    except (OSError, ValueError):
        return None
    return str(version) if version else None


def aedes_versions() -> dict[str, str | None]:
    folder = aedes_dir()
    return {"node": node_version()} | {
        name: _module_version(folder, name) for name in AEDES_MODULES
    }


# ------------------------------------------------------------------ nodes


def _node_config(settings: BrokerSettings) -> str:
    """The single Midge's config less its store: a cluster node's state is in Redis."""
    lines = midge_config(settings).splitlines()
    kept = [line for line in lines if not line.startswith(("store ", "durability "))]
    return "\n".join(kept) + "\n"


@contextmanager
def _midge_node(
    settings: BrokerSettings, redis: RunningRedis, name: str, prefix: str
) -> Iterator[RunningBroker]:
    with tempfile.TemporaryDirectory(prefix="bench-node-midge-") as folder:
        tmp = Path(folder)
        config = tmp / "midge.toml"
        config.write_text(_node_config(settings), encoding="utf-8")
        args = [sys.executable, "-m", "midge", "serve", "--host", HOST, "--port", "0"]
        args += ["--config", str(config), "--log-level", "warning"]
        args += ["--cluster", redis.url, "--node-name", name, "--cluster-prefix", prefix]
        with launch(f"midge {name}", args, tmp, listening_port, NODE_GRACE) as node:
            yield node


@contextmanager
def _aedes_node(redis: RunningRedis, name: str) -> Iterator[RunningBroker]:
    problem = aedes_problem()
    node = node_binary()
    if problem is not None or node is None:
        raise BenchError(f"aedes: {problem}")
    script = aedes_dir() / "server.js"
    with tempfile.TemporaryDirectory(prefix="bench-node-aedes-") as folder:
        args = [node, str(script), "--host", HOST, "--port", "0"]
        args += ["--redis", redis.url, "--id", name]
        with launch(f"aedes {name}", args, Path(folder), listening_port, NODE_GRACE) as running:
            yield running


@contextmanager
def start_cluster(broker: str, settings: BrokerSettings, nodes: int) -> Iterator[Deployment]:
    """A fresh redis-server and `nodes` fresh nodes of `broker` joined to it, one
    after the other (each listening before the next starts)."""
    if broker not in BROKERS:
        raise BenchError(f"{broker} does not run as a cluster here; choose from {BROKERS}")
    prefix = f"bench{os.getpid()}r{next(_runs)}"  # letters and digits: a valid key prefix
    with start_redis() as redis, ExitStack() as stack:
        running = [
            stack.enter_context(
                _midge_node(settings, redis, f"n{k}", prefix)
                if broker == "midge"
                else _aedes_node(redis, f"n{k}")
            )
            for k in range(1, nodes + 1)
        ]
        yield deployment(running, redis)


def deployment(nodes: list[RunningBroker], redis: RunningRedis) -> Deployment:
    """Publishers on the first node, subscribers on the last; every process's CPU."""
    first, last = nodes[0], nodes[-1]
    helpers = tuple((f"node{k}", node.pid) for k, node in enumerate(nodes[1:], start=2))
    target = Target(
        first.host,
        first.port,
        first.pid,
        sub_host=last.host,
        sub_port=last.port,
        helpers=(*helpers, ("redis", redis.pid)),
    )
    return Deployment(target, (*nodes, redis.process))


# ------------------------------------------------------------------ the lineup


def lineup(nodes: int, brokers: list[str]) -> Lineup:
    """What the runner needs to run every scenario against clusters of `nodes` nodes."""

    @contextmanager
    def deploy(broker: str, settings: BrokerSettings) -> Iterator[Deployment]:
        with start_cluster(broker, settings, nodes) as deployed:
            yield deployed

    info = setup_info(nodes, brokers)
    return Lineup(deploy, _available, header(info), info)


def _available(broker: str) -> bool:
    return broker == "midge" or (broker == "aedes" and aedes_problem() is None)


def setup_info(nodes: int, brokers: list[str]) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cluster_nodes": nodes,
        "publishers_on": "node 1",
        "subscribers_on": f"node {nodes}",
        "redis": redis_version(),
        "redis_binary": redis_binary(),
        "redis_persistence": PERSISTENCE,
        "fresh_per_run": "redis-server and every node",
    }
    if "aedes" in brokers:
        info["aedes"] = aedes_versions()
    return info


def header(info: dict[str, Any]) -> str:
    nodes = info["cluster_nodes"]
    text = (
        f"cluster: {nodes} nodes per broker on one redis-server {info['redis']} "
        f"({info['redis_binary']}, {info['redis_persistence']}; loopback), "
        f"fresh with its nodes for every run; publishers on node 1, subscribers on "
        f"node {nodes}: every message crosses nodes; 'broker CPU' is node 1's"
    )
    aedes = info.get("aedes")
    if aedes:
        text += (
            f"\naedes {aedes['aedes']} with mqemitter-redis {aedes['mqemitter-redis']} and "
            f"aedes-persistence-redis {aedes['aedes-persistence-redis']} on node {aedes['node']}"
        )
    return text
