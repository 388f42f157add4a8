"""`midge passwd`: add, change or delete users of a password file, like `mosquitto_passwd`.

    midge passwd [-c] FILE USER              prompts for the password twice
    midge passwd [-c] -b FILE USER PASSWORD  batch: the password on the command line
    midge passwd -D FILE USER                delete USER
    midge passwd --scram [-c] [-b] FILE USER ...   a SCRAM-SHA-256 credentials file instead

Lines are `user:$7$101$salt$hash`: PBKDF2-SHA512 with 101 iterations and a
12-byte random salt, base64, exactly what Mosquitto 2.0's `mosquitto_passwd`
writes, so Midge and Mosquitto read each other's files. Other lines
(other users, comments) are kept as they are. The file is written to a
temporary file beside it and renamed over it, so a reader (a broker
reloading on SIGHUP) sees the old file or the new one, never half of one;
its mode is 0600, since the hashes are worth guessing at.

With `--scram` the lines are `user:SCRAM-SHA-256$4096:salt$storedkey:serverkey`
(RFC 5803): the credentials MQTT 5.0 enhanced authentication checks against
(config key `scram_file`; see midge/scram.py). The same file never mixes both.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import os
import sys
from pathlib import Path

from midge.scram import format_credential, make_credential
from midge.tools.files import replace_lines

ITERATIONS = 101  # what mosquitto_passwd 2.0 uses
SALT_BYTES = 12
FILE_MODE = 0o600


class PasswdError(Exception):
    """A problem the user must fix; the message says what."""


def hash_password(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """The `$7$` hash of `password` as mosquitto_passwd writes it."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${_b64(salt)}${_b64(digest)}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", dest="create", action="store_true", help="create or overwrite FILE")
    parser.add_argument(
        "-b", dest="batch", action="store_true", help="take the password from the command line"
    )
    parser.add_argument("-D", dest="delete", action="store_true", help="delete USER from FILE")
    parser.add_argument(
        "--scram",
        action="store_true",
        help="write SCRAM-SHA-256 credentials (for scram_file: MQTT 5.0 enhanced auth)",
    )
    parser.add_argument("file", metavar="FILE", help="the password file")
    parser.add_argument("username", metavar="USER")
    parser.add_argument("password", metavar="PASSWORD", nargs="?", help="with -b only")


def run(args: argparse.Namespace) -> int:
    try:
        _check_arguments(args)
        if args.delete:
            _delete(Path(args.file), args.username)
        else:
            password = args.password if args.batch else _prompt()
            _set(Path(args.file), args.username, password, args.create, args.scram)
    except PasswdError as exc:
        print(f"midge passwd: {exc}", file=sys.stderr)
        return 1
    return 0


def _check_arguments(args: argparse.Namespace) -> None:
    if args.delete and (args.create or args.batch):
        raise PasswdError("-D cannot be combined with -c or -b")
    if args.batch != (args.password is not None) and not args.delete:
        raise PasswdError("a PASSWORD argument goes with -b, and -b needs one")
    if args.delete and args.password is not None:
        raise PasswdError("-D takes FILE and USER only")
    if not args.username or ":" in args.username:
        raise PasswdError("the user name must be non-empty and must not contain ':'")


def _prompt() -> str:
    password = getpass.getpass("Password: ")
    if getpass.getpass("Reenter password: ") != password:
        raise PasswdError("passwords do not match")
    return password


def _set(path: Path, username: str, password: str, create: bool, scram: bool = False) -> None:
    secret = format_credential(make_credential(password)) if scram else hash_password(password)
    line = f"{username}:{secret}"
    lines = [] if create else _read(path)
    index = _find(lines, username)
    if index is None:
        lines.append(line)
    else:
        lines[index] = line  # a changed password keeps its place in the file
    _write(path, lines)


def _delete(path: Path, username: str) -> None:
    lines = _read(path)
    index = _find(lines, username)
    if index is None:
        raise PasswdError(f"user {username!r} not found in {path}")
    del lines[index]
    _write(path, lines)


def _read(path: Path) -> list[str]:
    try:
        return path.read_text("utf-8").splitlines()
    except FileNotFoundError:
        raise PasswdError(f"{path} does not exist (-c creates it)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PasswdError(f"cannot read {path}: {exc}") from None


def _find(lines: list[str], username: str) -> int | None:
    prefix = f"{username}:"
    for index, line in enumerate(lines):
        if line.startswith(prefix):
            return index
    return None


def _write(path: Path, lines: list[str]) -> None:
    """Replace `path` atomically, mode {FILE_MODE:o} (see tools/files.py)."""
    try:
        replace_lines(path, lines, FILE_MODE)
    except OSError as exc:
        raise PasswdError(str(exc)) from None
