"""`midge passwd`: the lines it writes, how it edits a file, and its errors."""

from __future__ import annotations

import base64
import shutil
import stat
import subprocess

import pytest

from midge.broker.auth import load_password_file
from midge.cli import main
from midge.tools import passwd as passwd_tool


def midge_passwd(*args: str) -> int:
    return main(["passwd", *args])


def test_batch_create_writes_a_mosquitto_line_with_mode_0600(tmp_path):
    path = tmp_path / "passwd"
    assert midge_passwd("-c", "-b", str(path), "alice", "s3cret") == 0
    (line,) = path.read_text().splitlines()
    username, _, hashed = line.partition(":")
    _, algorithm, iterations, salt, digest = hashed.split("$")
    assert (username, algorithm, iterations) == ("alice", "7", "101")
    assert len(base64.b64decode(salt)) == 12
    assert len(base64.b64decode(digest)) == 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    users = load_password_file(path)
    assert users["alice"].verify(b"s3cret")
    assert not users["alice"].verify(b"other")


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="needs mosquitto_passwd")
def test_same_hash_as_mosquitto_passwd_for_the_same_salt(tmp_path):
    path = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(path), "bob", "pässword"], check=True, timeout=10
    )
    hashed = path.read_text().strip().partition(":")[2]
    salt = base64.b64decode(hashed.split("$")[3])
    assert passwd_tool.hash_password("pässword", salt=salt) == hashed


def test_update_and_delete_keep_every_other_line_in_place(tmp_path):
    path = tmp_path / "passwd"
    path.write_text("# managed by hand\nalice:$7$101$old$old\ncarol:$6$x$y\n")
    assert midge_passwd("-b", str(path), "alice", "new") == 0
    assert midge_passwd("-b", str(path), "dave", "pw") == 0
    lines = path.read_text().splitlines()
    assert lines[0] == "# managed by hand"
    assert lines[1].startswith("alice:$7$101$") and lines[1] != "alice:$7$101$old$old"
    assert lines[2] == "carol:$6$x$y"
    assert lines[3].startswith("dave:$7$101$")
    assert midge_passwd("-D", str(path), "alice") == 0
    assert path.read_text().splitlines() == [lines[0], lines[2], lines[3]]
    assert not list(tmp_path.glob(".passwd.*"))  # no temporary file left behind


def test_prompts_twice(tmp_path, monkeypatch):
    answers = iter(["typed", "typed"])
    monkeypatch.setattr(passwd_tool.getpass, "getpass", lambda prompt: next(answers))
    path = tmp_path / "passwd"
    assert midge_passwd("-c", str(path), "alice") == 0
    assert load_password_file(path)["alice"].verify(b"typed")


def test_prompted_passwords_must_match(tmp_path, monkeypatch, capsys):
    answers = iter(["one", "two"])
    monkeypatch.setattr(passwd_tool.getpass, "getpass", lambda prompt: next(answers))
    path = tmp_path / "passwd"
    assert midge_passwd("-c", str(path), "alice") == 1
    assert "passwords do not match" in capsys.readouterr().err
    assert not path.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-b", "{file}", "alice"], "goes with -b"),
        (["{file}", "alice", "pw"], "goes with -b"),
        (["-b", "{file}", "a:b", "pw"], "must not contain ':'"),
        (["-b", "{missing}", "alice", "pw"], "does not exist (-c creates it)"),
        (["-D", "{file}", "nobody"], "user 'nobody' not found"),
        (["-D", "-c", "{file}", "alice"], "-D cannot be combined"),
    ],
)
def test_errors_exit_1_with_a_message(tmp_path, capsys, args, message):
    path = tmp_path / "passwd"
    path.write_text("alice:$6$x$y\n")
    filled = [a.format(file=path, missing=tmp_path / "missing") for a in args]
    assert midge_passwd(*filled) == 1
    assert message in capsys.readouterr().err
    assert path.read_text() == "alice:$6$x$y\n"
