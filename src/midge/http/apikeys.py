"""API keys of the HTTP API: who may call it, and with which role.

A key is `mk_<id>_<secret>`: `id` is 12 hex digits that name the key, the
secret is 32 random bytes (`secrets.token_urlsafe(32)`). The key file
(config key `api_key_file`, written by `midge apikey`) has one line per key,

    NAME:ROLE:sha256$ID$HEXDIGEST

where HEXDIGEST is the SHA-256 of the secret, so the file never holds a
usable key. Blank lines and lines starting with `#` are kept and ignored.
ROLE is `admin` (every endpoint) or `read` (GET only). NAME is the user name
the ACL sees when the key publishes.

Why SHA-256 and not a slow KDF (the `$7$` PBKDF2 of password files): a slow
hash protects guessable secrets, whose space an attacker with the file can
walk. A 256-bit random secret cannot be walked at any speed, so one fast
hash is as safe and keeps a request's check to a dict lookup by id plus one
SHA-256 and a constant-time comparison, not a KDF per request.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("midge.http")

KEY_PREFIX = "mk_"
ID_LENGTH = 12  # hex digits
SECRET_BYTES = 32
MAX_KEY_LENGTH = 200  # far above what new_key makes: longer input is refused unread
ROLES = ("admin", "read")
HASH_SCHEME = "sha256"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
_ID_PATTERN = re.compile(f"[0-9a-f]{{{ID_LENGTH}}}")
_DIGEST_PATTERN = re.compile(r"[0-9a-f]{64}")


class ApiKeyFileError(ValueError):
    """A key file that cannot be used; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One key as the file keeps it: never the secret, only its digest."""

    name: str
    role: str  # admin or read
    key_id: str
    digest: str  # hex SHA-256 of the secret

    @property
    def may_write(self) -> bool:
        return self.role == "admin"

    def line(self) -> str:
        return f"{self.name}:{self.role}:{HASH_SCHEME}${self.key_id}${self.digest}"


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_key(name: str, role: str) -> tuple[str, ApiKey]:
    """A fresh key (shown once) and what the file keeps of it."""
    key_id = secrets.token_hex(ID_LENGTH // 2)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return f"{KEY_PREFIX}{key_id}_{secret}", ApiKey(name, role, key_id, secret_digest(secret))


def split_key(token: str) -> tuple[str, str] | None:
    """(id, secret) of a key as a client sends it; None for anything else."""
    if len(token) > MAX_KEY_LENGTH or not token.startswith(KEY_PREFIX):
        return None
    start = len(KEY_PREFIX)
    end = start + ID_LENGTH
    key_id, separator, secret = token[start:end], token[end : end + 1], token[end + 1 :]
    if separator != "_" or not secret or not _ID_PATTERN.fullmatch(key_id):
        return None
    return key_id, secret


def check_name(name: str) -> str | None:
    """Why `name` cannot name a key (None: it can)."""
    if not NAME_PATTERN.fullmatch(name):
        return (
            "a key name is 1-64 characters: letters, digits and . _ @ + -, "
            "starting with a letter or digit"
        )
    return None


def parse_key_file(text: str, source: str) -> list[ApiKey]:
    """The keys of a key file's text; ApiKeyFileError names `source` and the line."""
    keys: list[ApiKey] = []
    names: set[str] = set()
    ids: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}:{number}"
        parts = line.split(":")
        if len(parts) != 3:
            raise ApiKeyFileError(f"{where}: expected NAME:ROLE:sha256$ID$DIGEST")
        name, role, hashed = parts
        problem = check_name(name)
        if problem:
            raise ApiKeyFileError(f"{where}: {problem}")
        if role not in ROLES:
            raise ApiKeyFileError(f"{where}: role {role!r} is not one of {', '.join(ROLES)}")
        scheme, _, rest = hashed.partition("$")
        key_id, _, digest = rest.partition("$")
        if (
            scheme != HASH_SCHEME
            or not _ID_PATTERN.fullmatch(key_id)
            or not _DIGEST_PATTERN.fullmatch(digest)
        ):
            raise ApiKeyFileError(
                f"{where}: the hash must be sha256$<12 hex digits>$<64 hex digits>"
            )
        if name in names:
            raise ApiKeyFileError(f"{where}: key name {name!r} appears twice")
        if key_id in ids:
            raise ApiKeyFileError(f"{where}: key id {key_id} appears twice")
        names.add(name)
        ids.add(key_id)
        keys.append(ApiKey(name, role, key_id, digest))
    return keys


def read_key_file(path: str | Path) -> list[ApiKey]:
    """The keys of the file at `path`; ApiKeyFileError when it cannot be used."""
    try:
        text = Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ApiKeyFileError(f"cannot read API key file {path}: {exc}") from None
    return parse_key_file(text, str(path))


class ApiKeys:
    """The keys in force: looked up by id, checked by digest, replaced on reload."""

    def __init__(self, keys: Iterable[ApiKey] = (), path: str = "") -> None:
        self.path = path
        self._by_id = {key.key_id: key for key in keys}

    @classmethod
    def load(cls, path: str) -> ApiKeys:
        """The keys of `path` ("" : none, so only the open endpoints answer)."""
        return cls(read_key_file(path) if path else (), path)

    def authenticate(self, token: str) -> ApiKey | None:
        """The key `token` is, or None. One SHA-256 and a constant-time comparison."""
        parts = split_key(token)
        if parts is None:
            return None
        key = self._by_id.get(parts[0])
        if key is None:
            return None
        if not hmac.compare_digest(secret_digest(parts[1]), key.digest):
            return None
        return key

    def current(self, key: ApiKey) -> bool:
        """Whether `key` is still in force (a reload may have deleted or changed it)."""
        return self._by_id.get(key.key_id) == key

    def names(self) -> set[str]:
        return {key.name for key in self._by_id.values()}

    def key_ids(self) -> set[str]:
        return set(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def reload(self) -> bool:
        """Read the file again; a broken one keeps the keys in force (logged)."""
        if not self.path:
            return True
        try:
            keys = read_key_file(self.path)
        except ApiKeyFileError as exc:
            log.error("reload of the API key file failed, keeping the previous keys: %s", exc)
            return False
        self._by_id = {key.key_id: key for key in keys}
        log.info("reloaded API key file %r: %d keys", self.path, len(keys))
        return True
