"""What `pip install` gets: the sdist carries everything a compiled build
needs and nothing built, its metadata passes `twine check`, the dependencies
are ranges, and rich stays optional.

The sdist is built here (a few seconds); the wheel is not (mypyc takes a
minute): scripts/test builds and installs the compiled wheel for its second
pass, where tests/test_build_mode.py proves every hot module compiled.
"""

from __future__ import annotations

import ast
import email
import io
import subprocess
import sys
import tarfile
import tomllib
from email.message import Message
from pathlib import Path

import pytest

from midge.conformance import report

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("build", reason="needs the dev extra: pip install -e '.[dev]'")
    out = tmp_path_factory.mktemp("dist")
    # No isolation: the dev extra has the build requirements (setuptools,
    # mypy), and the sdist step never runs mypyc.
    command = [sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(out)]
    done = subprocess.run(
        [*command, str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [built] = out.glob("midge-*.tar.gz")
    return built


def members(sdist: Path) -> set[str]:
    """Paths inside the sdist, without its top folder (midge-0.1.0/)."""
    with tarfile.open(sdist) as tar:
        return {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}


def pkg_info(sdist: Path) -> Message:
    with tarfile.open(sdist) as tar:
        [name] = [n for n in tar.getnames() if n.count("/") == 1 and n.endswith("/PKG-INFO")]
        data = tar.extractfile(name)
        assert data is not None
        return email.message_from_binary_file(io.BytesIO(data.read()))


def hot_module_paths() -> list[str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "HOT_MODULES" for t in node.targets
        ):
            paths: list[str] = ast.literal_eval(node.value)
            return paths
    raise AssertionError("setup.py has no HOT_MODULES list")


def test_the_sdist_has_what_a_compiled_build_needs(sdist: Path) -> None:
    files = members(sdist)
    for needed in ("setup.py", "pyproject.toml", "LICENSE", "README.md", "CHANGELOG.md"):
        assert needed in files
    assert "src/midge/py.typed" in files
    sources = {
        p.relative_to(ROOT).as_posix()
        for p in SRC.joinpath("midge").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert len(sources) > 100  # the package, not an empty glob
    assert sources - files == set()
    hot = hot_module_paths()
    assert len(hot) >= 20
    assert set(hot) - files == set()  # each hot module a real file (a typo breaks the build)


def test_the_sdist_has_nothing_built(sdist: Path) -> None:
    built = {
        f
        for f in members(sdist)
        if f.endswith((".so", ".pyd", ".pyc", ".c", ".whl"))
        or f.startswith(("build/", "dist/"))
        or "node_modules" in f
    }
    assert built == set()


def test_the_metadata_passes_twine_check(sdist: Path) -> None:
    pytest.importorskip("twine", reason="needs the dev extra: pip install -e '.[dev]'")
    done = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(sdist)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASSED" in done.stdout


def test_the_metadata_is_complete_and_dependencies_are_ranges(sdist: Path) -> None:
    info = pkg_info(sdist)
    assert info["License-Expression"] == "MIT"
    assert info.get_all("License-File") == ["LICENSE"]
    classifiers = info.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers
    assert "Framework :: AsyncIO" in classifiers
    urls = info.get_all("Project-URL") or []
    assert any(url.startswith("Documentation, https://") for url in urls)
    requires = info.get_all("Requires-Dist") or []
    runtime = [r for r in requires if "extra ==" not in r]
    assert {r.split("<")[0].split(">")[0] for r in runtime} == {
        "websockets",
        "uvloop",
        "aiohttp",
        "prometheus-client",
        "redis",
        "hiredis",
    }
    for requirement in requires:
        assert "==" not in requirement.split(";")[0], f"pinned: {requirement}"
    assert any(r.startswith("rich") and 'extra == "rich"' in r for r in requires)


def test_the_build_requires_the_runtime_dependencies_it_type_checks() -> None:
    # mypyc type-checks what the hot modules import (websockets, through the
    # broker), so [build-system] lists those dependencies, with the same ranges.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runtime = {r.split(">")[0].split("<")[0].strip(): r for r in project["project"]["dependencies"]}
    build = {r.split(">")[0].split("<")[0].strip(): r for r in project["build-system"]["requires"]}
    assert set(runtime) <= set(build)
    assert {name: build[name] for name in runtime} == runtime


def test_midge_check_draws_a_plain_table_without_rich(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # rich is the `rich` extra: on a terminal without it, `midge check` still
    # reports, as plain text. First, with rich, this terminal gets rich's table
    # (so the fallback below is not just the non-terminal case).
    pytest.importorskip("rich", reason="the test extra brings rich")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert isinstance(report.make_report(as_json=False), report.RichReport)
    monkeypatch.setitem(sys.modules, "rich", None)
    monkeypatch.setitem(sys.modules, "rich.console", None)
    plain = report.make_report(as_json=False)
    assert type(plain) is report.PlainReport
    summary = report.Summary("127.0.0.1:1883", [])
    summary.add(report.Outcome("01-01", "A valid CONNECT", "MQTT-3.1.4-4", report.PASS))
    plain.finish(summary)
    assert capsys.readouterr().out == "1 passed, 0 failed\n"
