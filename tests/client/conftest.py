"""Fixtures of the client tests: either broker, brokers that demand a password, TLS."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from client_support import HOST, mosquitto_passwd

from brokers import Broker, free_port, mosquitto_binary, start_midge, start_mosquitto


@pytest.fixture(params=["midge", "mosquitto"])
def broker(request: pytest.FixtureRequest) -> Broker:
    return request.getfixturevalue(f"{request.param}_broker")  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def auth_brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Broker]]:
    if mosquitto_binary() is None or shutil.which("mosquitto_passwd") is None:
        pytest.skip("needs mosquitto and mosquitto_passwd (apt-get install mosquitto)")
    path: Path = tmp_path_factory.mktemp("auth") / "passwd"
    mosquitto_passwd(path, {"alice": "s3cret"})
    midge_conf = f"allow_anonymous = false\npassword_file = {str(path)!r}\n"
    # `user root`: as root, mosquitto would otherwise drop to a user that cannot read tmp_path
    mosquitto_conf = f"allow_anonymous false\npassword_file {path}\nuser root\n"
    with start_midge(midge_conf) as midge, start_mosquitto(mosquitto_conf) as mosquitto:
        yield {"midge": midge, "mosquitto": mosquitto}


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1, made with the openssl CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command")
    folder = tmp_path_factory.mktemp("tls")
    files = {name: folder / name for name in ("ca.key", "ca.crt", "srv.key", "srv.csr", "srv.crt")}
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    commands = [
        ["req", "-x509", *ec, "-keyout", files["ca.key"], "-out", files["ca.crt"],
         "-days", "2", "-subj", "/CN=midge-test-ca"],
        ["req", *ec, "-keyout", files["srv.key"], "-out", files["srv.csr"], "-subj", "/CN=x"],
        ["x509", "-req", "-in", files["srv.csr"], "-CA", files["ca.crt"], "-CAkey",
         files["ca.key"], "-CAcreateserial", "-out", files["srv.crt"], "-days", "2",
         "-extfile", "/dev/stdin"],
    ]  # fmt: skip
    for command in commands:
        subprocess.run(
            [openssl, *map(str, command)],
            input=b"subjectAltName=IP:127.0.0.1\n",
            check=True,
            capture_output=True,
            timeout=30,
        )
    return files


@pytest.fixture(scope="session")
def tls_mosquitto(tls_files: dict[str, Path]) -> Iterator[tuple[Broker, int]]:
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed")
    tls_port = free_port()
    conf = (
        f"listener {tls_port} {HOST}\ncafile {tls_files['ca.crt']}\n"
        f"certfile {tls_files['srv.crt']}\nkeyfile {tls_files['srv.key']}\nuser root\n"
    )
    with start_mosquitto(conf) as broker:
        yield broker, tls_port
