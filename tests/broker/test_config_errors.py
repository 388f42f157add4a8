"""Config errors a user can act on: all of them at once, near misses named, full paths.

Also the rules they rely on: paths in a file are relative to the file's
folder (command-line values to the working directory), the data dir's
parent must exist, and the `hooks` key's form.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from midge.broker.config import (
    BrokerConfig,
    ConfigError,
    config_from_toml,
    load_config,
    prepare_data_dir,
)


def problems_of(path: Path, **overrides: object) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as error:
        load_config(path, **overrides)
    assert str(error.value) == "\n".join(error.value.problems)
    return error.value.problems


def test_every_problem_of_a_file_is_reported_in_one_run(toml_file):
    problems = problems_of(
        toml_file(
            'prot = 1\nlog_level = "loud"\nmax_connections = "5"\n'
            'password_file = "nothere"\n'
            '[[listeners]]\nport = 70000\ntrasport = "tls"\n'
            '[[listeners]]\ntransport = "ws"\n'
        )
    )
    text = "\n".join(problems)
    for named in (
        "'prot'",
        "'log_level'",
        "'max_connections'",
        "'password_file'",
        "'listeners[0].port'",
        "'listeners[0].trasport'",
        "'listeners[1].port'",
    ):
        assert named in text, (named, problems)
    assert len(problems) == 7


def test_command_line_values_are_checked_with_the_file(toml_file):
    problems = problems_of(toml_file('log_level = "loud"\n'), port=70000)
    assert [problem.split(":")[0] for problem in problems] == [
        "config key 'port'",
        "config key 'log_level'",
    ]


def test_a_flag_replaces_a_bad_file_value_before_it_is_checked(toml_file, tmp_path):
    path = toml_file('data_dir = "no/such/parent/data"\n')
    config = load_config(path, data_dir=str(tmp_path / "data"))
    assert config.data_dir == str(tmp_path / "data")


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("prot = 1\n", "did you mean 'port'?"),
        ("max_conections = 1\n", "did you mean 'max_connections'?"),
        ("passwd_file = 'x'\n", "did you mean 'password_file'?"),
        ("hook = []\n", "did you mean 'hooks'?"),
        ("[[listeners]]\nport = 1\ntrasport = 'tls'\n", "did you mean 'transport'?"),
        ("[[listeners]]\nport = 1\nkey_file = 'k'\n", "did you mean 'keyfile'?"),
        ("persistence_location = 'data'\n", "Midge's is 'data_dir'"),
        ("[[listeners]]\nport = 1\nprotocol = 'websockets'\n", "Midge's is 'transport'"),
    ],
)
def test_an_unknown_key_gets_a_did_you_mean(toml_file, text, hint):
    (problem,) = problems_of(toml_file(text))
    assert problem.startswith("unknown config key")
    assert hint in problem


def test_no_suggestion_for_a_key_like_no_other(toml_file):
    (problem,) = problems_of(toml_file("zzzz = 1\n"))
    assert problem == f"unknown config key 'zzzz' in {toml_file('zzzz = 1').absolute()}"


def test_paths_in_a_file_are_taken_from_its_folder(tmp_path, monkeypatch):
    folder = tmp_path / "etc"
    folder.mkdir()
    for name in ("passwd", "acl", "scram", "cert.pem", "key.pem", "ca.pem"):
        (folder / name).write_text("", encoding="utf-8")
    (folder / "midge.toml").write_text(
        'password_file = "passwd"\nacl_file = "acl"\nscram_file = "scram"\n'
        'data_dir = "data"\n'
        '[[listeners]]\nport = 1\ntransport = "tls"\ncertfile = "cert.pem"\n'
        'keyfile = "key.pem"\ncafile = "ca.pem"\n',
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)  # elsewhere: the file's folder decides
    config = load_config(Path("etc/midge.toml"))
    assert config.password_file == str(folder / "passwd")
    assert config.acl_file == str(folder / "acl")
    assert config.scram_file == str(folder / "scram")
    assert config.data_dir == str(folder / "data")
    listener = config.listeners[0]
    assert (listener.certfile, listener.keyfile, listener.cafile) == tuple(
        str(folder / name) for name in ("cert.pem", "key.pem", "ca.pem")
    )


def test_absolute_paths_stay_and_command_line_paths_stay_relative(toml_file, tmp_path, monkeypatch):
    (tmp_path / "pw").write_text("", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rel").mkdir()
    config = load_config(toml_file(f'password_file = "{tmp_path / "pw"}"\n'), data_dir="rel/x")
    assert config.password_file == str(tmp_path / "pw")
    assert config.data_dir == "rel/x"  # the flag's value, relative to the working directory


def test_a_missing_file_is_named_with_its_full_path(tmp_path):
    folder = tmp_path / "conf"
    folder.mkdir()
    path = folder / "midge.toml"
    path.write_text('acl_file = "acl"\n[[listeners]]\nport = 1\ntransport = "tls"\n'
                    'certfile = "c.pem"\nkeyfile = "k.pem"\n', encoding="utf-8")  # fmt: skip
    problems = problems_of(path)
    assert f"config key 'acl_file': file not found: {folder / 'acl'}" in problems
    assert f"config key 'listeners[0].certfile': file not found: {folder / 'c.pem'}" in problems


def test_an_unreadable_config_file_is_named_with_its_full_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=f"cannot read config file {tmp_path / 'gone.toml'}"):
        load_config("gone.toml")


# ------------------------------------------------------------ the data dir


def test_the_data_dirs_parent_must_exist(toml_file, tmp_path):
    (problem,) = problems_of(toml_file(f'data_dir = "{tmp_path / "typo" / "data"}"\n'))
    assert problem.startswith("config key 'data_dir': the folder ")
    assert str(tmp_path / "typo") in problem
    # A memory store keeps no file: its data dir does not matter.
    config = load_config(toml_file(f'store = "memory"\ndata_dir = "{tmp_path / "x" / "y"}"\n'))
    prepare_data_dir(config)
    assert not (tmp_path / "x").exists()


def test_prepare_data_dir_creates_the_last_folder_only(tmp_path):
    data = tmp_path / "data"
    prepare_data_dir(BrokerConfig(data_dir=str(data)))
    assert data.is_dir()
    prepare_data_dir(BrokerConfig(data_dir=str(data)))  # already there: fine
    deeper = tmp_path / "missing" / "data"
    with pytest.raises(ConfigError, match=f"the folder {tmp_path / 'missing'} does not exist"):
        prepare_data_dir(BrokerConfig(data_dir=str(deeper)))
    assert not (tmp_path / "missing").exists()
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match=f"cannot use data dir {not_a_dir}"):
        prepare_data_dir(BrokerConfig(data_dir=str(not_a_dir)))


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_data_dir_that_cannot_be_made_is_an_error(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(ConfigError, match="cannot use data dir"):
        prepare_data_dir(BrokerConfig(data_dir=str(locked / "data")))


# ------------------------------------------------------------ hooks


def test_hooks_are_a_list_of_class_names(toml_file):
    config = load_config(toml_file('hooks = ["audit.hooks:Audit", "metrics:Hook"]\n'))
    assert config.hooks == ("audit.hooks:Audit", "metrics:Hook")
    assert BrokerConfig().hooks == ()
    assert BrokerConfig().override(hooks=["a:B"]).hooks == ("a:B",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('hooks = "audit:Audit"\n', "expected a list of strings"),
        ("hooks = [1]\n", "expected a list of strings"),
        ('hooks = ["audit.Audit"]\n', "'audit.Audit' is not 'package.module:ClassName'"),
        ('hooks = ["audit:"]\n', "is not 'package.module:ClassName'"),
        ('hooks = ["audit:Audit.x"]\n', "is not 'package.module:ClassName'"),
        ('hooks = ["my-pkg:Hook"]\n', "is not 'package.module:ClassName'"),
    ],
)
def test_bad_hooks_name_the_key(toml_file, text, message):
    (problem,) = problems_of(toml_file(text))
    assert "'hooks'" in problem and message in problem


# ------------------------------------------------------------ not TOML at all


def test_a_mosquitto_conf_gets_a_pointer_to_the_importer(tmp_path):
    conf = tmp_path / "broker.cfg"
    conf.write_text("# Mosquitto\n\nlistener 1883\nallow_anonymous true\n", encoding="utf-8")
    (problem,) = problems_of(conf)
    assert problem.startswith(f"config file {conf} is not valid TOML")
    assert "looks like a Mosquitto config (line 3: 'listener 1883')" in problem
    assert f"midge config import {conf} > midge.toml" in problem


def test_a_conf_file_name_is_enough_for_the_pointer(tmp_path):
    conf = tmp_path / "mosquitto.conf"
    conf.write_text("what ever\n", encoding="utf-8")
    assert "midge config import" in problems_of(conf)[0]


def test_a_broken_toml_file_gets_no_pointer(toml_file):
    (problem,) = problems_of(toml_file("port = = 1\nlistener = 2\n"))
    assert "not valid TOML" in problem and "Mosquitto" not in problem


def test_config_from_toml_reads_text_as_a_file_in_a_folder(tmp_path):
    (tmp_path / "pw").write_text("", encoding="utf-8")
    config = config_from_toml('password_file = "pw"\n', "text", tmp_path)
    assert config.password_file == str(tmp_path / "pw")
    with pytest.raises(ConfigError, match="config text is not valid TOML"):
        config_from_toml("x = = 1", "text", tmp_path)
