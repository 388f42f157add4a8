// Midge dashboard: plain JavaScript, no framework, no build step, no third-party code.
//
// The page talks to the broker's HTTP API (/api/v1/...) with the API key the
// user gives at login (kept in sessionStorage, so it goes when the tab closes),
// and follows /api/v1/events (server-sent events): `overview` once a second,
// `client` when a client connects or disconnects, `topics` batches at most once
// a second. The bridges to other brokers are polled every 2 s (/api/v1/bridges;
// their panel shows only when the broker has one). Whatever the broker sends,
// the page does bounded work: the chart keeps 5 minutes of points, the topic
// tree keeps at most TREE_MAX_NODES nodes and draws at most TREE_MAX_VISIBLE
// rows, at most once a second, and the tables are reloaded at most once a second. Data from the broker is only ever
// put into the page as text (textContent), never as HTML.
"use strict";

(() => {
  const KEY_STORAGE = "midge.dashboard.key";
  const CHART_SECONDS = 300;
  const TREE_MAX_NODES = 20000;
  const TREE_MAX_VISIBLE = 500;
  const TREE_MAX_CHILDREN = 200;
  const RENDER_INTERVAL_MS = 1000;
  const TABLE_REFRESH_MS = 10000;
  const TABLE_MIN_INTERVAL_MS = 1000;
  const CLIENT_PAGE_SIZE = 500;
  const CLIENT_MAX_PAGES = 20;
  const TABLE_MAX_ROWS = 1000;
  const SUBSCRIPTIONS_SHOWN = 1000;
  const RETAINED_LOADED = 1000;
  const PAYLOAD_SHOWN = 120;
  const RECONNECT_MS = 3000;
  const BRIDGES_REFRESH_MS = 2000;
  const BRIDGE_STATES = {
    up: "up", down: "down", stopped: "down", connecting: "pending", waiting: "pending", starting: "pending",
  };

  const $ = (id) => document.getElementById(id);
  const numberFormat = new Intl.NumberFormat();

  const state = {
    key: null,
    role: null, // "admin", "read", or null while unknown
    events: null,
    reconnectTimer: null,
    refreshTimer: null,
    bridgesTimer: null,
    bridgesLoading: false,
    renderTimer: null,
    lastOverview: null, // {t, received, sent}
    samples: [], // {t, in, out}: t in ms (client clock)
    clients: new Map(), // client id -> the API's client object
    clientsRenderTimer: null,
    clientsTruncated: false,
    sort: { key: "client_id", dir: 1 },
    lastTableLoad: 0,
    tableLoadPending: false,
    tree: null,
    treeDirty: false,
    lastTreeRender: 0,
    collapsed: new Set(),
  };

  // ------------------------------------------------------------------ API

  // An answer other than success: HTTP status (0: no answer), the API's
  // error code and message, and the input field it names.
  class ApiError extends Error {
    constructor(status, message, field, code) {
      super(message);
      this.status = status;
      this.field = field;
      this.code = code;
    }
  }

  async function api(method, path, body) {
    const headers = { Authorization: `Bearer ${state.key}`, Accept: "application/json" };
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (error) {
      throw new ApiError(0, `The broker cannot be reached (${error.message}).`);
    }
    let data = null;
    const text = response.status === 204 ? "" : await response.text();
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (!response.ok) {
      const error = data && data.error;
      const message = error && error.message ? error.message : `HTTP ${response.status}`;
      throw new ApiError(response.status, message, error?.field, error?.code);
    }
    return data;
  }

  // A call made after login: a key that stopped working logs the page out.
  // A 403 "forbidden" is the key's role; 403 "not_authorized" is the ACL.
  async function call(method, path, body) {
    if (!state.key) throw new ApiError(0, "logged out");
    try {
      return await api(method, path, body);
    } catch (error) {
      if (error.status === 401) {
        logout(`Logged out: ${error.message}`);
      } else if (error.status === 403 && error.code === "forbidden") {
        setRole("read");
      }
      throw error;
    }
  }

  // ---------------------------------------------------------- login / out

  async function login(key, remember) {
    state.key = key;
    let overview;
    try {
      overview = await api("GET", "/api/v1/overview");
    } catch (error) {
      state.key = null;
      sessionStorage.removeItem(KEY_STORAGE);
      const message = error.status === 401 ? `Login failed: ${error.message}` : error.message;
      showLoginError(message);
      return;
    }
    if (remember) sessionStorage.setItem(KEY_STORAGE, key);
    $("login-view").hidden = true;
    $("app-view").hidden = false;
    $("logout-button").hidden = false;
    $("login-error").hidden = true;
    $("api-key").value = "";
    setRole(null);
    state.tree = newTree();
    state.samples = [];
    state.lastOverview = null;
    applyOverview(overview);
    detectRole();
    loadVersion();
    loadTables();
    loadRetained();
    openEvents();
    state.refreshTimer = setInterval(() => {
      if (!document.hidden) loadTables();
    }, TABLE_REFRESH_MS);
    loadBridges();
    state.bridgesTimer = setInterval(() => {
      if (!document.hidden) loadBridges();
    }, BRIDGES_REFRESH_MS);
    window.addEventListener("resize", drawChart);
    $("publish-topic").focus();
  }

  function logout(message) {
    if (state.events) state.events.close();
    clearTimeout(state.reconnectTimer);
    clearInterval(state.refreshTimer);
    clearInterval(state.bridgesTimer);
    clearTimeout(state.renderTimer);
    clearTimeout(state.clientsRenderTimer);
    window.removeEventListener("resize", drawChart);
    Object.assign(state, {
      key: null, role: null, events: null, reconnectTimer: null, refreshTimer: null,
      bridgesTimer: null, renderTimer: null, clientsRenderTimer: null, clients: new Map(),
      samples: [], tree: null, lastOverview: null,
    });
    sessionStorage.removeItem(KEY_STORAGE);
    $("app-view").hidden = true;
    renderBridges([]);
    $("logout-button").hidden = true;
    $("role-badge").hidden = true;
    $("login-view").hidden = false;
    setLive("off", "offline");
    if (message) showLoginError(message);
    $("api-key").focus();
  }

  function showLoginError(message) {
    const element = $("login-error");
    element.textContent = message;
    element.hidden = false;
  }

  // The key's role decides whether the publish panel and the Disconnect
  // buttons are shown. The API checks the key before it reads a request, so
  // a POST without a body tells without doing anything: 403 for a read key,
  // 400 (no JSON body) for an admin one.
  async function detectRole() {
    let role = "admin"; // if the probe fails otherwise, a 403 will tell later
    try {
      await api("POST", "/api/v1/publish");
    } catch (error) {
      if (error.status === 403 && error.code === "forbidden") role = "read";
    }
    if (state.key) setRole(role);
  }

  // "admin", "read", or null: not known yet (admin controls hidden meanwhile).
  function setRole(role) {
    state.role = role;
    document.body.dataset.role = role || "";
    const badge = $("role-badge");
    badge.textContent = role === "admin" ? "admin" : "read only";
    badge.hidden = !role;
    for (const element of document.querySelectorAll(".admin-only")) {
      element.hidden = role !== "admin";
    }
    renderClients();
  }

  async function loadVersion() {
    try {
      const version = await call("GET", "/api/v1/version");
      if (version && version.version) $("broker-version").textContent = `v${version.version}`;
    } catch {
      // the version is decoration
    }
  }

  // ---------------------------------------------------------- live events

  function openEvents() {
    if (!state.key) return;
    const source = new EventSource(`/api/v1/events?key=${encodeURIComponent(state.key)}`);
    state.events = source;
    let opened = false;
    source.addEventListener("open", () => {
      setLive("live", "live");
      if (opened) scheduleTableLoad(); // back after a break: catch up on what was missed
      opened = true;
    });
    source.addEventListener("overview", (event) => applyOverview(parse(event)));
    source.addEventListener("client", (event) => applyClientEvent(parse(event)));
    source.addEventListener("topics", (event) => mergeTopics(parse(event)));
    source.addEventListener("error", () => {
      if (state.events !== source) return;
      setLive("reconnecting", "reconnecting");
      if (source.readyState === EventSource.CLOSED) {
        // The server refused the stream (a revoked key, a restart): check the
        // key, then open a new stream.
        state.reconnectTimer = setTimeout(async () => {
          try {
            await call("GET", "/api/v1/overview");
          } catch {
            if (!state.key) return;
          }
          if (state.events === source) openEvents();
        }, RECONNECT_MS);
      }
    });
  }

  function parse(event) {
    try {
      return JSON.parse(event.data);
    } catch {
      return null;
    }
  }

  function setLive(stateName, text) {
    const element = $("live-status");
    element.dataset.state = stateName;
    element.textContent = text;
  }

  // ------------------------------------------------------------- overview

  function applyOverview(overview) {
    if (!overview || typeof overview !== "object") return;
    const sessions = overview.sessions || {};
    const messages = overview.messages || {};
    const store = overview.store || {};
    setText("ov-connections", count(overview.connections));
    setText("ov-sessions", `${count(sessions.online)} / ${count(sessions.offline)}`);
    setText("ov-subscriptions", count(overview.subscriptions));
    setText("ov-retained", count(overview.retained));
    setText("ov-dropped", count(messages.dropped));
    $("ov-dropped").classList.toggle("bad", Number(messages.dropped) > 0);
    const healthy = store.healthy !== false;
    setText("ov-store", healthy ? "healthy" : "failing");
    $("ov-store").className = `value ${healthy ? "good" : "bad"}`;
    $("ov-store").title = store.commits === undefined ? "" : `${count(store.commits)} commits`;
    setText("ov-uptime", duration(overview.uptime_seconds));

    const now = Date.now();
    const received = Number(messages.received) || 0;
    const sent = Number(messages.sent) || 0;
    const uptime = Number(overview.uptime_seconds);
    const last = state.lastOverview;
    if (last) {
      // The broker's uptime measures the interval when it has moved on; the
      // page's clock otherwise.
      let seconds = (now - last.t) / 1000;
      if (Number.isFinite(uptime) && Number.isFinite(last.uptime) && uptime - last.uptime >= 0.2) {
        seconds = uptime - last.uptime;
      }
      if (seconds >= 0.2) {
        const rateIn = Math.max(0, (received - last.received) / seconds);
        const rateOut = Math.max(0, (sent - last.sent) / seconds);
        state.samples.push({ t: now, in: rateIn, out: rateOut });
        setText("ov-rate-in", rate(rateIn));
        setText("ov-rate-out", rate(rateOut));
        state.lastOverview = { t: now, received, sent, uptime };
      }
    } else {
      state.lastOverview = { t: now, received, sent, uptime };
    }
    const oldest = now - CHART_SECONDS * 1000;
    while (state.samples.length && state.samples[0].t < oldest) state.samples.shift();
    drawChart();
  }

  function setText(id, text) {
    const element = $(id);
    if (element.textContent !== text) element.textContent = text;
  }

  function count(value) {
    return value === undefined || value === null ? "–" : numberFormat.format(value);
  }

  function rate(value) {
    return value >= 100 ? numberFormat.format(Math.round(value)) : value.toFixed(1);
  }

  function tick(value) {
    return Number.isInteger(value) ? numberFormat.format(value) : value.toFixed(1);
  }

  function duration(seconds) {
    if (!Number.isFinite(Number(seconds))) return "–";
    let s = Math.floor(Number(seconds));
    const d = Math.floor(s / 86400);
    s -= d * 86400;
    const h = Math.floor(s / 3600);
    s -= h * 3600;
    const m = Math.floor(s / 60);
    s -= m * 60;
    if (d) return `${d}d ${h}h`;
    if (h) return `${h}h ${m}m`;
    if (m) return `${m}m ${s}s`;
    return `${s}s`;
  }

  // ---------------------------------------------------------------- chart

  function niceMax(value) {
    if (value <= 1) return 1;
    const power = 10 ** Math.floor(Math.log10(value));
    for (const step of [1, 2, 2.5, 5, 10]) {
      if (value <= step * power) return step * power;
    }
    return 10 * power;
  }

  function drawChart() {
    const canvas = $("rate-chart");
    if (!canvas || document.hidden || $("app-view").hidden) return;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const context = canvas.getContext("2d");
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.clearRect(0, 0, width, height);
    const style = getComputedStyle(document.documentElement);
    const color = (name) => style.getPropertyValue(name).trim();
    const left = 52;
    const right = 8;
    const top = 8;
    const bottom = 20;
    const plotWidth = Math.max(1, width - left - right);
    const plotHeight = Math.max(1, height - top - bottom);
    const now = Date.now();
    const start = now - CHART_SECONDS * 1000;
    let highest = 0;
    for (const sample of state.samples) highest = Math.max(highest, sample.in, sample.out);
    const max = niceMax(highest);

    context.font = "11px system-ui, sans-serif";
    context.fillStyle = color("--muted");
    context.strokeStyle = color("--line");
    context.lineWidth = 1;
    context.textAlign = "right";
    context.textBaseline = "middle";
    for (const fraction of [0, 0.5, 1]) {
      const y = Math.round(top + plotHeight - fraction * plotHeight) + 0.5;
      context.beginPath();
      context.moveTo(left, y);
      context.lineTo(left + plotWidth, y);
      context.stroke();
      context.fillText(tick(max * fraction), left - 6, y);
    }
    context.textAlign = "center";
    context.textBaseline = "top";
    const step = plotWidth < 360 ? 2 : 1; // minutes between labels
    for (let minute = 0; minute <= CHART_SECONDS / 60; minute += step) {
      const x = left + plotWidth - (minute * 60 * plotWidth) / CHART_SECONDS;
      const label = minute ? `-${minute} min` : "now";
      context.fillText(label, Math.max(left + 16, Math.min(x, left + plotWidth - 12)), top + plotHeight + 4);
    }
    const xOf = (t) => left + ((t - start) / (CHART_SECONDS * 1000)) * plotWidth;
    const yOf = (v) => top + plotHeight - (v / max) * plotHeight;
    const samples = state.samples;
    if (!samples.length) return;
    // "in" as a shaded area under its line, "out" as a line over it: where
    // the two rates are equal (one subscriber per message), both stay visible.
    for (const [field, name, shaded] of [["in", "--in", true], ["out", "--out", false]]) {
      context.beginPath();
      samples.forEach((sample, index) => {
        const x = xOf(sample.t);
        const y = yOf(sample[field]);
        if (index === 0) context.moveTo(x, y);
        else context.lineTo(x, y);
      });
      context.strokeStyle = color(name);
      context.lineWidth = shaded ? 3 : 1.5;
      context.stroke();
      if (shaded) {
        context.lineTo(xOf(samples[samples.length - 1].t), yOf(0));
        context.lineTo(xOf(samples[0].t), yOf(0));
        context.closePath();
        context.globalAlpha = 0.15;
        context.fillStyle = color(name);
        context.fill();
        context.globalAlpha = 1;
      }
    }
  }

  // ---------------------------------------------------- clients and subs

  // Reload the tables now, or a second after the last load (a burst of
  // `client` events makes one reload per second at most).
  function scheduleTableLoad() {
    if (state.tableLoadPending) return;
    const wait = Math.max(0, state.lastTableLoad + TABLE_MIN_INTERVAL_MS - Date.now());
    state.tableLoadPending = true;
    setTimeout(() => {
      state.tableLoadPending = false;
      if (state.key) loadTables();
    }, wait);
  }

  // `client` events: {event: "connected", client}, {event: "disconnected",
  // client_id}, or {event: "many"} when too much changed at once.
  function applyClientEvent(change) {
    if (!change) return;
    if (change.event === "connected" && change.client) {
      state.clients.set(change.client.client_id, change.client);
    } else if (change.event === "disconnected") {
      state.clients.delete(change.client_id);
    } else {
      scheduleTableLoad();
      return;
    }
    // A batch brings up to 500 of these at once: draw the table once for all.
    if (!state.clientsRenderTimer) {
      state.clientsRenderTimer = setTimeout(() => {
        state.clientsRenderTimer = null;
        renderClients();
      }, 100);
    }
    scheduleSubscriptionsLoad();
  }

  function scheduleSubscriptionsLoad() {
    if (state.subscriptionsPending) return;
    state.subscriptionsPending = true;
    setTimeout(() => {
      state.subscriptionsPending = false;
      if (state.key) loadSubscriptions().catch(() => {});
    }, TABLE_MIN_INTERVAL_MS);
  }

  async function loadTables() {
    state.lastTableLoad = Date.now();
    await Promise.allSettled([loadClients(), loadSubscriptions()]);
  }

  async function loadClients() {
    const rows = [];
    let after = null;
    let truncated = false;
    for (let page = 0; ; page += 1) {
      if (page === CLIENT_MAX_PAGES) {
        truncated = true;
        break;
      }
      const query = new URLSearchParams({ limit: String(CLIENT_PAGE_SIZE) });
      if (after) query.set("after", after);
      const answer = await call("GET", `/api/v1/clients?${query}`);
      rows.push(...((answer && answer.data) || []));
      after = answer && answer.next;
      if (!after) break;
    }
    state.clients = new Map(rows.map((client) => [client.client_id, client]));
    state.clientsTruncated = truncated;
    renderClients();
  }

  function clientMatches(client, needle) {
    if (!needle) return true;
    return [client.client_id, client.username, client.address].some(
      (value) => value !== null && value !== undefined && String(value).toLowerCase().includes(needle),
    );
  }

  function compare(a, b) {
    if (a === b) return 0;
    if (a === null || a === undefined) return 1;
    if (b === null || b === undefined) return -1;
    if (typeof a === "number" && typeof b === "number") return a - b;
    return String(a).localeCompare(String(b), undefined, { numeric: true });
  }

  function renderClients() {
    const body = $("clients-body");
    if (!body) return;
    const needle = $("client-search").value.trim().toLowerCase();
    const { key, dir } = state.sort;
    const rows = [...state.clients.values()]
      .filter((client) => clientMatches(client, needle))
      .sort((a, b) => {
        const left = key === "connected_at" ? timeValue(a[key]) : a[key];
        const right = key === "connected_at" ? timeValue(b[key]) : b[key];
        return dir * compare(left, right) || compare(a.client_id, b.client_id);
      });
    const admin = state.role === "admin";
    const fragment = document.createDocumentFragment();
    for (const client of rows.slice(0, TABLE_MAX_ROWS)) {
      const row = document.createElement("tr");
      row.dataset.clientId = client.client_id;
      row.dataset.testid = "client-row";
      cell(row, client.client_id, "id");
      cell(row, client.username ?? "");
      cell(row, client.address ?? "");
      cell(row, protocolName(client.protocol_version));
      cell(row, client.listener ?? "");
      cell(row, since(client.connected_at));
      cell(row, count(client.inflight));
      cell(row, count(client.queued));
      const actions = document.createElement("td");
      actions.className = "admin-only";
      actions.hidden = !admin;
      if (admin) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "danger";
        button.textContent = "Disconnect";
        button.dataset.testid = "disconnect-button";
        button.setAttribute("aria-label", `Disconnect ${client.client_id}`);
        button.addEventListener("click", () => confirmDisconnect(client.client_id));
        actions.append(button);
      }
      row.append(actions);
      fragment.append(row);
    }
    body.replaceChildren(fragment);
    const shown = Math.min(rows.length, TABLE_MAX_ROWS);
    let label = `(${numberFormat.format(state.clients.size)}${state.clientsTruncated ? "+" : ""})`;
    if (needle || shown < rows.length) label = `(${shown} of ${label.slice(1, -1)} shown)`;
    setText("clients-count", label);
    $("clients-empty").hidden = rows.length > 0;
  }

  function cell(row, text, className) {
    const element = document.createElement("td");
    element.textContent = text;
    if (className) element.className = className;
    row.append(element);
  }

  function protocolName(version) {
    return { 3: "3.1", 4: "3.1.1", 5: "5.0" }[version] ?? String(version ?? "");
  }

  // When a client connected: an ISO 8601 time (or wall-clock seconds), shown
  // as the time of day, or the date when it is more than a day ago.
  function since(value) {
    if (value === null || value === undefined || value === "") return "";
    const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
    if (Number.isNaN(date.getTime())) return String(value);
    if (Date.now() - date.getTime() > 86400000) return date.toLocaleDateString();
    return date.toLocaleTimeString([], { hour12: false });
  }

  function timeValue(value) {
    if (typeof value === "number") return value;
    const parsed = Date.parse(value);
    return Number.isNaN(parsed) ? value : parsed / 1000;
  }

  function sortBy(key) {
    state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : 1 };
    for (const header of document.querySelectorAll("#clients-table th")) {
      const button = header.querySelector("button[data-sort]");
      if (!button) continue;
      if (button.dataset.sort === key) {
        header.setAttribute("aria-sort", state.sort.dir > 0 ? "ascending" : "descending");
      } else {
        header.removeAttribute("aria-sort");
      }
    }
    renderClients();
  }

  function confirmDisconnect(clientId) {
    const dialog = $("confirm-dialog");
    $("confirm-text").textContent = `Disconnect client “${clientId}”? Its will is published; a persistent session is kept.`;
    dialog.returnValue = "";
    dialog.onclose = async () => {
      if (dialog.returnValue !== "ok") return;
      try {
        await call("DELETE", `/api/v1/clients/${encodeURIComponent(clientId)}`);
        state.clients.delete(clientId);
        renderClients();
      } catch (error) {
        toast(`Disconnect ${clientId}: ${error.message}`);
      }
      scheduleTableLoad();
    };
    dialog.showModal();
    $("confirm-cancel").focus();
  }

  async function loadSubscriptions() {
    const answer = await call("GET", `/api/v1/subscriptions?limit=${SUBSCRIPTIONS_SHOWN}`);
    const rows = Array.isArray(answer) ? answer : (answer && answer.data) || [];
    rows.sort((a, b) => compare(a.client_id, b.client_id) || compare(a.topic_filter, b.topic_filter));
    const fragment = document.createDocumentFragment();
    for (const subscription of rows.slice(0, TABLE_MAX_ROWS)) {
      const row = document.createElement("tr");
      row.dataset.testid = "subscription-row";
      row.dataset.clientId = subscription.client_id;
      cell(row, subscription.client_id, "id");
      cell(row, subscription.topic_filter ?? subscription.filter ?? "", "id");
      cell(row, String(subscription.qos ?? ""));
      const options = [];
      if (subscription.no_local) options.push("no local");
      if (subscription.retain_as_published) options.push("retain as published");
      if (subscription.subscription_id) options.push(`id ${subscription.subscription_id}`);
      cell(row, options.join(", "));
      fragment.append(row);
    }
    $("subscriptions-body").replaceChildren(fragment);
    const more = answer && answer.next ? "+" : "";
    setText("subscriptions-count", `(${numberFormat.format(rows.length)}${more})`);
  }

  // -------------------------------------------------------------- bridges

  // The bridges (`[[bridges]]`), polled: the panel is hidden while the broker
  // has none (or does not know the endpoint). A poll still waiting when the
  // next is due is not doubled; a failed one leaves the last table shown.
  async function loadBridges() {
    if (state.bridgesLoading || !state.key) return;
    state.bridgesLoading = true;
    try {
      const answer = await call("GET", "/api/v1/bridges");
      if (state.key) renderBridges((answer && Array.isArray(answer.bridges) && answer.bridges) || []);
    } catch (error) {
      if (state.key && error.status === 404) renderBridges([]);
    } finally {
      state.bridgesLoading = false;
    }
  }

  function renderBridges(bridges) {
    const panel = $("bridges-panel");
    panel.dataset.count = String(bridges.length);
    panel.hidden = bridges.length === 0;
    const fragment = document.createDocumentFragment();
    let up = 0;
    for (const bridge of bridges.slice(0, TABLE_MAX_ROWS)) {
      if (!bridge || typeof bridge !== "object") continue;
      const stateName = String(bridge.state ?? "");
      if (stateName === "up") up += 1;
      const row = document.createElement("tr");
      row.dataset.testid = "bridge-row";
      row.dataset.bridge = String(bridge.name ?? "");
      row.dataset.state = stateName;

      const name = document.createElement("td");
      name.className = "id";
      const label = document.createElement("div");
      label.textContent = String(bridge.name ?? "");
      label.title = bridgeSummary(bridge);
      name.append(label);
      const failing = stateName !== "up" && bridge.last_error;
      if (failing) {
        const why = document.createElement("div");
        why.className = "bridge-error";
        why.dataset.testid = "bridge-error";
        why.textContent = String(bridge.last_error);
        name.append(why);
      }
      row.append(name);

      const status = document.createElement("td");
      const badge = document.createElement("span");
      badge.className = "state";
      badge.dataset.state = BRIDGE_STATES[stateName] || "pending";
      badge.dataset.testid = "bridge-state";
      badge.textContent = stateName || "?";
      if (failing) badge.title = String(bridge.last_error);
      status.append(badge);
      row.append(status);

      cell(row, bridge.address ? String(bridge.address) : "—", "id");
      row.lastChild.dataset.testid = "bridge-address";
      if (!bridge.address && Array.isArray(bridge.addresses)) {
        row.lastChild.title = `configured: ${bridge.addresses.join(", ")}`;
      }
      cell(row, count(bridge.queued));
      cell(row, count(bridge.sent));
      cell(row, count(bridge.received));
      const lost = [];
      for (const [field, what] of [["refused", "refused"], ["too_large", "too large"]]) {
        if (Number(bridge[field]) > 0) lost.push(`+${numberFormat.format(bridge[field])} ${what}`);
      }
      const dropped = count(bridge.dropped);
      cell(row, lost.length ? `${dropped} (${lost.join(", ")})` : dropped);
      const cellDropped = row.lastChild;
      cellDropped.dataset.testid = "bridge-dropped";
      cellDropped.title = "dropped: at the bridge queue's bound; refused: by the receiving side "
        + "(a 5.0 reason code); too large: above the remote's Maximum Packet Size";
      if (Number(bridge.dropped) > 0 || lost.length) cellDropped.classList.add("bad");
      fragment.append(row);
    }
    $("bridges-body").replaceChildren(fragment);
    setText("bridges-count", bridges.length ? `(${up} of ${numberFormat.format(bridges.length)} up)` : "");
  }

  // A bridge's name's tooltip: its client id and topic rules.
  function bridgeSummary(bridge) {
    const lines = [];
    if (bridge.client_id) lines.push(`client id ${bridge.client_id} (MQTT ${bridge.protocol ?? "?"}, ${bridge.start ?? "?"})`);
    for (const rule of Array.isArray(bridge.topics) ? bridge.topics : []) {
      if (!rule) continue;
      let text = `${rule.pattern} ${rule.direction} QoS ${rule.qos}`;
      if (rule.local_prefix || rule.remote_prefix) text += ` (local "${rule.local_prefix ?? ""}", remote "${rule.remote_prefix ?? ""}")`;
      lines.push(text);
    }
    return lines.join("\n");
  }

  // ----------------------------------------------------------- topic tree

  function newTree() {
    return { root: newNode("", "", 0), size: 0, full: false, uncounted: 0 };
  }

  function newNode(name, path, level) {
    return {
      name, path, level, children: new Map(), count: 0, total: 0,
      last: null, retained: null, updated: 0,
    };
  }

  function nodeFor(topic) {
    const tree = state.tree;
    let node = tree.root;
    const levels = topic.split("/");
    for (let i = 0; i < levels.length; i += 1) {
      let child = node.children.get(levels[i]);
      if (!child) {
        if (tree.size >= TREE_MAX_NODES) {
          tree.full = true;
          return null;
        }
        child = newNode(levels[i], levels.slice(0, i + 1).join("/"), i + 1);
        node.children.set(levels[i], child);
        tree.size += 1;
      }
      node = child;
    }
    return node;
  }

  // A payload as the API gives it: text ("plain"), or base64 for bytes that
  // are not UTF-8; `truncated` when the broker cut it.
  function payloadText(info) {
    const payload = info.payload;
    if (payload === null || payload === undefined) return "";
    let text = info.payload_encoding === "base64" ? `base64:${payload}` : String(payload);
    if (info.truncated) text += "…";
    return text;
  }

  // `topics` events: {topic: {count, payload, retained}}, count being the
  // messages on that topic since the previous batch.
  function mergeTopics(batch) {
    if (!batch || typeof batch !== "object" || !state.tree) return;
    const topics = batch.topics && typeof batch.topics === "object" ? batch.topics : batch;
    const now = Date.now();
    for (const [topic, info] of Object.entries(topics)) {
      if (!info || typeof info !== "object") continue;
      if (topic === "$dropped") {
        // messages to topics beyond the broker's per-batch limit
        state.tree.uncounted += Number(info.count) || 0;
        continue;
      }
      const node = nodeFor(topic);
      if (!node) continue;
      node.count += Number(info.count) || 0;
      node.last = payloadText(info);
      if (info.retained) node.retained = node.last === "" ? null : node.last;
      node.updated = now;
    }
    scheduleTreeRender();
  }

  async function loadRetained() {
    try {
      const answer = await call("GET", `/api/v1/retained?filter=%23&limit=${RETAINED_LOADED}`);
      const rows = Array.isArray(answer) ? answer : (answer && answer.data) || [];
      for (const message of rows) {
        if (!message || typeof message.topic !== "string") continue;
        const node = nodeFor(message.topic);
        if (node && node.retained === null) {
          node.retained = payloadText(message);
          if (node.last === null) node.last = node.retained;
        }
      }
      scheduleTreeRender();
    } catch {
      // the tree fills from live events anyway
    }
  }

  function scheduleTreeRender() {
    state.treeDirty = true;
    if (state.renderTimer) return;
    const wait = Math.max(0, state.lastTreeRender + RENDER_INTERVAL_MS - Date.now());
    state.renderTimer = setTimeout(() => {
      state.renderTimer = null;
      if (document.hidden) return; // visibilitychange renders it
      renderTree();
    }, wait);
  }

  function sumTotals(node) {
    let total = node.count;
    for (const child of node.children.values()) total += sumTotals(child);
    node.total = total;
    return total;
  }

  function subtreeMatches(node, needle, matches) {
    let found = node.path.toLowerCase().includes(needle);
    for (const child of node.children.values()) {
      if (subtreeMatches(child, needle, matches)) found = true;
    }
    if (found) matches.add(node);
    return found;
  }

  function renderTree() {
    const tree = state.tree;
    if (!tree) return;
    state.treeDirty = false;
    state.lastTreeRender = Date.now();
    sumTotals(tree.root);
    const needle = $("topic-search").value.trim().toLowerCase();
    let matches = null;
    if (needle) {
      matches = new Set();
      subtreeMatches(tree.root, needle, matches);
    }
    const focused = document.activeElement && document.activeElement.closest("#topic-tree [data-topic]");
    const focusedPath = focused ? focused.dataset.topic : null;
    const budget = { left: TREE_MAX_VISIBLE, hidden: 0 };
    const now = Date.now();
    const list = $("topic-tree");
    list.replaceChildren(renderChildren(tree.root, matches, budget, now));
    if (focusedPath !== null) {
      const again = list.querySelector(`[data-topic="${CSS.escape(focusedPath)}"] .toggle`);
      if (again) again.focus();
    }
    setText("topics-count", `(${numberFormat.format(tree.size)} nodes)`);
    const notes = [];
    if (budget.hidden) notes.push(`${numberFormat.format(budget.hidden)} more not shown: filter or collapse to see them.`);
    if (tree.uncounted) notes.push(`${numberFormat.format(tree.uncounted)} messages to topics beyond the broker's limit per update are not in the tree.`);
    if (tree.full) notes.push(`The tree holds at most ${numberFormat.format(TREE_MAX_NODES)} nodes; newer topics are not added.`);
    setText("topics-note", notes.join(" "));
  }

  function renderChildren(parent, matches, budget, now) {
    const fragment = document.createDocumentFragment();
    const children = [...parent.children.values()]
      .filter((child) => !matches || matches.has(child))
      .sort((a, b) => compare(a.name, b.name));
    let shown = 0;
    for (const child of children) {
      if (budget.left <= 0 || shown >= TREE_MAX_CHILDREN) {
        budget.hidden += 1;
        continue;
      }
      budget.left -= 1;
      shown += 1;
      fragment.append(renderNode(child, matches, budget, now));
    }
    return fragment;
  }

  function renderNode(node, matches, budget, now) {
    const item = document.createElement("li");
    item.setAttribute("role", "treeitem");
    item.setAttribute("aria-level", String(node.level));
    item.dataset.topic = node.path;
    item.dataset.testid = "topic-node";
    const open = !state.collapsed.has(node.path) || Boolean(matches);
    const row = document.createElement("div");
    row.className = now - node.updated < 2000 ? "node fresh" : "node";
    const toggle = document.createElement("button");
    toggle.type = "button";
    toggle.className = "toggle";
    if (node.children.size) {
      item.setAttribute("aria-expanded", String(open));
      toggle.textContent = open ? "▾" : "▸";
      toggle.setAttribute("aria-label", `${open ? "Collapse" : "Expand"} ${node.path}`);
      toggle.addEventListener("click", () => {
        if (state.collapsed.has(node.path)) state.collapsed.delete(node.path);
        else state.collapsed.add(node.path);
        renderTree();
      });
    } else {
      toggle.disabled = true;
      toggle.tabIndex = -1;
      toggle.setAttribute("aria-hidden", "true");
    }
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = node.name === "" ? "(empty)" : node.name;
    name.title = node.path;
    const badge = document.createElement("span");
    badge.className = "count";
    badge.dataset.testid = "topic-count";
    badge.textContent = numberFormat.format(node.total);
    badge.title = `${numberFormat.format(node.count)} messages on this topic, ${numberFormat.format(node.total)} with its subtopics, since the page opened`;
    row.append(toggle, name, badge);
    const value = node.retained ?? node.last;
    if (value !== null) {
      const payload = document.createElement("span");
      payload.className = node.retained !== null ? "payload retained" : "payload";
      payload.dataset.testid = "topic-payload";
      payload.textContent = value.length > PAYLOAD_SHOWN ? `${value.slice(0, PAYLOAD_SHOWN)}…` : value;
      payload.title = value.slice(0, 1000);
      row.append(payload);
    }
    item.append(row);
    if (node.children.size && open) {
      const group = document.createElement("ul");
      group.setAttribute("role", "group");
      group.append(renderChildren(node, matches, budget, now));
      item.append(group);
    }
    return item;
  }

  // -------------------------------------------------------------- publish

  async function publish(event) {
    event.preventDefault();
    const result = $("publish-result");
    const button = $("publish-button");
    const body = {
      topic: $("publish-topic").value,
      payload: $("publish-payload").value,
      payload_encoding: $("publish-encoding").value,
      qos: Number($("publish-qos").value),
      retain: $("publish-retain").checked,
    };
    button.disabled = true;
    result.className = "";
    result.textContent = "Publishing…";
    try {
      const answer = await call("POST", "/api/v1/publish", body);
      result.className = "good";
      result.textContent = publishAnswer(body, answer);
    } catch (error) {
      result.className = "bad";
      result.textContent = `Not published: ${error.message}${error.field ? ` (${error.field})` : ""}`;
    } finally {
      button.disabled = false;
    }
  }

  function publishAnswer(body, answer) {
    let text = `Published to ${body.topic} (QoS ${body.qos}${body.retain ? ", retained" : ""})`;
    if (answer && answer.message) text += `: ${answer.message}`;
    if (answer && answer.id) text += ` [id ${answer.id}]`;
    return `${text}.`;
  }

  // --------------------------------------------------------------- misc

  let toastTimer = null;
  function toast(message) {
    const element = $("toast");
    element.textContent = message;
    element.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => {
      element.hidden = true;
    }, 6000);
  }

  function start() {
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = $("api-key").value.trim();
      if (key) login(key, true);
    });
    $("logout-button").addEventListener("click", () => logout());
    $("client-search").addEventListener("input", renderClients);
    $("topic-search").addEventListener("input", () => renderTree());
    for (const button of document.querySelectorAll("#clients-table button[data-sort]")) {
      button.addEventListener("click", () => sortBy(button.dataset.sort));
    }
    $("publish-form").addEventListener("submit", publish);
    document.addEventListener("visibilitychange", () => {
      if (document.hidden || !state.key) return;
      drawChart();
      loadBridges();
      if (state.treeDirty) renderTree();
    });
    const saved = sessionStorage.getItem(KEY_STORAGE);
    if (saved) login(saved, true);
    else $("api-key").focus();
  }

  start();
})();
