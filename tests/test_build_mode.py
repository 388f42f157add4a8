"""scripts/test runs the suite on two builds: pure Python (the editable
install of src/ in .venv), then the wheel with the hot modules compiled by
mypyc (installed into .venv-compiled, MIDGE_EXPECT_COMPILED=1). This guards
both ways: nothing compiled may sit in src/ and shadow the sources, and the
compiled run must really run the installed wheel, every hot module compiled.
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import os
from pathlib import Path

import midge

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
EXPECT_COMPILED = os.environ.get("MIDGE_EXPECT_COMPILED") == "1"


def hot_modules() -> list[str]:
    """The module names setup.py compiles (its HOT_MODULES list of paths)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "HOT_MODULES" for target in node.targets
        ):
            paths: list[str] = ast.literal_eval(node.value)
            return [".".join(Path(path).relative_to("src").with_suffix("").parts) for path in paths]
    raise AssertionError("setup.py has no HOT_MODULES list")


def test_the_build_mode_is_the_one_this_run_tests() -> None:
    assert midge.compiled() is EXPECT_COMPILED


def test_every_hot_module_runs_in_this_build_mode() -> None:
    modules = hot_modules()
    assert "midge.broker.broker" in modules  # what midge.compiled() looks at
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    for name in modules:
        where = importlib.import_module(name).__file__ or ""
        if EXPECT_COMPILED:
            assert where.endswith(suffixes), f"{name} is not compiled: {where}"
        else:
            assert where.endswith(".py"), f"{name} runs compiled code: {where}"


def test_the_compiled_run_imports_the_installed_wheel() -> None:
    where = Path(midge.__file__ or "").resolve()
    if EXPECT_COMPILED:
        # tests/ is on sys.path for its helpers (brokers, ...), src/ must not be
        assert SRC not in where.parents, f"midge imported from the source tree: {where}"
        assert "site-packages" in where.parts


def test_no_compiled_module_in_the_source_tree() -> None:
    # Python prefers an extension module to the .py beside it: one left in
    # src/ would silently run instead of the edited source. scripts/setup
    # removes them; builds never write there (setup.py builds under build/).
    compiled = [p for p in SRC.rglob("*") if p.suffix in (".so", ".pyd")]
    assert compiled == []
