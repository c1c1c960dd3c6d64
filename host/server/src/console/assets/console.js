// Streamhost's console: reads /console/events (server-sent events, parsed here because
// EventSource cannot send an Authorization header) and renders each snapshot. Everything
// shown is set with textContent: plugin names, failure reports and payloads are untrusted.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const KEY = "streamhost-console-token";
  // Points kept per series: a minute at two snapshots a second.
  const POINTS = 120;
  // Rates are taken over this much history, so one late snapshot does not make a spike.
  const RATE_WINDOW_MS = 2000;
  const LIMIT_REASONS = ["cpu-deadline", "memory", "stack", "effects", "outside-grant"];

  let token = null;
  let controller = null;
  let retryTimer = null;
  const series = new Map();
  const cards = new Map();

  function readToken() {
    const found = location.hash.match(/(?:^#|&)token=([^&]*)/);
    if (found) {
      sessionStorage.setItem(KEY, decodeURIComponent(found[1]));
      // The token leaves the address bar (and the history) at once.
      history.replaceState(null, "", location.pathname + location.search);
    }
    return sessionStorage.getItem(KEY);
  }

  function authHeaders() {
    return token ? { Authorization: "Bearer " + token } : {};
  }

  function setLive(state, text) {
    const live = $("live");
    live.className = "badge " + state;
    live.textContent = text || state;
  }

  function notice(text, bad) {
    const n = $("notice");
    n.hidden = false;
    n.className = bad ? "bad" : "";
    n.textContent = text;
  }

  function showError(text) {
    // No data stays on the page once access is refused.
    $("data").hidden = true;
    for (const body of document.querySelectorAll("tbody")) body.replaceChildren();
    $("plugins").replaceChildren();
    $("upstream").replaceChildren();
    $("gaps").replaceChildren();
    cards.clear();
    series.clear();
    $("error").hidden = false;
    $("error").textContent = text;
  }

  async function follow() {
    clearTimeout(retryTimer);
    if (controller) controller.abort();
    controller = new AbortController();
    setLive("connecting");
    let response;
    try {
      response = await fetch("/console/events", {
        headers: authHeaders(),
        signal: controller.signal,
        cache: "no-store",
      });
    } catch (e) {
      return retry("cannot reach the server");
    }
    if (response.status === 401 || response.status === 403) {
      let message = "";
      try { message = (await response.json()).error || ""; } catch (e) { /* not JSON */ }
      setLive("refused", "unauthorized");
      showError(`Access refused (${response.status}${message ? ": " + message : ""}). ` +
        "Open the page as /console#token=TOKEN or enter the token below.");
      $("login").hidden = false;
      return;
    }
    if (!response.ok) return retry(`the server answered ${response.status}`);
    $("error").hidden = true;
    $("login").hidden = true;
    setLive("live");
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          dispatch(block);
        }
      }
    } catch (e) {
      if (e.name === "AbortError") return;
    }
    retry("the event stream ended");
  }

  // One server-sent event: `event:` and `data:` lines; comments (`:`) are keep-alives.
  function dispatch(block) {
    let type = "message";
    const data = [];
    for (const raw of block.split("\n")) {
      const line = raw.replace(/\r$/, "");
      if (line === "" || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") type = value;
      else if (field === "data") data.push(value);
    }
    if (type === "snapshot" && data.length) render(JSON.parse(data.join("\n")));
  }

  async function refresh() {
    try {
      const r = await fetch("/console/snapshot", { headers: authHeaders(), cache: "no-store" });
      if (r.ok) render(await r.json());
    } catch (e) { /* the event stream brings the next one */ }
  }

  function retry(why) {
    setLive("reconnecting", "reconnecting: " + why);
    retryTimer = setTimeout(follow, 2000);
  }

  // A value's history and its rate per second over RATE_WINDOW_MS.
  function track(key, at, value) {
    let s = series.get(key);
    if (!s) { s = { points: [], rates: [] }; series.set(key, s); }
    s.points.push({ at, value });
    if (s.points.length > POINTS) s.points.shift();
    const last = s.points[s.points.length - 1];
    let first = s.points[0];
    for (const p of s.points) { if (last.at - p.at >= RATE_WINDOW_MS) first = p; }
    const rate = last.at > first.at ? ((last.value - first.value) * 1000) / (last.at - first.at) : 0;
    s.rates.push(Math.max(0, rate));
    if (s.rates.length > POINTS) s.rates.shift();
    s.seen = at;
    return Math.max(0, rate);
  }

  // A level's history (a lag, not a count): charted as it is, not as a rate.
  function trackLevel(key, value) {
    let s = series.get(key);
    if (!s) { s = { points: [], rates: [] }; series.set(key, s); }
    s.rates.push(Math.max(0, value));
    if (s.rates.length > POINTS) s.rates.shift();
  }

  function draw(canvas, values, color) {
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 240, h = canvas.clientHeight || 32;
    if (canvas.width !== w * ratio) { canvas.width = w * ratio; canvas.height = h * ratio; }
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, w, h);
    const max = Math.max(1, ...values);
    g.beginPath();
    // The newest point at the right edge; a minute of history fills the width.
    const start = POINTS - values.length;
    values.forEach((v, i) => {
      const x = ((start + i) / (POINTS - 1)) * w, y = h - 2 - (v / max) * (h - 4);
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.strokeStyle = color || "#1a56db";
    g.lineWidth = 1.5;
    g.stroke();
  }

  function fmt(n) { return Number(n).toLocaleString("en-US", { maximumFractionDigits: 0 }); }

  function ago(ms, now) {
    const s = Math.max(0, Math.round((now - ms) / 1000));
    if (s < 120) return s + " s ago";
    if (s < 7200) return Math.round(s / 60) + " min ago";
    return Math.round(s / 3600) + " h ago";
  }

  function badge(state) {
    const b = document.createElement("span");
    b.className = "badge " + state;
    b.textContent = state;
    return b;
  }

  function cell(row, text, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    if (text instanceof Node) td.append(text); else td.textContent = text;
    row.append(td);
    return td;
  }

  function header(table, names) {
    const tr = table.querySelector("thead tr");
    if (tr.childElementCount === names.length) return;
    tr.replaceChildren(...names.map((n) => { const th = document.createElement("th"); th.textContent = n; return th; }));
  }

  // Rows keyed by `key`, kept across snapshots so their charts persist.
  function syncRows(table, items, key, fill) {
    const body = table.querySelector("tbody");
    const old = new Map([...body.children].map((r) => [r.dataset.key, r]));
    const rows = items.map((item) => {
      const k = key(item);
      let row = old.get(k);
      if (!row) { row = document.createElement("tr"); row.dataset.key = k; }
      fill(row, item);
      return row;
    });
    body.replaceChildren(...rows);
  }

  function chartCell(row, key, kept, color) {
    const canvas = kept || document.createElement("canvas");
    canvas.className = "chart";
    const td = cell(row, canvas);
    td.className = "chart-cell";
    requestAnimationFrame(() => { const s = series.get(key); if (s) draw(canvas, s.rates, color); });
  }

  function render(s) {
    $("data").hidden = false;
    $("role").textContent = s.role;
    $("name").textContent = s.name;
    document.title = `Streamhost ${s.role} ${s.name}`;
    if (s.role === "writer") renderWriter(s); else renderReader(s);
  }

  function renderWriter(s) {
    header($("streams"), ["Stream", "Position", "Rows/s", "Last minute"]);
    syncRows($("streams"), s.streams, (st) => st.name, (row, st) => {
      const key = "w:" + st.name;
      const rate = track(key, s.at_ms, st.position);
      const canvas = row.querySelector("canvas");
      row.replaceChildren();
      cell(row, st.name);
      cell(row, fmt(st.position), "num position");
      cell(row, fmt(rate), "num rate");
      chartCell(row, key, canvas);
    });
    $("readers-panel").hidden = false;
    syncRows($("readers"), s.readers, (r) => r.address, (row, r) => {
      row.replaceChildren();
      cell(row, r.name || "(no NAME yet)", "peer-name");
      cell(row, r.address);
      cell(row, badge(r.state));
      cell(row, ago(r.connected_at_ms, s.at_ms));
      cell(row, fmt(r.pending), "num");
    });
    const gaps = $("gaps");
    gaps.replaceChildren();
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = "The writer keeps every row: gaps are found by readers (see each reader's console).";
    gaps.append(li);
  }

  function renderReader(s) {
    const st = s.status;
    $("upstream-panel").hidden = false;
    const dl = $("upstream");
    dl.replaceChildren();
    const pairs = [
      ["Follows", st.writer],
      ["Connection", badge(st.connection.state)],
      ["Server name", st.connection.server_name || "—"],
      ["Reconnects", fmt(st.reconnects)],
      ["Last error", st.connection.last_error || "none"],
    ];
    for (const [k, v] of pairs) {
      const dt = document.createElement("dt"); dt.textContent = k;
      const dd = document.createElement("dd");
      if (v instanceof Node) dd.append(v); else dd.textContent = v;
      dl.append(dt, dd);
    }
    header($("streams"), ["Stream", "Instance", "Position", "Writer", "Lag (tokens)", "Lag (s)", "Rows/s", "Rows/s, last minute", "Lag (s), last minute"]);
    syncRows($("streams"), st.streams, (x) => x.stream + "/" + x.instance, (row, x) => {
      const key = "r:" + x.stream + "/" + x.instance;
      const lagKey = "l:" + x.stream + "/" + x.instance;
      const rate = track(key, s.at_ms, x.rows_applied);
      trackLevel(lagKey, x.lag_seconds);
      const [rateCanvas, lagCanvas] = row.querySelectorAll("canvas");
      row.replaceChildren();
      cell(row, x.stream);
      cell(row, x.instance);
      cell(row, fmt(x.position), "num position");
      cell(row, fmt(x.writer_position), "num");
      cell(row, fmt(x.lag), "num lag");
      cell(row, x.lag_seconds.toFixed(1), "num lag-seconds");
      cell(row, fmt(rate), "num rate");
      chartCell(row, key, rateCanvas);
      chartCell(row, lagKey, lagCanvas, "#c2410c");
    });
    renderPlugins(s);
    renderNotifications(s);
    const gaps = $("gaps");
    const items = [];
    for (const x of st.streams) {
      if (x.gaps > 0) items.push(`${x.stream}/${x.instance}: ${x.gaps} gap(s), the last (${x.last_gap.from}, ${x.last_gap.to}]`);
      if (x.resets > 0) items.push(`${x.stream}/${x.instance}: ${x.resets} reset(s), the last from ${x.last_reset.from} to ${x.last_reset.to}`);
    }
    gaps.replaceChildren(...(items.length ? items : ["none since the reader started"]).map((t) => {
      const li = document.createElement("li");
      li.textContent = t;
      if (!items.length) li.className = "muted";
      return li;
    }));
  }

  function renderPlugins(s) {
    if (!s.plugins) { $("plugins-panel").hidden = true; return; }
    $("plugins-panel").hidden = false;
    $("admin-off").hidden = s.admin;
    const box = $("plugins");
    const names = new Set(s.plugins.map((p) => p.name));
    for (const [name, card] of cards) {
      if (!names.has(name)) { card.root.remove(); cards.delete(name); }
    }
    for (const p of s.plugins) {
      let card = cards.get(p.name);
      if (!card) { card = makeCard(p.name); cards.set(p.name, card); box.append(card.root); }
      fillCard(card, p, s);
    }
  }

  function makeCard(name) {
    const root = document.createElement("div");
    root.className = "plugin";
    root.dataset.plugin = name;
    const h3 = document.createElement("h3");
    const title = document.createElement("span");
    title.textContent = name;
    const state = document.createElement("span");
    state.className = "badge state";
    h3.append(title, state);
    const reason = document.createElement("div");
    reason.className = "reason";
    const facts = document.createElement("dl");
    const failure = document.createElement("div");
    failure.className = "failure";
    const buttons = document.createElement("div");
    buttons.className = "buttons";
    const make = (action, label) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = action;
      b.textContent = label;
      b.addEventListener("click", () => act(name, action, b));
      buttons.append(b);
      return b;
    };
    const reload = make("reload", "Reload");
    const quarantine = make("quarantine", "Quarantine");
    const resume = make("resume", "Resume");
    root.append(h3, reason, facts, failure, buttons);
    return { root, state, reason, facts, failure, reload, quarantine, resume, shown: null };
  }

  function fillCard(card, p, s) {
    card.state.className = "badge state " + p.state;
    card.state.textContent = p.state;
    card.reason.textContent = p.reason || "";
    const limits = LIMIT_REASONS.filter((r) => p.failures[r]).map((r) => `${r} ×${p.failures[r]}`);
    const cursors = p.cursors.map((c) => `${c.stream}: ${fmt(c.token)}`).join(", ") || "—";
    const facts = [
      ["Version", p.version ? p.version.slice(0, 12) : "none"],
      ["Cursor", cursors],
      ["Lag (tokens)", fmt(p.lag)],
      ["Batches / rows", `${fmt(p.batches)} / ${fmt(p.rows)}`],
      ["Reloads", `${fmt(p.reloads)}${p.reload_failures ? ` (${p.reload_failures} failed)` : ""}`],
      ["Limits hit", limits.join(", ") || "none"],
    ];
    card.facts.replaceChildren(...facts.flatMap(([k, v]) => {
      const dt = document.createElement("dt"); dt.textContent = k;
      const dd = document.createElement("dd"); dd.textContent = v;
      dd.className = k.toLowerCase().replace(/[^a-z]+/g, "-");
      return [dt, dd];
    }));
    const f = p.last_failure;
    const shown = f ? `${f.at_ms}/${f.call}/${f.attempt}` : null;
    // The report is rebuilt only when it changes, so an open <details> stays open.
    if (shown !== card.shown) {
      card.shown = shown;
      card.failure.replaceChildren();
      if (f) {
        const line = document.createElement("div");
        line.textContent = `Last failure ${ago(f.at_ms, s.at_ms)}: ${f.call} ${f.failure.reason}: ${f.failure.message}`;
        const details = document.createElement("details");
        const summary = document.createElement("summary");
        summary.textContent = "Report";
        const pre = document.createElement("pre");
        pre.textContent = JSON.stringify(f, null, 2);
        details.append(summary, pre);
        card.failure.append(line, details);
      }
    }
    const off = !s.admin;
    card.reload.disabled = off;
    card.quarantine.disabled = off || p.state !== "running";
    card.resume.disabled = off || p.state !== "quarantined";
  }

  async function act(name, action, button) {
    button.disabled = true;
    notice(`${action} ${name}…`);
    const init = { method: "POST", headers: authHeaders() };
    if (action === "quarantine") {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify({ reason: "from the console" });
    }
    try {
      const r = await fetch(`/v1/admin/plugins/${encodeURIComponent(name)}/${action}`, init);
      let body = {};
      try { body = await r.json(); } catch (e) { /* no JSON */ }
      if (r.ok) {
        notice(`${action} ${name}: done`);
        // Show the outcome now rather than at the next event.
        refresh();
      }
      else notice(`${action} ${name} failed (${r.status}): ${body.error || "no reason given"}`, true);
    } catch (e) {
      notice(`${action} ${name} failed: cannot reach the server`, true);
    }
  }

  function renderNotifications(s) {
    if (!s.notifications) { $("notifications-panel").hidden = true; return; }
    $("notifications-panel").hidden = false;
    const newest = [...s.notifications].reverse();
    syncRows($("notifications"), newest, (n) => String(n.seq), (row, n) => {
      if (row.childElementCount) return;
      cell(row, String(n.seq), "num");
      cell(row, n.plugin);
      cell(row, n.topic);
      cell(row, n.payload + (n.cut ? "…" : ""), "payload");
    });
  }

  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    token = $("token").value.trim() || null;
    if (token) sessionStorage.setItem(KEY, token); else sessionStorage.removeItem(KEY);
    $("token").value = "";
    follow();
  });

  // A new #token=... pasted into the address bar takes over at once.
  window.addEventListener("hashchange", () => {
    if (!/(?:^#|&)token=/.test(location.hash)) return;
    token = readToken();
    follow();
  });

  token = readToken();
  follow();
})();
