"""SIGHUP reloads the password and ACL files, dropping no one; a broken file changes nothing."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from integration_support import Paho, unique

from brokers import password_text, pbkdf2_line, start_midge


def _refused(host: str, port: int, user: str, password: str) -> bool:
    client = Paho(host, port, username=user, password=password)
    try:
        return client.connect().reason.is_failure
    finally:
        client.close()


def test_sighup_reloads_passwords_and_acl_and_keeps_connections(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    acl = tmp_path / "acl"
    passwd.write_text(password_text([pbkdf2_line("alice", "one")]))
    acl.write_text("user alice\ntopic readwrite news/#\n")
    config = (
        f'allow_anonymous = false\npassword_file = "{passwd}"\nacl_file = "{acl}"\n'
        "auth_failure_delay = 0.0\n"
    )
    with start_midge(config_toml=config) as (host, port, process):
        alice = Paho(host, port, username="alice", password="one")
        alice.connect_ok()
        try:
            alice.subscribe("news/#", 1)
            assert _refused(host, port, "bob", "two")

            passwd.write_text(
                password_text([pbkdf2_line("alice", "one"), pbkdf2_line("bob", "two")])
            )
            acl.write_text("user alice\ntopic readwrite news/#\nuser bob\ntopic write news/#\n")
            process.send_signal(signal.SIGHUP)
            time.sleep(0.5)
            bob = Paho(host, port, username="bob", password="two")
            bob.connect_ok()
            try:
                topic = unique("news/")
                bob.publish(topic, b"after reload", qos=1)
                assert alice.get().payload == b"after reload"  # alice was never dropped
            finally:
                bob.close()

            # A broken ACL file: the old rules (and passwords) stay in force.
            passwd.write_text(password_text([pbkdf2_line("alice", "one")]))
            acl.write_text("user bob\ntopic sideways news/#\n")
            process.send_signal(signal.SIGHUP)
            time.sleep(0.5)
            assert process.poll() is None
            assert not _refused(host, port, "bob", "two")
        finally:
            alice.close()
