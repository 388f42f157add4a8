"""contrib/systemd/midge.service: its keys, and `systemd-analyze verify` where systemd is.

`systemd-analyze verify` also checks that ExecStart's program exists, so it
runs on a copy whose ExecStart names this checkout's `midge` entry point
(the unit itself names /usr/local/bin/midge, where `pip install` puts it).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "contrib" / "systemd" / "midge.service"
INSTALLED = "/usr/local/bin/midge"


def sections(text: str) -> dict[str, dict[str, list[str]]]:
    """The unit as {section: {key: [values]}}; systemd allows a key more than once."""
    parsed: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = parsed.setdefault(line[1:-1], {})
            continue
        key, equals, value = line.partition("=")
        assert equals, f"not a key=value line: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return parsed


def test_the_unit_runs_midge_as_a_notify_service_without_root():
    unit = sections(UNIT.read_text(encoding="utf-8"))
    service = unit["Service"]
    assert service["Type"] == ["notify"]
    assert service["User"] == ["midge"] and service["Group"] == ["midge"]
    assert service["StateDirectory"] == ["midge"]
    (start,) = service["ExecStart"]
    assert start.startswith("/")  # systemd wants an absolute path
    assert start.split()[1:] == [
        "serve",
        "--config",
        "/etc/midge/midge.toml",
        "--data-dir",
        "%S/midge",  # StateDirectory=midge: /var/lib/midge
    ]
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
    }.items():
        assert service[key] == [value], key
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    assert "network-online.target" in unit["Unit"]["After"][0]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    midge = Path(sys.executable).with_name("midge")
    if not midge.is_file():
        pytest.skip(f"no `midge` entry point beside {sys.executable} (pip install -e .)")
    copy = tmp_path / "midge.service"
    copy.write_text(UNIT.read_text(encoding="utf-8").replace(INSTALLED, str(midge)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "midge.service" not in result.stderr, result.stderr  # no warning about the unit
