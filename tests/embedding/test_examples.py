"""The embedding examples run as users would run them.

- docs/embedding.md's ```python blocks as programs (```py marks a fragment);
- examples/embedding/home_automation.py as a process, with real clients;
- examples/embedding/test_with_midge.py under pytest.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest

from midge.client import Client

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "embedding.md"
EXAMPLES = ROOT / "examples" / "embedding"
WAIT = 10.0

CODE_BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)


def test_the_document_has_examples() -> None:
    assert len(CODE_BLOCKS) >= 4


@pytest.mark.parametrize("index", range(len(CODE_BLOCKS)))
def test_each_code_block_of_the_document_runs(index: int, tmp_path: Path) -> None:
    program = tmp_path / f"block{index}.py"
    program.write_text(CODE_BLOCKS[index], encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(program)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


def test_the_pytest_fixture_example_passes(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(EXAMPLES / "test_with_midge.py"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


async def test_the_home_automation_app_switches_fans(tmp_path: Path) -> None:
    app = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / "home_automation.py"),
        "--port=0",
        f"--data-dir={tmp_path / 'data'}",
        "--readings=2",
        stdout=asyncio.subprocess.PIPE,
    )
    assert app.stdout is not None
    try:
        first = (await asyncio.wait_for(app.stdout.readline(), WAIT)).decode()
        port = int(re.fullmatch(r"broker listening on port (\d+)\n", first).group(1))  # type: ignore[union-attr]
        async with Client("127.0.0.1", port, client_id="sensor") as sensor:
            await sensor.publish("home/kitchen/temperature", b"warm", qos=1)  # refused
            await sensor.publish("home/kitchen/temperature", b"27.5", qos=1)
            await sensor.publish("home/hall/temperature", b"19", qos=1)
        output = (await asyncio.wait_for(app.stdout.read(), WAIT)).decode()
        assert await asyncio.wait_for(app.wait(), WAIT) == 0
    finally:
        if app.returncode is None:
            app.kill()
            await app.wait()
    assert "refused reading b'warm' on home/kitchen/temperature" in output
    assert "kitchen: 27.5 C, fan on" in output
    assert "hall: 19.0 C, fan off" in output
    assert "device sensor connected from 127.0.0.1:" in output
