"""`midge apikey`: make, list and delete the HTTP API's keys.

    midge apikey create NAME --role admin|read --file FILE   prints the new key
    midge apikey list --file FILE
    midge apikey delete NAME --file FILE

`create` prints the key alone on the first line of standard output and
nothing else there (a script takes it with `KEY=$(midge apikey create ...)`);
what it did goes to standard error. The key is shown this once: FILE keeps
only its SHA-256 (`NAME:ROLE:sha256$ID$DIGEST`, see midge/http/apikeys.py),
so a lost key is deleted and made anew. FILE is created with mode 0600 when
missing, and replaced atomically, so a broker reloading it on SIGHUP reads
the old file or the new one, never half of one. Other lines are kept.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from midge.http.apikeys import (
    ROLES,
    ApiKey,
    ApiKeyFileError,
    check_name,
    new_key,
    parse_key_file,
)
from midge.tools.files import replace_lines

FILE_MODE = 0o600


class ApiKeyError(Exception):
    """A problem the user must fix; the message says what."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="apikey_action", required=True)
    create = actions.add_parser("create", help="make a key; prints it once on standard output")
    create.add_argument("name", metavar="NAME", help="the key's name: the user name the ACL sees")
    create.add_argument(
        "--role", choices=ROLES, required=True, help="admin: every endpoint; read: GET only"
    )
    create.add_argument("--file", required=True, metavar="FILE", help="the key file (api_key_file)")
    listing = actions.add_parser("list", help="the keys of FILE: name, role and id")
    listing.add_argument("--file", required=True, metavar="FILE")
    delete = actions.add_parser("delete", help="remove a key from FILE")
    delete.add_argument("name", metavar="NAME")
    delete.add_argument("--file", required=True, metavar="FILE")


def run(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        if args.apikey_action == "create":
            key = create(path, args.name, args.role)
            print(key, flush=True)
            print(
                f"midge apikey: key {args.name!r} ({args.role}) added to {path}; it is shown "
                "only now. A running broker reads it on SIGHUP.",
                file=sys.stderr,
            )
        elif args.apikey_action == "list":
            for name, role, key_id in listing(path):
                print(f"{name}\t{role}\t{key_id}")
        else:
            delete(path, args.name)
            print(f"midge apikey: key {args.name!r} deleted from {path}", file=sys.stderr)
    except ApiKeyError as exc:
        print(f"midge apikey: {exc}", file=sys.stderr)
        return 1
    return 0


def create(path: Path, name: str, role: str) -> str:
    """Add a key named `name` to `path` (made if missing); returns the key."""
    problem = check_name(name)
    if problem:
        raise ApiKeyError(problem)
    lines = _read(path, missing_ok=True)
    if any(key.name == name for key in _parse(lines, path)):
        raise ApiKeyError(f"a key named {name!r} is in {path} already (delete it first)")
    key, entry = new_key(name, role)
    _write(path, [*lines, entry.line()])
    return key


def listing(path: Path) -> list[tuple[str, str, str]]:
    return [(key.name, key.role, key.key_id) for key in _parse(_read(path), path)]


def delete(path: Path, name: str) -> None:
    lines = _read(path)
    _parse(lines, path)  # a broken file is reported, not rewritten
    kept = [line for line in lines if line.strip().split(":", 1)[0] != name or _comment(line)]
    if len(kept) == len(lines):
        raise ApiKeyError(f"no key named {name!r} in {path}")
    _write(path, kept)


def _comment(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def _read(path: Path, missing_ok: bool = False) -> list[str]:
    try:
        return path.read_text("utf-8").splitlines()
    except FileNotFoundError:
        if missing_ok:
            return []
        raise ApiKeyError(f"{path} does not exist (`midge apikey create` makes it)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ApiKeyError(f"cannot read {path}: {exc}") from None


def _parse(lines: list[str], path: Path) -> list[ApiKey]:
    try:
        return parse_key_file("\n".join(lines), str(path))
    except ApiKeyFileError as exc:
        raise ApiKeyError(str(exc)) from None


def _write(path: Path, lines: list[str]) -> None:
    """Replace `path` atomically, mode {FILE_MODE:o} (see tools/files.py)."""
    try:
        replace_lines(path, lines, FILE_MODE)
    except OSError as exc:
        raise ApiKeyError(str(exc)) from None
