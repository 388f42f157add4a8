"""Fixtures of the client tests: either broker, brokers that demand a password, TLS."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from client_support import HOST, mosquitto_passwd

from brokers import Broker, free_port, mosquitto_binary, start_midge, start_mosquitto
from certificates import Certificates, make_certificates


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
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A CA and a server certificate for 127.0.0.1 / localhost signed by it."""
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def tls_mosquitto(tls_files: Certificates) -> Iterator[tuple[Broker, int]]:
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed")
    tls_port = free_port()
    conf = (
        f"listener {tls_port} {HOST}\ncafile {tls_files.ca}\n"
        f"certfile {tls_files.server_cert}\nkeyfile {tls_files.server_key}\nuser root\n"
    )
    with start_mosquitto(conf) as broker:
        yield broker, tls_port
