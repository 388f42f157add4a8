"""Build Midge's wheel, with its hot modules compiled by mypyc (as mypy and black ship).

Everything declarative (name, version, dependencies, metadata) is in
pyproject.toml; this file only decides which extension modules the wheel
gets. A wheel is built compiled: the modules in HOT_MODULES become C
extensions beside their .py sources (Python imports the extension first),
which roughly doubles the broker's throughput. It is built pure Python,
with a message on stderr, when

- MIDGE_PURE=1 is set, or
- no C compiler can build against this Python's headers (Python.h), or
- it is an editable install (`pip install -e .`): those run the sources in
  src/ directly, and a compiled module there would shadow later edits.

Only commands that build (bdist_wheel, build, build_ext, install) run mypyc:
pip also runs this file to read metadata and to make the sdist, and the
sdist ships the sources, never generated C.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

from setuptools import Extension, setup

# setuptools' own compiler machinery, so that the compiler check below uses
# the compiler (and on Windows the MSVC setup) that build_ext will use.
from setuptools._distutils.ccompiler import new_compiler
from setuptools._distutils.sysconfig import customize_compiler

# The modules compiled with mypyc: the codec, the broker's per-message path
# and the store. Add a module here when it is on the hot path; it must pass
# mypy --strict and must not be monkeypatched or subclassed from outside
# the compiled group (see docs/architecture.md). Paths relative to this file.
HOT_MODULES = [
    "src/midge/protocol/codec.py",
    "src/midge/protocol/encoding.py",
    "src/midge/protocol/topics.py",
    "src/midge/protocol/packets.py",
    "src/midge/protocol/codec5.py",
    "src/midge/protocol/encoding5.py",
    "src/midge/protocol/fields.py",
    "src/midge/protocol/properties.py",
    "src/midge/broker/broker.py",
    "src/midge/broker/handlers.py",
    "src/midge/broker/connection.py",
    "src/midge/broker/session.py",
    "src/midge/broker/router.py",
    "src/midge/message.py",
    "src/midge/broker/persistence.py",
    "src/midge/broker/delivery.py",
    "src/midge/broker/flow.py",
    "src/midge/broker/stats.py",
    "src/midge/broker/stream.py",
    "src/midge/broker/mqtt5.py",
    "src/midge/broker/variants.py",
    "src/midge/broker/subscribing.py",
    "src/midge/broker/shared.py",
    "src/midge/broker/connect.py",
    "src/midge/broker/limits.py",
    "src/midge/store/base.py",
    "src/midge/store/changes.py",
    "src/midge/store/shared.py",
    "src/midge/store/sqlite.py",
    "src/midge/store/sqlite_writes.py",
    "src/midge/store/writer.py",
]

# The setup.py commands that produce built code; any other (egg_info,
# dist_info, sdist, editable_wheel, ...) gets no extension modules.
BUILDING = {"bdist_wheel", "build", "build_ext", "install", "bdist"}
EDITABLE = {"editable_wheel", "develop"}
HERE = Path(__file__).resolve().parent


def say(message: str) -> None:
    # stderr: pip shows it with -v, `python -m build` always.
    print(f"midge build: {message}", file=sys.stderr, flush=True)


def compiler_problem() -> str | None:
    """None when a C compiler builds a file that includes Python.h, else what failed."""
    include = sysconfig.get_paths()["include"]
    if not Path(include, "Python.h").is_file():
        return f"no Python.h in {include} (install the Python headers, e.g. python3-dev)"
    with tempfile.TemporaryDirectory(prefix="midge-cc-check-") as tmp:
        source = Path(tmp, "check.c")
        source.write_text("#include <Python.h>\nint midge_check(void) { return 0; }\n")
        try:
            compiler = new_compiler()
            customize_compiler(compiler)
            compiler.compile([str(source)], output_dir=tmp, include_dirs=[include])
        except Exception as error:  # CompileError, DistutilsPlatformError, OSError, ...
            return f"the C compiler failed: {str(error).strip() or type(error).__name__}"
    return None


def remove_stale_build_output() -> None:
    # build/lib* is where setuptools assembles the wheel; an extension left
    # there by an earlier build (say, of a module since dropped from
    # HOT_MODULES) would otherwise ship again.
    for stale in HERE.joinpath("build").glob("lib*"):
        shutil.rmtree(stale, ignore_errors=True)


def extension_modules() -> list[Extension]:
    commands = set(sys.argv[1:])
    if commands & EDITABLE:
        say("editable install: pure Python (the sources in src/ run as they are)")
        return []
    if not commands & BUILDING:
        return []
    remove_stale_build_output()
    if os.environ.get("MIDGE_PURE") == "1":
        say("MIDGE_PURE=1: building the pure-Python wheel")
        return []
    problem = compiler_problem()
    if problem is not None:
        say(
            f"{problem}; building the pure-Python wheel, which runs about half as fast. "
            "Install a C compiler and the Python headers for the mypyc-compiled one."
        )
        return []
    # Only here: a pure or metadata-only run works without mypy installed.
    from mypyc.build import mypycify  # noqa: PLC0415

    say(f"compiling {len(HOT_MODULES)} modules with mypyc")
    return mypycify(HOT_MODULES, opt_level="3", group_name="midge", target_dir="build/mypyc")


setup(ext_modules=extension_modules())
