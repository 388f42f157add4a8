"""The dashboard in a real browser: Debian's headless Chromium, driven by
Playwright for Python, against a real broker (`midge.BrokerThread` with an
MQTT and an HTTP listener on ephemeral loopback ports, API keys made by
`midge apikey create`).

A user logs in, sees an MQTT client connect and its topic appear in the live
tree, publishes from the panel to a `midge sub` process, and disconnects a
client from the table. A second broker has two bridges, one to a port where
nothing listens (down, with its error) and one to a third broker (up): the
bridges panel shows both; a broker without bridges has no such panel.
Screenshots go to this run's tmp folder (printed with -s), and to
docs/images/dashboard.png when MIDGE_SCREENSHOT=1 is set (the README's
picture: `MIDGE_SCREENSHOT=1 .venv/bin/pytest tests/dashboard`).

Needs Debian's `chromium` (apt-get install chromium) and the `playwright`
package; without either the module is skipped, and MIDGE_REQUIRE_BROWSER=1
makes that a failure instead. Playwright's own browser download is never
used (it cannot work offline): Chromium is launched from CHROMIUM.
"""

from __future__ import annotations

import math
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest

import midge
from midge.tools import apikey

CHROMIUM = os.environ.get("MIDGE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
README_IMAGE = Path(__file__).resolve().parents[2] / "docs" / "images" / "dashboard.png"
WAIT_MS = 8000  # for what the page shows after an event: events come once a second
ADMINISTRATIVE_ACTION = 0x98

try:
    from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None


def _missing() -> str | None:
    if sync_playwright is None:
        return "playwright is not installed (pip install playwright; CI installs it)"
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (apt-get install chromium; CI installs it)"
    return None


if (reason := _missing()) is not None:
    if os.environ.get("MIDGE_REQUIRE_BROWSER") == "1":
        raise RuntimeError(f"MIDGE_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason, allow_module_level=True)


# ------------------------------------------------------------------ fixtures


@dataclass
class Running:
    thread: midge.BrokerThread
    mqtt_port: int
    http_port: int
    admin_key: str
    read_key: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/"


@dataclass
class Bridged(Running):
    """A broker with two bridges: "cloud" to `dead_port` (bound, never
    listening: every connection is refused), "edge" to a broker on `remote_port`."""

    dead_port: int
    remote_port: int


def make_key(key_file: Path, name: str, role: str) -> str:
    """`midge apikey create NAME --role ROLE --file FILE`: the key is stdout's first line."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "midge",
            "apikey",
            "create",
            name,
            "--role",
            role,
            "--file",
            str(key_file),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.splitlines()[0].strip()


@contextmanager
def serving(
    folder: Path, key_file: Path, more_toml: str = ""
) -> Iterator[tuple[midge.BrokerThread, int, int]]:
    """A broker with an MQTT and an HTTP listener and the API keys of `key_file`
    (and `more_toml`): its thread, MQTT port and HTTP port."""
    config = folder / "midge.toml"
    config.write_text(
        f"""
store = "memory"
allow_anonymous = true
api_key_file = "{key_file}"

[[listeners]]
host = "127.0.0.1"
port = 0

[[listeners]]
host = "127.0.0.1"
port = 0
transport = "http"
{more_toml}""",
        encoding="utf-8",
    )
    with midge.BrokerThread(str(config)) as thread:
        ports = {address.label: address.port for address in thread.read(lambda b: b.listeners)}
        yield thread, ports["mqtt"], ports["http"]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    folder = tmp_path_factory.mktemp("dashboard-broker")
    key_file = folder / "api-keys"
    admin_key = make_key(key_file, "dashboard-admin", "admin")
    read_key = apikey.create(key_file, "dashboard-reader", "read")  # the same, in-process
    with serving(folder, key_file) as (thread, mqtt_port, http_port):
        yield Running(thread, mqtt_port, http_port, admin_key, read_key)


@pytest.fixture(scope="module")
def bridged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridged]:
    folder = tmp_path_factory.mktemp("dashboard-bridged")
    key_file = folder / "api-keys"
    admin_key = apikey.create(key_file, "bridges-admin", "admin")
    read_key = apikey.create(key_file, "bridges-reader", "read")
    # A port held by a socket that never listens: connections to it are
    # refused, and no other process can take it meanwhile.
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as dead,
        midge.BrokerThread(port=0, host="127.0.0.1", store="memory") as remote,
    ):
        dead.bind(("127.0.0.1", 0))
        dead_port = int(dead.getsockname()[1])
        retry = "restart_delay = 0.2\nrestart_delay_max = 1.0"
        bridges = f"""
[[bridges]]
name = "cloud"
addresses = ["127.0.0.1:{dead_port}"]
{retry}
topics = [{{ pattern = "a/#", direction = "out", qos = 1 }}]

[[bridges]]
name = "edge"
addresses = ["127.0.0.1:{remote.port}"]
{retry}
topics = [{{ pattern = "b/#", direction = "out", qos = 1 }}]
"""
        with serving(folder, key_file, bridges) as (thread, mqtt_port, http_port):
            yield Bridged(thread, mqtt_port, http_port, admin_key, read_key, dead_port, remote.port)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert sync_playwright is not None
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dashboard-screenshots")
    print(f"dashboard screenshots: {folder}")
    return folder


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert not errors, f"the page raised: {errors}"


def login(page: Page, running: Running, key: str | None = None) -> None:
    page.goto(running.url)
    page.get_by_label("API key").fill(key or running.admin_key)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("app-view")).to_be_visible()
    expect(page.get_by_test_id("live-status")).to_have_text("live", timeout=WAIT_MS)


class PahoClient:
    """A paho-mqtt 5.0 client on its own network thread; remembers how it was
    disconnected."""

    def __init__(self, running: Running, client_id: str) -> None:
        self.disconnected = threading.Event()
        self.reason: Any = None
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5
        )
        self.client.on_disconnect = self._on_disconnect
        connected = threading.Event()
        self.client.on_connect = lambda *args: connected.set()
        self.client.connect("127.0.0.1", running.mqtt_port, keepalive=30)
        self.client.loop_start()
        assert connected.wait(10), "the paho client did not connect"

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self.reason = reason
        self.disconnected.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def paho_client(request: pytest.FixtureRequest, broker: Running) -> Iterator[PahoClient]:
    client_id = re.sub(r"[^0-9a-zA-Z]", "", request.node.name)[-23:]
    client = PahoClient(broker, client_id)
    yield client
    client.close()


def client_row(page: Page, client_id: str) -> Locator:
    """The clients table's row of `client_id`."""
    return page.get_by_test_id("clients-table").locator(f'tr[data-client-id="{client_id}"]')


def bridge_row(page: Page, name: str) -> Locator:
    """The bridges table's row of bridge `name`."""
    return page.get_by_test_id("bridges-table").locator(f'tr[data-bridge="{name}"]')


def screenshot(page: Page, shots: Path, name: str) -> Path:
    path = shots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# --------------------------------------------------------------------- tests


def test_a_bad_key_is_refused(page: Page, broker: Running, shots: Path) -> None:
    page.goto(broker.url)
    page.get_by_label("API key").fill("not-a-key")
    page.get_by_role("button", name="Log in").click()
    error = page.get_by_test_id("login-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("Login failed")
    expect(page.get_by_test_id("app-view")).to_be_hidden()
    screenshot(page, shots, "login-refused")


def test_a_good_key_shows_the_overview(page: Page, broker: Running, shots: Path) -> None:
    login(page, broker)
    expect(page.locator("#ov-connections")).to_have_text(re.compile(r"^\d+$"))
    expect(page.locator("#ov-store")).to_have_text("healthy")
    # rates need two overview events, a second apart
    expect(page.locator("#ov-rate-in")).to_have_text(re.compile(r"^\d"), timeout=WAIT_MS)
    # the key stays for this tab: a reload needs no new login
    page.reload()
    expect(page.get_by_test_id("app-view")).to_be_visible()
    page.get_by_test_id("logout-button").click()
    expect(page.get_by_test_id("login-view")).to_be_visible()
    screenshot(page, shots, "logged-out")


def test_a_client_that_connects_appears_in_the_table(
    page: Page, broker: Running, shots: Path
) -> None:
    login(page, broker)
    client = PahoClient(broker, "dashboard-sensor-7")
    try:
        row = client_row(page, "dashboard-sensor-7")
        expect(row).to_be_visible(timeout=WAIT_MS)
        expect(row).to_contain_text("5.0")
        page.get_by_test_id("client-search").fill("sensor-7")
        expect(page.get_by_test_id("client-row")).to_have_count(1)
        page.get_by_test_id("client-search").fill("no-such-client-anywhere")
        expect(page.get_by_test_id("client-row")).to_have_count(0)
        page.get_by_test_id("client-search").fill("")
        # sorting by a column turns to descending on the second click
        header = page.locator("#clients-table th", has=page.locator("button[data-sort=client_id]"))
        page.get_by_role("button", name="Client id").click()
        expect(header).to_have_attribute("aria-sort", "descending")
        screenshot(page, shots, "client-connected")
    finally:
        client.close()
    expect(client_row(page, "dashboard-sensor-7")).to_have_count(0, timeout=WAIT_MS)


def test_a_topic_appears_in_the_tree_with_its_count(
    page: Page, broker: Running, shots: Path, paho_client: PahoClient
) -> None:
    login(page, broker)
    for value in ("20.5", "21.0", "21.5"):
        paho_client.client.publish("dashboard/kitchen/temperature", value, qos=1).wait_for_publish(
            5
        )
    paho_client.client.publish(
        "dashboard/kitchen/mode", "eco", qos=1, retain=True
    ).wait_for_publish(5)
    node = page.locator('[data-topic="dashboard/kitchen/temperature"]')
    expect(node.get_by_test_id("topic-count").first).to_have_text("3", timeout=WAIT_MS)
    expect(node.get_by_test_id("topic-payload").first).to_have_text("21.5")
    mode = page.locator('[data-topic="dashboard/kitchen/mode"]').get_by_test_id("topic-payload")
    expect(mode.first).to_have_text("eco")
    expect(mode.first).to_have_class(re.compile(r"\bretained\b"))
    # the parent level counts what is below it
    parent = page.locator('[data-topic="dashboard/kitchen"] > .node').get_by_test_id("topic-count")
    expect(parent).to_have_text("4")
    screenshot(page, shots, "topic-tree")


def test_a_flood_of_topics_stays_bounded(
    page: Page, broker: Running, paho_client: PahoClient
) -> None:
    """1,500 new topics at once: the page draws at most 500 tree rows, says
    what it left out, and stays responsive."""
    login(page, broker)
    for number in range(1500):
        paho_client.client.publish(f"flood/{number // 100}/{number}", b"x")
    note = page.get_by_test_id("topics-note")
    expect(note).to_contain_text("not shown", timeout=WAIT_MS)
    rows = page.get_by_test_id("topic-tree").get_by_test_id("topic-node")
    assert rows.count() <= 500
    started = time.monotonic()
    page.evaluate("1 + 1")
    assert time.monotonic() - started < 1.0, "the page is busy"
    # the filter narrows the tree to what matches, with its parents
    page.get_by_test_id("topic-search").fill("flood/3/312")
    expect(page.locator('[data-topic="flood/3/312"]')).to_be_visible(timeout=WAIT_MS)
    expect(rows).to_have_count(3)


def test_publishing_from_the_panel_reaches_midge_sub(
    page: Page, broker: Running, shots: Path
) -> None:
    login(page, broker)
    topic = "dashboard/panel/greeting"
    sub = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "midge",
            "sub",
            "-h",
            "127.0.0.1",
            "-p",
            str(broker.mqtt_port),
            "-t",
            topic,
            "-q",
            "1",
            "-C",
            "1",
            "-W",
            "20",
            "-i",
            "dashboardsub",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not any(
            s.topic_filter == topic for s in broker.thread.read(lambda b: b.subscriptions())
        ):
            assert sub.poll() is None, sub.communicate()
            assert time.monotonic() < deadline, "midge sub did not subscribe"
            time.sleep(0.05)
        # a bad topic: the API's error, naming the field, shows under the button
        page.get_by_label("Topic", exact=True).fill("dashboard/+/wildcard")
        page.get_by_role("button", name="Publish", exact=True).click()
        result = page.get_by_test_id("publish-result")
        expect(result).to_contain_text("Not published", timeout=WAIT_MS)
        expect(result).to_contain_text("(topic)")
        page.get_by_label("Topic", exact=True).fill(topic)
        page.get_by_label("Payload").fill("hello from the dashboard")
        page.get_by_label("QoS").select_option("1")
        page.get_by_role("button", name="Publish", exact=True).click()
        expect(page.get_by_test_id("publish-result")).to_contain_text("Published", timeout=WAIT_MS)
        out, err = sub.communicate(timeout=15)
        assert sub.returncode == 0, err
        assert out == "hello from the dashboard\n"
        screenshot(page, shots, "published")
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.communicate()


def test_disconnect_from_the_table_ends_the_connection(
    page: Page, broker: Running, shots: Path, paho_client: PahoClient
) -> None:
    login(page, broker)
    client_id = paho_client.client._client_id.decode()
    row = client_row(page, client_id)
    row.get_by_test_id("disconnect-button").click()
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(client_id)
    page.get_by_test_id("confirm-ok").click()
    assert paho_client.disconnected.wait(10), "the client was not disconnected"
    assert paho_client.reason == ADMINISTRATIVE_ACTION
    expect(row).to_have_count(0, timeout=WAIT_MS)
    screenshot(page, shots, "disconnected")


def test_a_read_key_sees_but_cannot_change(page: Page, broker: Running) -> None:
    login(page, broker, broker.read_key)
    expect(page.get_by_test_id("role-badge")).to_have_text("read only", timeout=WAIT_MS)
    expect(page.get_by_test_id("publish-form")).to_be_hidden()
    expect(page.get_by_test_id("disconnect-button")).to_have_count(0)


def test_the_bridges_panel_shows_each_bridge_and_its_state(
    page: Page, bridged: Bridged, shots: Path
) -> None:
    login(page, bridged, bridged.read_key)  # a read key is enough
    panel = page.get_by_test_id("bridges-panel")
    expect(panel).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_test_id("bridge-row")).to_have_count(2)
    # nothing listens: down (between attempts), with why, and no address
    cloud = bridge_row(page, "cloud")
    expect(cloud.get_by_test_id("bridge-state")).to_have_text("down", timeout=WAIT_MS)
    refused = f"cannot connect to 127.0.0.1:{bridged.dead_port}"
    expect(cloud.get_by_test_id("bridge-error")).to_contain_text(refused)
    expect(cloud.get_by_test_id("bridge-state")).to_have_attribute(
        "title", re.compile(re.escape(refused))
    )
    expect(cloud.get_by_test_id("bridge-address")).to_have_text("—")
    # the other remote is a broker: up, at its address, no error
    edge = bridge_row(page, "edge")
    expect(edge.get_by_test_id("bridge-state")).to_have_text("up", timeout=WAIT_MS)
    expect(edge.get_by_test_id("bridge-address")).to_have_text(f"127.0.0.1:{bridged.remote_port}")
    expect(edge.get_by_test_id("bridge-error")).to_have_count(0)
    expect(page.get_by_test_id("bridges-count")).to_have_text("(1 of 2 up)")
    # the figures follow (polled every 2 s): a message for the cloud waits
    # in its queue, one for the edge is sent
    client = PahoClient(bridged, "dashboard-bridged")
    try:
        client.client.publish("a/waits", "1", qos=1).wait_for_publish(5)
        client.client.publish("b/goes", "2", qos=1).wait_for_publish(5)
    finally:
        client.close()
    cells = "td:nth-child({})"
    expect(cloud.locator(cells.format(4))).to_have_text("1", timeout=WAIT_MS)  # queued
    expect(edge.locator(cells.format(5))).to_have_text("1", timeout=WAIT_MS)  # sent
    expect(cloud.get_by_test_id("bridge-dropped")).to_have_text("0")
    screenshot(page, shots, "bridges")
    # a narrow window scrolls the table, not the page
    page.set_viewport_size({"width": 390, "height": 844})
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways: {width}px"
    # logged out: the panel goes, and so does the polling
    page.get_by_test_id("logout-button").click()
    expect(panel).to_be_hidden()
    polls: list[str] = []
    page.on(
        "request", lambda request: polls.append(request.url) if "/bridges" in request.url else None
    )
    page.wait_for_timeout(2500)  # more than one polling interval (events are delivered meanwhile)
    assert polls == []


def test_the_bridges_panel_is_hidden_without_bridges(page: Page, broker: Running) -> None:
    login(page, broker)
    panel = page.get_by_test_id("bridges-panel")
    expect(panel).to_have_attribute("data-count", "0", timeout=WAIT_MS)  # the answer came
    expect(panel).to_be_hidden()


def test_a_narrow_window_keeps_everything_reachable(
    browser: Browser, broker: Running, shots: Path
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        login(page, broker)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page scrolls sideways: {width}px"
        expect(page.get_by_test_id("publish-button")).to_be_visible()
        screenshot(page, shots, "narrow")
    finally:
        context.close()


@pytest.mark.timeout(120)
def test_readme_screenshot(browser: Browser, broker: Running, shots: Path) -> None:
    """A busy dashboard: sensors publishing at a changing rate, a monitor
    subscribed to all of it. With MIDGE_SCREENSHOT=1 it runs for 45 s and is
    saved as docs/images/dashboard.png (the README's picture)."""
    write = os.environ.get("MIDGE_SCREENSHOT") == "1"
    seconds = 45 if write else 3
    rooms = ("kitchen", "hall", "boiler")
    sensors = [PahoClient(broker, f"{room}-sensor") for room in rooms]
    monitor = PahoClient(broker, "home-monitor")
    monitor.client.subscribe("home/#", qos=0)
    for sensor in sensors:
        sensor.client.subscribe(f"home/{rooms[sensors.index(sensor)]}/command", qos=1)
    sensors[2].client.publish("home/boiler/mode", "eco", qos=1, retain=True).wait_for_publish(5)
    sensors[0].client.publish("home/kitchen/light", "on", qos=1, retain=True).wait_for_publish(5)
    stop = threading.Event()

    def traffic() -> None:
        step = 0
        while not stop.is_set():
            step += 1
            burst = 1 + round(2 * (1 + math.sin(step / 80)))  # 1 to 5 messages a tick
            for index in range(burst):
                room = rooms[(step + index) % len(rooms)]
                sensor = sensors[rooms.index(room)]
                value = 19 + 2 * math.sin(step / 50 + index)
                sensor.client.publish(f"home/{room}/temperature", f"{value:.1f}")
                if (step + index) % 4 == 0:
                    sensor.client.publish(f"home/{room}/humidity", str(40 + (step // 7) % 12))
            stop.wait(0.05)

    worker = threading.Thread(target=traffic, daemon=True)
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    try:
        page = context.new_page()
        login(page, broker)
        worker.start()
        time.sleep(seconds)
        expect(page.locator('[data-topic="home/boiler/mode"]')).to_be_visible(timeout=WAIT_MS)
        expect(client_row(page, "home-monitor")).to_be_visible()
        path = screenshot(page, shots, "dashboard")
        assert path.stat().st_size > 0
        if write:
            README_IMAGE.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(README_IMAGE), full_page=False)
    finally:
        stop.set()
        if worker.is_alive():
            worker.join(5)
        for client in [*sensors, monitor]:
            client.close()
        context.close()
