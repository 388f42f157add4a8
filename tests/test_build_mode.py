"""The suite runs twice in scripts/test: on pure Python, then on the modules
compiled by scripts/compile. This guards both ways: a stale .so must not
shadow the sources in the pure run, and the compiled run must really be one."""

import os

import midge


def test_the_build_mode_is_the_one_this_run_tests() -> None:
    expect_compiled = os.environ.get("MIDGE_EXPECT_COMPILED") == "1"
    assert midge.compiled() is expect_compiled
