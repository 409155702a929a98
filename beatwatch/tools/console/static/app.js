// beatwatch console: live streams over server-sent events, an alert's beat drawn in SVG.
// Every text from a message goes into the page with textContent, never as HTML.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
// The plot area of the beat drawing, in viewBox units (see drawBeat).
const PLOT = { left: 44, top: 22, width: 666, height: 250 };
const REGION_COLOURS = ["#c5cae9", "#b2dfdb", "#fff9c4", "#f8bbd0", "#d7ccc8", "#c8e6c9"];
const STRIP_REFRESH_MS = 5000;

const view = { stream: null, streamVersion: -1, alertId: null, stripAt: 0, alerts: [] };

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function fmt(value, digits) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Number(value).toPrecision(digits || 4);
}

function time(ms) {
  if (!ms) return "–";
  return new Date(ms).toLocaleTimeString();
}

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  return { status: response.status, body: await response.json() };
}

// ---- live view -------------------------------------------------------------

function renderStatus(state) {
  const status = document.getElementById("status");
  status.textContent = state.status;
  status.className = "pill " + (state.status === "connected" ? "ok" : "bad");
  const h = state.health || {};
  const health = document.getElementById("health");
  if (h.up === undefined) health.textContent = "detector: no metrics";
  else if (!h.up) health.textContent = "detector: metrics unreachable";
  else health.textContent = `detector: ${h.ready ? "ready" : "NOT READY"} · ` +
    `${h.beats_per_s === null ? "–" : Math.round(h.beats_per_s)} beats/s · lag ${Math.round(h.lag_messages)}`;
  document.getElementById("totals").textContent =
    `${state.alerts_total} alerts · ${state.streams_total} streams · ${state.errors_total} unreadable`;
}

function renderErrors(errors) {
  const list = document.getElementById("errors");
  list.replaceChildren(...errors.slice(0, 10).map((e) => {
    const row = el("li", null, "error-row");
    row.append(el("strong", "unreadable message"), ` on ${e.topic} partition ${e.partition} offset ${e.offset}: ${e.reason}`);
    return row;
  }));
}

function renderStreams(streams) {
  const list = document.getElementById("streams");
  if (!streams.length) {
    list.replaceChildren(el("li", "no alerts yet", "empty"));
    return;
  }
  list.replaceChildren(...streams.map((s) => {
    const row = el("li", null, "stream-row" + (s.stream === view.stream ? " selected" : ""));
    row.dataset.stream = s.stream;
    row.dataset.state = s.state;
    row.append(el("span", s.stream, "name"), el("span", s.state, "state state-" + s.state));
    const ratio = s.last_score_ratio === null ? "" : ` · last ×${fmt(s.last_score_ratio, 3)}`;
    const incidents = s.incidents ? ` · ${s.incidents} open incident(s)` : "";
    row.append(el("span", `${s.alerts} alerts · ${time(s.last_ts_ms)}${ratio}${incidents}`, "sub"));
    row.addEventListener("click", () => selectStream(s.stream));
    return row;
  }));
}

function onState(state) {
  renderStatus(state);
  renderErrors(state.errors);
  renderStreams(state.streams);
  const selected = state.streams.find((s) => s.stream === view.stream);
  if (selected && selected.version !== view.streamVersion) {
    view.streamVersion = selected.version;
    loadStream(false);
  }
}

function connect() {
  const events = new EventSource("/events");
  events.addEventListener("state", (event) => {
    try {
      onState(JSON.parse(event.data));
    } catch (err) {
      console.error(err);
    }
  });
  events.onerror = () => {
    const status = document.getElementById("status");
    status.textContent = "console unreachable; retrying";
    status.className = "pill bad";
  };
}

// ---- one stream --------------------------------------------------------------

function selectStream(stream) {
  view.stream = stream;
  view.streamVersion = -1;
  view.stripAt = 0;
  for (const row of document.querySelectorAll(".stream-row")) {
    row.classList.toggle("selected", row.dataset.stream === stream);
  }
  loadStream(true);
}

async function loadStream(first) {
  const stream = view.stream;
  const { status, body } = await getJSON("/api/stream?stream=" + encodeURIComponent(stream));
  if (stream !== view.stream || status !== 200) return;
  document.getElementById("stream-title").textContent =
    `${body.stream} · ${body.state} · ${body.alerts_total} alerts`;
  view.alerts = body.alerts;
  const rows = body.alerts.map((a) => {
    const tr = el("tr", null, a.alert_id === view.alertId ? "selected" : "");
    tr.dataset.alertId = a.alert_id;
    tr.append(el("td", time(a.ts_ms)), el("td", a.seq), el("td", `${fmt(a.score)} / ${fmt(a.threshold)}`),
      el("td", fmt(a.p_value, 3)), el("td", a.summary));
    tr.lastChild.title = a.summary;
    tr.addEventListener("click", () => selectAlert(a.alert_id));
    return tr;
  });
  document.querySelector("#alerts tbody").replaceChildren(...rows);
  if (first && body.alerts.length && !view.alertId) selectAlert(body.alerts[0].alert_id);
  if (first || Date.now() - view.stripAt > STRIP_REFRESH_MS) loadStrip();
}

async function loadStrip() {
  const stream = view.stream;
  view.stripAt = Date.now();
  const { body } = await getJSON("/api/strip?stream=" + encodeURIComponent(stream));
  if (stream !== view.stream) return;
  document.getElementById("strip-note").textContent = body.refused ||
    (body.beats && body.beats.length ? `last ${body.beats.length} beats, alerted ones in red` : "no beats found");
  const strip = document.getElementById("strip");
  strip.replaceChildren(...(body.beats || []).map((b) => {
    const box = svg("svg", { width: 84, height: 44, viewBox: "0 0 84 44",
      class: "strip-beat" + (b.alerted ? " alerted" : "") });
    box.dataset.seq = b.seq;
    const lo = Math.min(...b.samples), hi = Math.max(...b.samples);
    const span = hi - lo || 1;
    const points = b.samples.map((v, i) =>
      `${(2 + (80 * i) / (b.samples.length - 1)).toFixed(1)},${(2 + (40 * (hi - v)) / span).toFixed(1)}`);
    box.append(svg("polyline", { points: points.join(" ") }));
    const title = svg("title");
    title.textContent = `beat ${b.seq} · score ×${fmt(b.score_ratio, 3)}${b.alerted ? " · alerted" : ""}`;
    box.append(title);
    if (b.alerted) {
      box.addEventListener("click", () => {
        const alert = view.alerts.find((a) => a.partition === b.partition && a.offset === b.offset);
        if (alert) selectAlert(alert.alert_id);
      });
    }
    return box;
  }));
}

// ---- one alert -----------------------------------------------------------------

async function selectAlert(alertId) {
  view.alertId = alertId;
  for (const tr of document.querySelectorAll("#alerts tbody tr")) {
    tr.classList.toggle("selected", tr.dataset.alertId === alertId);
  }
  document.getElementById("alert-title").textContent = "loading…";
  const url = `/api/alert?stream=${encodeURIComponent(view.stream)}&id=${encodeURIComponent(alertId)}`;
  const { status, body } = await getJSON(url);
  if (alertId !== view.alertId) return;
  const refusal = document.getElementById("refusal");
  const beat = document.getElementById("beat");
  if (status !== 200) {
    document.getElementById("alert-title").textContent = "alert no longer held";
    return;
  }
  const a = body.alert;
  document.getElementById("alert-title").textContent = `${a.stream} · beat ${a.seq}`;
  if (body.refused) {
    refusal.textContent = body.refused;
    refusal.hidden = false;
    beat.replaceChildren();
    beat.dataset.drawn = "";
    renderMeta(a, null);
    return;
  }
  refusal.hidden = true;
  drawBeat(beat, body);
  renderMeta(a, body);
}

function renderMeta(a, detail) {
  const rows = [
    ["score (alert)", fmt(a.score)],
    ["score (re-scored here)", detail ? fmt(detail.score) : "–"],
    ["threshold", fmt(a.threshold)],
    ["score / threshold", fmt(a.score_ratio, 3)],
    ["p-value", fmt(a.p_value, 3)],
    ["model version", a.model_version],
    ["beat time", a.ts_ms ? new Date(a.ts_ms).toLocaleString() : "–"],
    ["detected", a.detected_ts_ms ? new Date(a.detected_ts_ms).toLocaleString() : "–"],
    ["beats topic", `partition ${a.partition}, offset ${a.offset}`],
    ["where", detail ? detail.summary : a.summary],
  ];
  document.getElementById("alert-meta").replaceChildren(...rows.map(([k, v]) => {
    const tr = el("tr");
    tr.append(el("th", k), el("td", v));
    return tr;
  }));
}

// Draws the beat and its reconstruction over the same scale, the per-sample
// error as shading between them (and bars along the bottom), the regions as
// bands. The scale is written on the <svg> (data-vmin, data-vmax) so the
// drawing can be checked against the data.
function drawBeat(root, d) {
  const n = d.samples.length;
  const all = d.samples.concat(d.reconstruction);
  let vmin = Math.min(...all), vmax = Math.max(...all);
  if (vmax === vmin) { vmin -= 1; vmax += 1; }
  const x = (i) => PLOT.left + (PLOT.width * i) / (n - 1);
  const y = (v) => PLOT.top + (PLOT.height * (vmax - v)) / (vmax - vmin);
  const step = PLOT.width / (n - 1);
  const nodes = [];
  d.regions.forEach((r, k) => {
    const x0 = x(Math.max(0, r.start - 0.5)), x1 = x(Math.min(n - 1, r.end - 0.5));
    nodes.push(svg("rect", { class: "region", x: x0, y: PLOT.top, width: Math.max(0, x1 - x0),
      height: PLOT.height, fill: REGION_COLOURS[k % REGION_COLOURS.length], "data-region": r.name }));
    const label = svg("text", { class: "region-label", x: x0 + 3, y: PLOT.top - 6 });
    label.textContent = r.name;
    nodes.push(label);
  });
  const maxErr = Math.max(...d.error) || 1;
  d.error.forEach((e, i) => {
    const top = Math.min(y(d.samples[i]), y(d.reconstruction[i]));
    const h = Math.abs(y(d.samples[i]) - y(d.reconstruction[i]));
    nodes.push(svg("rect", { class: "err", x: x(i) - step / 2, y: top, width: step, height: Math.max(h, 0.5),
      "fill-opacity": (0.1 + 0.7 * e / maxErr).toFixed(3), "data-error": e }));
    const bar = 22 * e / maxErr;
    nodes.push(svg("rect", { class: "err-bar", x: x(i) - step / 2, y: 318 - bar, width: step, height: bar }));
  });
  nodes.push(svg("line", { class: "axis", x1: PLOT.left, y1: PLOT.top + PLOT.height, x2: PLOT.left + PLOT.width, y2: PLOT.top + PLOT.height }));
  for (const v of [vmin, (vmin + vmax) / 2, vmax]) {
    const tick = svg("text", { class: "tick", x: 2, y: y(v) + 3 });
    tick.textContent = v.toFixed(2);
    nodes.push(tick);
  }
  const path = (values) => values.map((v, i) => `${i ? "L" : "M"}${x(i).toFixed(3)} ${y(v).toFixed(3)}`).join(" ");
  nodes.push(svg("path", { id: "beat-path", d: path(d.samples) }));
  nodes.push(svg("path", { id: "recon-path", d: path(d.reconstruction) }));
  root.replaceChildren(...nodes);
  Object.assign(root.dataset, { vmin, vmax, left: PLOT.left, top: PLOT.top, width: PLOT.width,
    height: PLOT.height, drawn: d.alert.alert_id });
}

connect();
