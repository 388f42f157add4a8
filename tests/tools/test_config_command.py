"""`midge config import`: the TOML on stdout or in a file, what is left out on stderr."""

from __future__ import annotations

import io
import subprocess
import sys
import tomllib
from pathlib import Path

from midge.tools.config_command import import_command


def run_import(conf: Path, output: str | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = import_command(str(conf), output, out, err)
    return status, out.getvalue(), err.getvalue()


def test_everything_translated_exits_0_with_the_toml_on_stdout(tmp_path):
    conf = tmp_path / "mosquitto.conf"
    conf.write_text("listener 1883 127.0.0.1\nallow_anonymous true\n", encoding="utf-8")
    status, out, err = run_import(conf)
    assert status == 0, err
    assert err == ""
    assert tomllib.loads(out)["listeners"] == [
        {"port": 1883, "host": "127.0.0.1", "transport": "tcp"}
    ]


def test_left_out_directives_exit_1_listed_on_stderr_with_their_lines(tmp_path):
    conf = tmp_path / "mosquitto.conf"
    conf.write_text("listener 1883\nuser mosquitto\nconnection up\naddress h\n", encoding="utf-8")
    status, out, err = run_import(conf)
    assert status == 1
    lines = err.splitlines()
    assert lines[0].startswith(
        "midge config import: not translated: mosquitto.conf:2: user mosquitto: "
    )
    assert "mosquitto.conf:3: connection up" in lines[1]
    assert "mosquitto.conf:4: address h" in lines[2]
    assert lines[-1].startswith("midge config import: 3 directive(s) of ")
    assert tomllib.loads(out)["listeners"]  # the TOML is written all the same


def test_output_file_and_warnings_for_what_would_not_start(tmp_path):
    conf = tmp_path / "mosquitto.conf"
    conf.write_text("listener 1883\npassword_file passwd\n", encoding="utf-8")
    target = tmp_path / "midge.toml"
    status, out, err = run_import(conf, str(target))
    assert status == 0 and out == ""
    missing = f"config key 'password_file': file not found: {tmp_path / 'passwd'}"
    assert f"warning: the result would not start here yet: {missing}" in err
    assert tomllib.loads(target.read_text(encoding="utf-8"))["password_file"] == str(
        tmp_path / "passwd"
    )


def test_unreadable_input_or_output_exits_2(tmp_path):
    status, out, err = run_import(tmp_path / "missing.conf")
    assert (status, out) == (2, "")
    assert f"cannot read {tmp_path / 'missing.conf'}" in err
    conf = tmp_path / "mosquitto.conf"
    conf.write_text("listener 1883\n", encoding="utf-8")
    assert run_import(conf, str(tmp_path / "no" / "such" / "midge.toml"))[0] == 2
    status, _out, err = run_import(conf, str(conf))
    assert status == 2 and "would overwrite" in err
    assert conf.read_text(encoding="utf-8") == "listener 1883\n"


def test_the_command_line(tmp_path):
    conf = tmp_path / "mosquitto.conf"
    conf.write_text("listener 1883\nautosave_interval 60\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "midge", "config", "import", str(conf), "-o", "out.toml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "mosquitto.conf:2: autosave_interval 60" in result.stderr
    assert (tmp_path / "out.toml").is_file()
    usage = subprocess.run(
        [sys.executable, "-m", "midge", "config"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert usage.returncode == 2 and "import" in usage.stderr
