"""The layering docs/architecture.md describes, checked on the import statements.

Runtime imports only (imports under `if TYPE_CHECKING:` are annotations):
the protocol knows nothing above it, the store never imports the broker,
only the front ends touch asyncio, and no modules import each other in a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent / "src"


def runtime_imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in SOURCE.rglob("*.py"):
        parts = path.with_suffix("").relative_to(SOURCE).parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        imports: set[str] = set()
        for node in ast.parse(path.read_text(encoding="utf-8")).body:  # top level only
            if isinstance(node, ast.ImportFrom) and node.module:
                imports.add(node.module)
            elif isinstance(node, ast.Import):
                imports.update(alias.name for alias in node.names)
        graph[module] = imports
    return graph


GRAPH = runtime_imports()


def imports_of(prefix: str) -> set[str]:
    return {
        imported
        for module, imports in GRAPH.items()
        if module.startswith(prefix)
        for imported in imports
    }


def test_the_protocol_imports_nothing_above_it():
    assert {m for m in imports_of("midge.protocol") if m.startswith("midge.")} <= {
        m for m in GRAPH if m.startswith("midge.protocol")
    }


def test_the_store_never_imports_the_broker():
    assert not {m for m in imports_of("midge.store") if m.startswith("midge.broker")}


def test_only_the_front_ends_touch_asyncio_in_the_broker():
    users = {
        module
        for module, imports in GRAPH.items()
        if module.startswith("midge.broker") and "asyncio" in imports
    }
    assert users == {"midge.broker.listeners"}


def test_no_import_cycles():
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        for imported in GRAPH.get(module, ()):
            if imported in path:
                cycles.append(path[path.index(imported) :])
            elif imported in GRAPH and imported not in done:
                visit(imported, [*path, imported])
        done.add(module)

    done: set[str] = set()
    for module in GRAPH:
        if module not in done:
            visit(module, [module])
    assert not cycles


def test_the_core_names_the_embedding_layer_in_annotations_only():
    assert not {m for m in imports_of("midge.broker") if m.startswith("midge.embedding")}


def test_the_core_knows_of_the_cluster_only_its_config():
    # The cluster plugs into the core (broker/clustered.py names it in
    # annotations only); the core reads no more of it than the [cluster] table.
    assert {m for m in imports_of("midge.broker") if m.startswith("midge.cluster")} <= {
        "midge.cluster.config"
    }


def test_a_lone_broker_imports_no_cluster_code_but_its_config():
    assert {m for m in imports_of("midge.embedding") if m.startswith("midge.cluster")} == set()
