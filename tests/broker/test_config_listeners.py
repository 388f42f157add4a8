"""`[[listeners]]` tables, the anonymous policy per listener, and the abuse limits' keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from midge.broker.config import BrokerConfig, ConfigError, ListenerConfig, load_config


@pytest.fixture
def pem(tmp_path):
    """Paths of files that exist (their contents matter only when a listener opens)."""
    for name in ("cert.pem", "key.pem", "ca.pem"):
        (tmp_path / name).write_text("-----\n", encoding="utf-8")
    return {name: str(tmp_path / f"{name}.pem") for name in ("cert", "key", "ca")}


def test_without_listeners_the_top_level_address_is_the_one_listener():
    config = BrokerConfig(host="127.0.0.1", port=1999)
    assert config.effective_listeners() == (ListenerConfig(1999, host="127.0.0.1"),)


def test_listener_tables_replace_the_default_and_inherit_host(toml_file, pem):
    config = load_config(
        toml_file(
            'host = "127.0.0.2"\n'
            "[[listeners]]\nport = 1883\n"
            f'[[listeners]]\nport = 8883\ntransport = "tls"\ncertfile = "{pem["cert"]}"\n'
            f'keyfile = "{pem["key"]}"\n'
            '[[listeners]]\nport = 8080\ntransport = "ws"\nhost = "::1"\n'
        )
    )
    listeners = config.effective_listeners()
    assert [(item.host, item.port, item.transport) for item in listeners] == [
        ("127.0.0.2", 1883, "tcp"),
        ("127.0.0.2", 8883, "tls"),
        ("::1", 8080, "ws"),
    ]
    assert [item.label for item in listeners] == ["mqtt", "mqtt+tls", "mqtt+ws"]


def test_command_line_host_and_port_move_the_first_listener(toml_file):
    config = load_config(
        toml_file('[[listeners]]\nport = 1883\n[[listeners]]\nport = 8080\ntransport = "ws"\n')
    )
    moved = config.override(host="127.0.0.1", port=0)
    assert [(item.host, item.port) for item in moved.effective_listeners()] == [
        ("127.0.0.1", 0),
        ("127.0.0.1", 8080),
    ]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[[listeners]]\nport = 1\nprot = 2\n", "listeners[0].prot"),
        ('[[listeners]]\ntransport = "tcp"\n', "listeners[0].port"),
        ('[[listeners]]\nport = "1"\n', "listeners[0].port"),
        ("[[listeners]]\nport = 70000\n", "listeners[0].port"),
        ('[[listeners]]\nport = 1\ntransport = "quic"\n', "listeners[0].transport"),
        ("[[listeners]]\nport = 1\nallow_anonymous = 1\n", "listeners[0].allow_anonymous"),
        ('[[listeners]]\nport = 1\ntransport = "tls"\n', "listeners[0].certfile"),
        ('[[listeners]]\nport = 1\ncertfile = "x"\n', "listeners[0].certfile"),
        (
            "[[listeners]]\nport = 1\nrequire_certificate = true\n",
            "listeners[0].require_certificate",
        ),
        ("listeners = 5\n", "listeners"),
        ("max_keepalive = 70000\n", "max_keepalive"),
        ("max_topic_length = 0\n", "max_topic_length"),
        ("max_topic_levels = 0\n", "max_topic_levels"),
        ("auth_failure_delay = -1\n", "auth_failure_delay"),
        ("auth_failure_delay = 5\nauth_failure_max_delay = 1\n", "auth_failure_max_delay"),
    ],
)
def test_bad_listener_and_limit_values_name_the_key(toml_file, text, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load_config(toml_file(text))


def test_tls_files_must_exist_and_client_certificates_need_a_ca(toml_file, pem):
    base = f'[[listeners]]\nport = 1\ntransport = "wss"\ncertfile = "{pem["cert"]}"\n'
    with pytest.raises(ConfigError, match=r"listeners\[0\]\.keyfile"):
        load_config(toml_file(base + 'keyfile = "/nonexistent/key.pem"\n'))
    with_key = base + f'keyfile = "{pem["key"]}"\n'
    with pytest.raises(ConfigError, match=r"listeners\[0\]\.cafile"):
        load_config(toml_file(with_key + "require_certificate = true\n"))
    with pytest.raises(ConfigError, match=r"listeners\[0\]\.require_certificate"):
        load_config(
            toml_file(with_key + f'cafile = "{pem["ca"]}"\nuse_identity_as_username = true\n')
        )
    config = load_config(
        toml_file(
            with_key + f'cafile = "{pem["ca"]}"\nrequire_certificate = true\n'
            "use_identity_as_username = true\n"
        )
    )
    assert config.effective_listeners()[0].secure


@pytest.mark.parametrize(
    ("host", "top_level", "own", "allowed"),
    [
        ("127.0.0.1", None, None, True),  # the default: the implicit listener on loopback
        ("::1", None, None, True),
        ("localhost", None, None, True),
        ("0.0.0.0", None, None, False),
        ("", None, None, False),  # every address
        ("192.0.2.7", None, None, False),
        ("mqtt.example.com", None, None, False),
        ("0.0.0.0", True, None, True),  # the top-level key decides for every listener
        ("127.0.0.1", False, None, False),
        ("0.0.0.0", False, True, True),  # a listener's own key wins
        ("127.0.0.1", True, False, False),
    ],
)
def test_anonymous_policy_of_the_implicit_listener(host, top_level, own, allowed):
    config = BrokerConfig(host=host, allow_anonymous=top_level)
    listener = ListenerConfig(1883, host=host, allow_anonymous=own)
    assert config.anonymous_allowed(listener) is allowed


@pytest.mark.parametrize(
    ("top_level", "own", "allowed"),
    [(None, None, False), (True, None, True), (None, True, True), (True, False, False)],
)
def test_declared_listeners_refuse_anonymous_clients_unless_told(top_level, own, allowed):
    """With [[listeners]], even a loopback one needs allow_anonymous (as Mosquitto 2)."""
    listener = ListenerConfig(1883, host="127.0.0.1", allow_anonymous=own)
    config = BrokerConfig(listeners=(listener,), allow_anonymous=top_level)
    assert config.anonymous_allowed(config.effective_listeners()[0]) is allowed


def test_the_shipped_example_config_is_valid(tmp_path):
    """Its relative paths are taken from its own folder: a copy beside the files it names."""
    example = tmp_path / "midge.toml"
    shipped = Path(__file__).resolve().parents[2] / "examples" / "midge.toml"
    example.write_text(shipped.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "certs").mkdir()
    for name in ("server.crt", "server.key", "ca.crt"):
        (tmp_path / "certs" / name).write_text("-----\n", encoding="utf-8")
    (tmp_path / "passwd").write_text("", encoding="utf-8")
    config = load_config(example)
    assert config.password_file == str(tmp_path / "passwd")
    assert [item.transport for item in config.effective_listeners()] == [
        "tcp",
        "tls",
        "tls",
        "ws",
        "wss",
    ]
    assert config.anonymous_allowed(config.effective_listeners()[0])
    assert not any(config.anonymous_allowed(item) for item in config.effective_listeners()[1:])
