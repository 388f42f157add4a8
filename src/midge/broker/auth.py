"""Who may connect: anonymous access and a Mosquitto-compatible password file.

The file holds `username:hash` lines as `mosquitto_passwd` writes them:
`$7$iterations$salt$hash` (PBKDF2-SHA512) or `$6$salt$hash` (SHA-512 of
password + salt), salt and hash in base64. Hashes are compared in constant
time. The answer is a CONNACK return code, so the broker reports exactly
what the check found.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from midge.protocol.packets import ConnectReturnCode


class PasswordFileError(ValueError):
    """A password file line that cannot be used; names the file and line."""


@dataclass(frozen=True, slots=True)
class PasswordHash:
    algorithm: str  # "6" or "7"
    iterations: int
    salt: bytes
    digest: bytes

    def verify(self, password: bytes) -> bool:
        if self.algorithm == "7":
            computed = hashlib.pbkdf2_hmac("sha512", password, self.salt, self.iterations)
        else:
            computed = hashlib.sha512(password + self.salt).digest()
        return hmac.compare_digest(computed, self.digest)


def parse_hash(text: str) -> PasswordHash:
    parts = text.split("$")
    try:
        if len(parts) == 5 and parts[1] == "7":
            return PasswordHash("7", int(parts[2]), _b64(parts[3]), _b64(parts[4]))
        if len(parts) == 4 and parts[1] == "6":
            return PasswordHash("6", 1, _b64(parts[2]), _b64(parts[3]))
    except (ValueError, binascii.Error):
        pass
    raise ValueError("not a $6$ or $7$ hash as mosquitto_passwd writes them")


def _b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def load_password_file(path: str | Path) -> dict[str, PasswordHash]:
    users: dict[str, PasswordHash] = {}
    for number, raw in enumerate(Path(path).read_text("utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        username, sep, hashed = line.rpartition(":")
        if not sep or not username:
            raise PasswordFileError(f"{path}:{number}: expected username:hash")
        try:
            users[username] = parse_hash(hashed)
        except ValueError as exc:
            raise PasswordFileError(f"{path}:{number}: {exc}") from None
    return users


class Authenticator:
    """Decides CONNACK return codes 0, 4 and 5 from the credentials a client sends."""

    def __init__(self, users: dict[str, PasswordHash] | None) -> None:
        self.users = users

    @classmethod
    def from_settings(cls, password_file: str) -> Authenticator:
        users = load_password_file(password_file) if password_file else None
        return cls(users)

    def check(
        self, username: str | None, password: bytes | None, allow_anonymous: bool
    ) -> ConnectReturnCode:
        """The CONNACK code; `allow_anonymous` is the policy of the client's listener."""
        if username is None:
            if allow_anonymous:
                return ConnectReturnCode.ACCEPTED
            return ConnectReturnCode.NOT_AUTHORIZED
        if self.users is None:
            # No password file: a user name is an identity only, as in Mosquitto.
            if allow_anonymous:
                return ConnectReturnCode.ACCEPTED
            return ConnectReturnCode.NOT_AUTHORIZED
        known = self.users.get(username)
        if known is None or password is None or not known.verify(password):
            return ConnectReturnCode.BAD_USERNAME_OR_PASSWORD
        return ConnectReturnCode.ACCEPTED
