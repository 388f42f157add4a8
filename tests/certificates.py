"""TLS certificates for the tests, made by the openssl CLI for one run, never committed.

`make_certificates(directory)` writes a CA, a server certificate for
127.0.0.1 and localhost signed by it, a client certificate signed by it, and
a self-signed "stranger" certificate that the CA never signed (for listeners
that must refuse it). Keys are EC P-256: quick to make. Without the openssl
command the calling test skips. Imported as `from certificates import ...`,
like `brokers` (pytest puts tests/ on sys.path for tests/conftest.py).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

DAYS = "2"
KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
SELF_SIGNED = ("-x509", "-days", DAYS)  # `openssl req` options: a certificate, not a CSR
SERVER_NAMES = "subjectAltName=IP:127.0.0.1,DNS:localhost\n"


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path  # CN=localhost, SAN IP:127.0.0.1 and DNS:localhost, signed by ca
    server_key: Path
    client_cert: Path  # CN=client_name, signed by ca
    client_key: Path
    stranger_cert: Path  # CN=stranger_name, self-signed: not signed by ca
    stranger_key: Path


def make_certificates(
    directory: Path, client_name: str = "alice", stranger_name: str = "mallory"
) -> Certificates:
    """Write the CA and the certificates into `directory`; skip the test without openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")

    def run(*args: str | Path) -> None:
        subprocess.run([openssl, *map(str, args)], check=True, capture_output=True, timeout=60)

    def request(name: str, subject: str, out: str, *options: str) -> Path:
        """A new key `name`.key and, by `openssl req`, `name`.`out` (a certificate or a CSR)."""
        key, path = directory / f"{name}.key", directory / f"{name}.{out}"
        run("req", *options, *KEY, "-subj", subject, "-keyout", key, "-out", path)
        return path

    def signed(name: str, subject: str, *extra: str | Path) -> None:
        """A new key and a certificate for it signed by the CA."""
        csr, crt = request(name, subject, "csr"), directory / f"{name}.crt"
        ca = ("-CA", directory / "ca.crt", "-CAkey", directory / "ca.key", "-CAcreateserial")
        run("x509", "-req", "-in", csr, *ca, "-days", DAYS, "-out", crt, *extra)

    request("ca", "/CN=Midge test CA", "crt", *SELF_SIGNED)
    (directory / "san.ext").write_text(SERVER_NAMES)
    signed("server", "/CN=localhost", "-extfile", directory / "san.ext")
    signed("client", f"/CN={client_name}")
    request("stranger", f"/CN={stranger_name}", "crt", *SELF_SIGNED)
    return Certificates(
        ca=directory / "ca.crt",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
        stranger_cert=directory / "stranger.crt",
        stranger_key=directory / "stranger.key",
    )
