"""`midge check HOST:PORT` as a user runs it: a subprocess against real loopback brokers.

The command runs the same scenarios through the same runner as
test_conformance.py; these tests check what it adds: selection, the table and
its summary line, known deviations, credentials, JSON, and the exit status
(0 nothing failed, 1 something failed, 2 bad arguments / unreachable broker).
CI installs mosquitto (scripts/setup --dev), so there the Mosquitto tests must
run, not skip.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from unittest.mock import ANY

import pytest
from rich.console import Console

from brokers import (
    Broker,
    free_port,
    mosquitto_binary,
    password_text,
    pbkdf2_line,
    start_midge,
    start_mosquitto,
)
from midge.cli import main as midge_main
from midge.conformance.cli import (
    NOT_APPLICABLE,
    PASS,
    Plan,
    RichReport,
    UsageError,
    make_plan,
    parse_target,
    run_plan,
)
from midge.conformance.registry import all_scenarios
from midge.conformance.runner import DEVIATIONS, select
from midge.conformance.target import Target

RUN_TIMEOUT = 30.0
FULL_RUN_TIMEOUT = 120.0
SUMMARY = r"^\d+ passed, \d+ failed"
# Deviations mosquitto 2.0.11 shows every time (not the timing-dependent ones).
MOSQUITTO_DEVIATIONS = ("05-05", "09-10")
# Midge serves MQTT 5.0, so "level 5 gets CONNACK 1" (for brokers without it) does not apply.
MIDGE_NOT_APPLICABLE = frozenset({"01-02"})


def midge_check(*args: str, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """`python -m midge check ARGS` with output captured (so: plain text, not rich)."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    return subprocess.run(
        [sys.executable, "-m", "midge", "check", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=env,
        check=False,
    )


def where(broker: Broker) -> str:
    host, port, _process = broker
    return f"{host}:{port}"


def last_line(text: str) -> str:
    return text.rstrip("\n").splitlines()[-1]


def rows(stdout: str, protocol: str = "3.1.1") -> dict[str, str]:
    """Scenario id -> the result column of its row."""
    ids = {item.id for item in all_scenarios(protocol)}
    return {
        line[:5]: line[7:22].strip()
        for line in stdout.splitlines()
        if line[:5] in ids and line[5:7] == "  "
    }


@pytest.fixture(scope="module")
def mosquitto() -> Iterator[Broker]:
    """Mosquitto on a loopback port; missing it is a failure under CI, a skip elsewhere."""
    if mosquitto_binary() is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run `midge check` against mosquitto: scripts/setup installs it")
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    with start_mosquitto() as broker:
        yield broker


# ---------------------------------------------------------------- against Midge


def test_areas_against_midge_print_table_and_summary(midge_broker: Broker) -> None:
    areas = ["01", "05"]
    expected = [item.id for item in select(areas)]
    done = midge_check(where(midge_broker), "--only", ",".join(areas))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"midge check {where(midge_broker)}: {len(expected)} scenarios")
    assert lines[1].split() == ["ID", "RESULT", "RULE", "TITLE"]
    statuses = {i: NOT_APPLICABLE if i in MIDGE_NOT_APPLICABLE else PASS for i in expected}
    assert rows(done.stdout) == statuses
    assert "01-07  pass             MQTT-3.1.2-3" in done.stdout
    passed = len(expected) - len(MIDGE_NOT_APPLICABLE)
    summary = f"{passed} passed, 0 failed, {len(MIDGE_NOT_APPLICABLE)} not applicable"
    assert last_line(done.stdout) == summary


@pytest.mark.timeout(FULL_RUN_TIMEOUT + 10)
def test_every_scenario_passes_against_midge_as_json(midge_broker: Broker) -> None:
    done = midge_check(where(midge_broker), "--json", timeout=FULL_RUN_TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    objects = [json.loads(line) for line in done.stdout.splitlines()]
    *results, summary = objects
    assert [r["id"] for r in results] == [item.id for item in all_scenarios()]
    failed = [(r["id"], r["detail"]) for r in results if r["status"] != "pass"]
    assert failed == [(i, ANY) for i in sorted(MIDGE_NOT_APPLICABLE)]
    assert {"title", "rule", "detail", "deviation", "seconds"} <= set(results[0])
    assert summary["type"] == "summary"
    assert summary["not_applicable"] == len(MIDGE_NOT_APPLICABLE)
    assert summary["passed"] == len(results) - len(MIDGE_NOT_APPLICABLE)
    assert (summary["failed"], summary["skipped"], summary["exit_status"]) == (0, 0, 0)


def test_rich_table_on_a_terminal(midge_broker: Broker) -> None:
    host, port, _process = midge_broker
    out = io.StringIO()
    console = Console(
        file=out, force_terminal=True, width=100, color_system="standard", highlight=False
    )
    plan = Plan(select(["01-01", "01-16"]), frozenset({"01-16"}), {}, [])
    summary = run_plan(Target(host, port), plan, RichReport(console))
    assert summary.exit_status() == 0
    text = out.getvalue()
    assert "\x1b[" in text  # coloured
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", text)
    assert "01-01" in text
    assert "skipped" in text
    assert "1 passed, 0 failed, 1 skipped" in text


# --------------------------------------------------------------- against Mosquitto


def test_mosquitto_deviations_fail_without_profile(mosquitto: Broker) -> None:
    done = midge_check(where(mosquitto), "--only", "01-01," + ",".join(MOSQUITTO_DEVIATIONS))
    assert done.returncode == 1, done.stdout + done.stderr
    assert rows(done.stdout) == {"01-01": PASS, "05-05": "FAIL", "09-10": "FAIL"}
    assert "got PINGRESP" in done.stdout  # the failure detail under the row
    assert last_line(done.stdout) == "1 passed, 2 failed"


@pytest.mark.parametrize("option", ["--broker-profile", "--known-deviations"])
def test_mosquitto_profile_turns_deviations_into_known_ones(mosquitto: Broker, option: str) -> None:
    only = "01-01," + ",".join(MOSQUITTO_DEVIATIONS)
    done = midge_check(where(mosquitto), "--only", only, option, "mosquitto")
    assert done.returncode == 0, done.stdout + done.stderr
    assert rows(done.stdout) == {
        "01-01": PASS,
        "05-05": "known deviation",
        "09-10": "known deviation",
    }
    assert DEVIATIONS["mosquitto"]["09-10"] in done.stdout
    assert last_line(done.stdout) == "1 passed, 0 failed, 2 known deviations (mosquitto)"


# ----------------------------------------------------------- brokers with rules


def _password_file(path: Path, username: str, password: str) -> Path:
    """One `user:$7$...` line as mosquitto_passwd writes it (PBKDF2-SHA512)."""
    path.write_text(password_text([pbkdf2_line(username, password)]))
    return path


@pytest.fixture(scope="module")
def auth_midge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    path = _password_file(tmp_path_factory.mktemp("auth") / "passwd", "alice", "s3cret")
    config = f"allow_anonymous = false\npassword_file = {str(path)!r}\n"
    with start_midge(config_toml=config) as broker:
        yield broker


def test_credentials_reach_every_client(auth_midge: Broker) -> None:
    only = ["01-11", "01-18", "05", "07-01", "10-01"]  # MQTT 3.1, refusals, sessions, cleanup
    done = midge_check(where(auth_midge), "--only", ",".join(only), "-u", "alice", "-P", "s3cret")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "user 'alice'" in done.stdout.splitlines()[0]
    assert last_line(done.stdout) == f"{len(select(only))} passed, 0 failed"


@pytest.mark.parametrize(
    ("credentials", "expected"),
    [
        ((), "CONNACK 5, not authorized; give -u and -P"),
        (("-u", "alice", "-P", "wrong"), "CONNACK 4, bad user name or password; check -u"),
    ],
    ids=["anonymous", "wrong-password"],
)
def test_refused_credentials_exit_2(
    auth_midge: Broker, credentials: tuple[str, ...], expected: str
) -> None:
    done = midge_check(where(auth_midge), "--only", "04", *credentials)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"the broker at {where(auth_midge)} refused the check's CONNECT" in done.stderr
    assert expected in done.stderr
    assert done.stdout == ""


@pytest.fixture(scope="module")
def strict_midge() -> Iterator[Broker]:
    with start_midge(config_toml="strict_client_id = true\n") as broker:
        yield broker


@pytest.mark.parametrize(
    ("extra", "code", "summary"),
    [
        ((), 1, "16 passed, 1 failed"),  # and 01-02 not applicable: Midge serves 5.0
        (("--known-deviations", "strict-client-id"), 0, "16 passed, 0 failed, 1 known deviation"),
        (("--skip", "01-16"), 0, "16 passed, 0 failed, 1 skipped"),
    ],
    ids=["plain", "profile", "skip"],
)
def test_strict_client_id_broker(
    strict_midge: Broker, extra: tuple[str, ...], code: int, summary: str
) -> None:
    assert len(select(["01"])) == 18
    done = midge_check(where(strict_midge), "--only", "01", *extra)
    assert done.returncode == code, done.stdout + done.stderr
    assert last_line(done.stdout).startswith(summary)


# ------------------------------------------------------------ arguments, errors


def test_unreachable_broker_exits_2_before_running_anything() -> None:
    port = free_port()  # nothing listens there
    done = midge_check(f"127.0.0.1:{port}", timeout=10)
    assert done.returncode == 2
    assert done.stdout == ""
    assert f"cannot reach the broker at 127.0.0.1:{port}" in done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_silent_port_exits_2() -> None:
    """Something listens but never answers CONNECT (the kernel completes the handshake)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        done = midge_check(f"127.0.0.1:{port}", "--timeout", "0.3", timeout=10)
    assert done.returncode == 2
    assert done.stdout == ""
    assert f"127.0.0.1:{port} does not answer an MQTT 3.1.1 CONNECT with CONNACK" in done.stderr
    assert "raise --timeout" in done.stderr


def test_unreachable_broker_as_json() -> None:
    done = midge_check(f"127.0.0.1:{free_port()}", "--json", timeout=10)
    assert done.returncode == 2
    [error] = [json.loads(line) for line in done.stdout.splitlines()]
    assert error["type"] == "error"
    assert "cannot reach" in error["message"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["127.0.0.1:0"], "the port must be 1-65535"),
        (["127.0.0.1:http"], "the port must be 1-65535"),
        (["[::1"], "expected [IPv6]:PORT"),
        ([], "give HOST[:PORT]"),
        (["h", "--only", "99-99"], "unknown scenario ids: 99-99"),
        (["h", "--skip", "42"], "unknown scenario ids: 42"),
        (["h", "--broker-profile", "nanomq"], "known: mosquitto, strict-client-id"),
        (["h", "-P", "pw"], "-P/--password needs -u/--username"),
        (["h", "--timeout", "0"], "must be > 0"),
    ],
)
def test_bad_arguments_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = midge_main(["check", *args])  # in-process: the same `midge` entry point
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    assert message in capsys.readouterr().err


def test_list_runs_nothing() -> None:
    done = midge_check("--list", timeout=10)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [item.id for item in all_scenarios()]
    assert lines[0].split()[1] == all_scenarios()[0].rule
    filtered = midge_check("--list", "--json", "--only", "03", timeout=10)
    listed = [json.loads(line) for line in filtered.stdout.splitlines()]
    assert [item["id"] for item in listed] == [item.id for item in select(["03"])]
    assert all(item["type"] == "scenario" and item["rule"] for item in listed)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("broker.lan", ("broker.lan", 1883)),
        ("127.0.0.1:1884", ("127.0.0.1", 1884)),
        ("[::1]:8883", ("::1", 8883)),
        ("[::1]", ("::1", 1883)),
        ("::1", ("::1", 1883)),
        ("fe80::1:2", ("fe80::1:2", 1883)),
    ],
)
def test_parse_target(text: str, expected: tuple[str, int]) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize("text", ["", ":1883", "[]:1883", "[::1]1883", "h:65536", "h:-1"])
def test_parse_target_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_target(text)


def test_only_and_skip_accept_ids_and_areas() -> None:
    args = argparse.Namespace(only=["05-01,06", "07-02"], skip=["06"], profiles=None)
    plan = make_plan(args)
    assert [s.id for s in plan.scenarios] == ["05-01", *(s.id for s in select(["06"])), "07-02"]
    assert plan.skip == {s.id for s in select(["06"])}


# --------------------------------------------------------------------- MQTT 5.0


def test_protocol_5_against_mosquitto_with_profile(mosquitto: Broker) -> None:
    """`--protocol 5`: 5.0 clients, known deviations, and a not-applicable row."""
    only = "20-01,20-08,26-05"  # a pass, a mosquitto deviation, no Maximum Packet Size
    done = midge_check(
        where(mosquitto), "--protocol", "5", "--only", only, "--broker-profile", "mosquitto"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "MQTT 5.0" in done.stdout.splitlines()[0]
    assert rows(done.stdout, "5") == {
        "20-01": PASS,
        "20-08": "known deviation",
        "26-05": NOT_APPLICABLE,
    }
    assert "the broker advertises no Maximum Packet Size" in done.stdout
    expected = "1 passed, 0 failed, 1 known deviation (mosquitto), 1 not applicable"
    assert last_line(done.stdout) == expected


def test_protocol_selects_the_listed_set() -> None:
    listed = midge_check("--list", "--protocol", "5", timeout=10)
    assert listed.returncode == 0, listed.stderr
    ids = [line.split()[0] for line in listed.stdout.splitlines()]
    assert ids == [item.id for item in all_scenarios("5")]
    assert all(int(scenario_id[:2]) >= 20 for scenario_id in ids)
    both = midge_check("--list", "--json", "--protocol", "all", timeout=10)
    assert len(both.stdout.splitlines()) == len(all_scenarios("all"))


def test_5_0_ids_without_protocol_5_are_explained(capsys: pytest.CaptureFixture[str]) -> None:
    code = midge_main(["check", "h", "--only", "20"])
    assert code == 2
    assert "they are MQTT 5 scenarios: --protocol 5" in capsys.readouterr().err
