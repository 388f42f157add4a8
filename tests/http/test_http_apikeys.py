"""API keys: the key format, the key file, and `midge apikey create|list|delete`."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from midge.cli import main
from midge.http.apikeys import (
    ApiKeyFileError,
    ApiKeys,
    new_key,
    parse_key_file,
    read_key_file,
    split_key,
)


def test_a_new_key_authenticates_and_the_file_keeps_only_its_hash() -> None:
    key, entry = new_key("ops", "admin")
    assert key.startswith("mk_") and len(key) > 50
    key_id, secret = split_key(key) or ("", "")
    assert key_id == entry.key_id and secret not in entry.line()
    assert entry.line().startswith(f"ops:admin:sha256${key_id}$")
    keys = ApiKeys(parse_key_file(entry.line(), "test"))
    assert keys.authenticate(key) == entry
    assert keys.authenticate(key + "x") is None
    assert keys.authenticate(key.replace(key_id, "0" * 12)) is None
    assert keys.authenticate("") is None
    assert keys.authenticate("mk_" + "a" * 500) is None


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("ops:admin", "expected NAME:ROLE"),
        ("ops:root:sha256$0123456789ab$" + "0" * 64, "role 'root'"),
        ("o ps:admin:sha256$0123456789ab$" + "0" * 64, "key name"),
        ("ops:admin:md5$0123456789ab$" + "0" * 64, "sha256$"),
        ("ops:admin:sha256$0123$" + "0" * 64, "sha256$"),
        ("ops:admin:sha256$0123456789ab$abc", "sha256$"),
    ],
)
def test_a_broken_key_file_names_file_and_line(line: str, problem: str) -> None:
    with pytest.raises(ApiKeyFileError) as caught:
        parse_key_file(f"# comment\n\n{line}\n", "keys.txt")
    assert "keys.txt:3:" in str(caught.value) and problem in str(caught.value)


def test_duplicate_names_are_refused() -> None:
    _, one = new_key("ops", "admin")
    _, two = new_key("ops", "read")
    with pytest.raises(ApiKeyFileError, match="appears twice"):
        parse_key_file(f"{one.line()}\n{two.line()}\n", "keys")


def test_reload_keeps_the_old_keys_when_the_file_breaks(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    key, entry = new_key("ops", "admin")
    path.write_text(entry.line() + "\n")
    keys = ApiKeys.load(str(path))
    path.write_text("broken\n")
    assert not keys.reload()
    assert keys.authenticate(key) == entry
    path.write_text("")
    assert keys.reload()
    assert keys.authenticate(key) is None and not keys.current(entry)


def test_cli_create_list_delete(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys"
    assert main(["apikey", "create", "ops", "--role", "admin", "--file", str(path)]) == 0
    out = capsys.readouterr()
    (key,) = out.out.splitlines()  # the key alone, nothing else on standard output
    assert "shown only now" in out.err
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    (entry,) = read_key_file(path)
    assert ApiKeys([entry]).authenticate(key) == entry
    assert main(["apikey", "create", "ops", "--role", "read", "--file", str(path)]) == 1
    assert "already" in capsys.readouterr().err
    assert main(["apikey", "create", "bad name", "--role", "read", "--file", str(path)]) == 1
    assert main(["apikey", "create", "viewer", "--role", "read", "--file", str(path)]) == 0
    capsys.readouterr()
    assert main(["apikey", "list", "--file", str(path)]) == 0
    listed = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [row[:2] for row in listed] == [["ops", "admin"], ["viewer", "read"]]
    assert main(["apikey", "delete", "ops", "--file", str(path)]) == 0
    assert [key.name for key in read_key_file(path)] == ["viewer"]
    assert main(["apikey", "delete", "ops", "--file", str(path)]) == 1
    assert main(["apikey", "list", "--file", str(tmp_path / "missing")]) == 1
    with pytest.raises(SystemExit):
        main(["apikey", "create", "x", "--role", "owner", "--file", str(path)])


def test_cli_create_prints_the_key_alone_on_the_first_line(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "midge", "apikey", "create", "app"),
            "--role",
            "admin",
            "--file",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mk_")
    (entry,) = read_key_file(path)
    assert ApiKeys([entry]).authenticate(lines[0]) == entry
