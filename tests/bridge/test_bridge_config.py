"""A bad `[[bridges]]` table stops `midge serve` before it listens (issue 15).

Each case is a config file with one mistake in its bridge tables: `midge
serve` must exit with status 2 without listening, and its message must name
the key at fault (`bridges[N].KEY`, `bridges[N].topics[M].KEY`), with no
traceback; without the mistake, the same table is served. The processes of
all the cases run side by side (each takes about half a second to start
Python).
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from bridge_support import Peers, bridge_table, rule

from brokers import free_port

pytestmark = pytest.mark.timeout(60)

EXIT_WITHIN = 20.0  # seconds for all the cases to exit
ADDRESS = "127.0.0.1:1883"  # never reached: the config is refused first
GOOD_RULE = rule("a/#", "out", 1)
GOOD = bridge_table("good", ADDRESS, [GOOD_RULE])


def without(table: str, key: str) -> str:
    return "".join(line + "\n" for line in table.splitlines() if not line.startswith(f"{key} ="))


CASES: dict[str, tuple[str, list[str]]] = {  # id: (config text, what stderr must say)
    "missing addresses": (
        without(bridge_table("cloud", ADDRESS, [GOOD_RULE]), "addresses"),
        ["config key 'bridges[0].addresses'", "required"],
    ),
    "empty addresses": (
        bridge_table("cloud", [], [GOOD_RULE]),
        ["config key 'bridges[0].addresses'", "required"],
    ),
    "bad address": (
        bridge_table("cloud", "127.0.0.1:99999", [GOOD_RULE]),
        ["config key 'bridges[0].addresses'", "'127.0.0.1:99999'"],
    ),
    "bad direction": (
        bridge_table("cloud", ADDRESS, [GOOD_RULE, rule("b/#", "sideways")]),
        ["config key 'bridges[0].topics[1].direction'", "'in', 'out', 'both'"],
    ),
    "invalid filter": (
        bridge_table("cloud", ADDRESS, [rule("a/#/b", "out")]),
        ["config key 'bridges[0].topics[0]'", "'a/#/b'", "not a valid topic filter"],
    ),
    "invalid filter made by a prefix": (
        bridge_table("cloud", ADDRESS, [rule("x", "in", remote_prefix="a/#/")]),
        ["config key 'bridges[0].topics[0]", "remote_prefix"],
    ),
    "bad qos": (
        bridge_table("cloud", ADDRESS, [rule("a/#", "out", 3)]),
        ["config key 'bridges[0].topics[0].qos'"],
    ),
    "missing topics": (
        without(bridge_table("cloud", ADDRESS, [GOOD_RULE]), "topics"),
        ["config key 'bridges[0].topics'", "required"],
    ),
    "unknown key": (
        bridge_table("cloud", ADDRESS, [GOOD_RULE], adress="typo"),
        ["unknown config key 'bridges[0].adress'"],
    ),
    "wrong type": (
        bridge_table("cloud", ADDRESS, [GOOD_RULE], keepalive="60"),
        ["config key 'bridges[0].keepalive'", "expected int"],
    ),
    "second bridge named by its index": (
        GOOD + bridge_table("cloud", ADDRESS, [GOOD_RULE], protocol="3.1"),
        ["config key 'bridges[1].protocol'"],
    ),
    "two bridges with one name": (
        GOOD + bridge_table("good", "127.0.0.1:1884", [GOOD_RULE]),
        ["config key 'bridges'", "two bridges are named 'good'"],
    ),
    "tls files without tls": (
        bridge_table("cloud", ADDRESS, [GOOD_RULE], ca_file="/nonexistent/ca.pem"),
        ["config key 'bridges[0].tls'"],
    ),
    "not a table": (
        'bridges = "cloud"\n',
        ["config key 'bridges'", "[[bridges]]"],
    ),
}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int | None, str]]:
    """(exit status, stderr) of `midge serve` for each case, run side by side."""
    folder = tmp_path_factory.mktemp("bad-configs")
    running: dict[str, subprocess.Popen[str]] = {}
    try:
        for number, (case, (text, _)) in enumerate(CASES.items()):
            config = folder / f"case{number}.toml"
            config.write_text(text, encoding="utf-8")
            args = ["serve", "--config", str(config), "--host", "127.0.0.1", "--port", "0"]
            running[case] = subprocess.Popen(
                [sys.executable, "-m", "midge", *args, "--data-dir", str(folder / f"data{number}")],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        deadline = time.monotonic() + EXIT_WITHIN
        found: dict[str, tuple[int | None, str]] = {}
        for case, process in running.items():
            try:
                _, stderr = process.communicate(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:  # it took the config: the case fails
                process.kill()
                _, stderr = process.communicate()
                found[case] = (None, stderr)
            else:
                found[case] = (process.returncode, stderr)
        return found
    finally:
        for process in running.values():
            if process.poll() is None:  # it listens: the test fails, the process is ended
                process.kill()
                process.wait(5)


@pytest.mark.parametrize("case", CASES)
def test_a_bad_bridge_table_stops_serve_naming_the_key(
    outcomes: dict[str, tuple[int | None, str]], case: str
) -> None:
    status, stderr = outcomes[case]
    assert status == 2, stderr
    for text in CASES[case][1]:
        assert text in stderr, stderr
    assert "listening on" not in stderr
    assert "Traceback" not in stderr, stderr


def test_the_cases_differ_from_an_accepted_config_by_their_mistake_only(peers: Peers) -> None:
    good = bridge_table("good", f"127.0.0.1:{free_port()}", [GOOD_RULE])  # nobody there
    local = peers.midge("local", good)  # it listens
    assert local.log.matching("config key") == []
    local.log.wait_for(r"bridge good: cannot connect to ")
