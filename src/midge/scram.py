"""SCRAM-SHA-256 (RFC 5802, RFC 7677) for MQTT 5.0 enhanced authentication.

Sans-IO both ways, shared by the broker (`ScramServer`), the client
(`ScramClient`) and `midge passwd --scram` (`make_credential`). Over MQTT the
method is "SCRAM-SHA-256" and the messages travel as Authentication Data:

    CONNECT  client-first   n,,n=USER,r=CNONCE
    AUTH 18  server-first   r=CNONCE+SNONCE,s=SALT,i=ITERATIONS
    AUTH 18  client-final   c=biws,r=NONCE,p=PROOF
    CONNACK  server-final   v=SIGNATURE          (or AUTH 00 on re-authentication)

The broker never sees or stores the password: a credentials file line is
`user:SCRAM-SHA-256$ITERATIONS:SALT$STOREDKEY:SERVERKEY` (RFC 5803), base64.
Channel binding is not offered ("n,,"): MQTT has no channel to bind to
beyond TLS, which protects the exchange where it matters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

METHOD = "SCRAM-SHA-256"
DEFAULT_ITERATIONS = 4096  # RFC 7677's minimum
SALT_BYTES = 16
_PREFIX = f"{METHOD}$"


class ScramError(Exception):
    """The exchange cannot go on: a malformed message or a wrong proof."""


@dataclass(frozen=True, slots=True)
class Credential:
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise ScramError(f"not base64: {text[:40]!r}") from None


def _keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    """(client key, server key) of a password (RFC 5802, section 3)."""
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return _hmac(salted, b"Client Key"), _hmac(salted, b"Server Key")


def make_credential(
    password: str, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None
) -> Credential:
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    client_key, server_key = _keys(password, salt, iterations)
    return Credential(salt, iterations, hashlib.sha256(client_key).digest(), server_key)


def format_credential(credential: Credential) -> str:
    """The part after "user:" of a credentials file line (RFC 5803)."""
    return (
        f"{_PREFIX}{credential.iterations}:{_b64(credential.salt)}"
        f"${_b64(credential.stored_key)}:{_b64(credential.server_key)}"
    )


def parse_credential(text: str) -> Credential:
    """The inverse of `format_credential`; ScramError if `text` is not one."""
    if not text.startswith(_PREFIX):
        raise ScramError(f"not a {METHOD} credential")
    try:
        head, keys = text[len(_PREFIX) :].split("$")
        iterations_text, salt_text = head.split(":")
        stored_text, server_text = keys.split(":")
        iterations = int(iterations_text)
    except ValueError:
        raise ScramError(f"malformed {METHOD} credential") from None
    if iterations < 1:
        raise ScramError("iteration count must be positive")
    return Credential(_unb64(salt_text), iterations, _unb64(stored_text), _unb64(server_text))


def _attributes(message: str) -> dict[str, str]:
    """ "a=1,b=2" -> {"a": "1", "b": "2"}; values may contain '='."""
    out: dict[str, str] = {}
    for part in message.split(","):
        name, equals, value = part.partition("=")
        if len(name) != 1 or not equals:
            raise ScramError(f"malformed SCRAM attribute {part[:40]!r}")
        out[name] = value
    return out


def _decode_name(name: str) -> str:
    """saslname: "=2C" is ',' and "=3D" is '=' (RFC 5802, section 5.1)."""
    return name.replace("=2C", ",").replace("=3D", "=")


def _encode_name(name: str) -> str:
    return name.replace("=", "=3D").replace(",", "=2C")


def _text(data: bytes | None) -> str:
    if data is None:
        raise ScramError("authentication data missing")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ScramError("authentication data is not UTF-8") from None


class ScramServer:
    """The broker's side of one exchange: `first` with the client-first message,
    then `final` with the client-final one. A user not in `credentials` gets a
    made-up salt, so the exchange fails only at the proof and does not tell
    which user names exist."""

    __slots__ = ("_auth_message", "_credential", "_nonce", "username")

    def __init__(self) -> None:
        self.username = ""
        self._nonce = ""
        self._auth_message = ""
        self._credential: Credential | None = None

    def first(self, data: bytes | None, credentials: Mapping[str, Credential]) -> bytes:
        """The server-first message for the client-first one in `data`."""
        message = _text(data)
        if not message.startswith("n,,"):
            raise ScramError("only the GS2 header 'n,,' (no channel binding) is supported")
        bare = message[3:]
        attributes = _attributes(bare)
        if "n" not in attributes or "r" not in attributes or not attributes["r"]:
            raise ScramError("client-first message needs n= and r=")
        self.username = _decode_name(attributes["n"])
        credential = credentials.get(self.username)
        if credential is None:
            credential = Credential(secrets.token_bytes(SALT_BYTES), DEFAULT_ITERATIONS, b"", b"")
        self._credential = credential
        self._nonce = attributes["r"] + secrets.token_urlsafe(18)
        server_first = f"r={self._nonce},s={_b64(credential.salt)},i={credential.iterations}"
        self._auth_message = f"{bare},{server_first}"
        return server_first.encode()

    def final(self, data: bytes | None) -> bytes:
        """The server-final message if the client's proof is right; else ScramError."""
        credential = self._credential
        if credential is None:
            raise ScramError("client-final message before client-first")
        message = _text(data)
        without_proof, _, proof_part = message.rpartition(",p=")
        attributes = _attributes(without_proof)
        if attributes.get("r") != self._nonce:
            raise ScramError("nonce does not match")
        if attributes.get("c") != "biws":  # base64("n,,")
            raise ScramError("channel binding data does not match 'n,,'")
        auth_message = f"{self._auth_message},{without_proof}".encode()
        proof = _unb64(proof_part)
        signature = _hmac(credential.stored_key, auth_message)
        if len(proof) != len(signature):
            raise ScramError("proof has the wrong length")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not credential.stored_key or not hmac.compare_digest(
            hashlib.sha256(client_key).digest(), credential.stored_key
        ):
            raise ScramError("wrong password")
        return f"v={_b64(_hmac(credential.server_key, auth_message))}".encode()


class ScramClient:
    """The client's side: `first()`, then `final(server_first)`, then
    `verify(server_final)`, which checks the broker knew the credential too."""

    __slots__ = ("_auth_message", "_nonce", "_password", "_server_key", "username")

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self._password = password
        self._nonce = secrets.token_urlsafe(18)
        self._auth_message = ""
        self._server_key = b""

    def first(self) -> bytes:
        return f"n,,n={_encode_name(self.username)},r={self._nonce}".encode()

    def final(self, data: bytes | None) -> bytes:
        server_first = _text(data)
        attributes = _attributes(server_first)
        nonce = attributes.get("r", "")
        if not nonce.startswith(self._nonce) or "s" not in attributes or "i" not in attributes:
            raise ScramError("malformed server-first message")
        try:
            iterations = int(attributes["i"])
        except ValueError:
            raise ScramError("iteration count is not a number") from None
        client_key, self._server_key = _keys(self._password, _unb64(attributes["s"]), iterations)
        without_proof = f"c=biws,r={nonce}"
        bare = self.first().decode()[3:]
        self._auth_message = f"{bare},{server_first},{without_proof}"
        signature = _hmac(hashlib.sha256(client_key).digest(), self._auth_message.encode())
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        return f"{without_proof},p={_b64(proof)}".encode()

    def verify(self, data: bytes | None) -> None:
        expected = _hmac(self._server_key, self._auth_message.encode())
        attributes = _attributes(_text(data))
        if not hmac.compare_digest(_unb64(attributes.get("v", "")), expected):
            raise ScramError("the server's signature is wrong: it does not know the credential")
