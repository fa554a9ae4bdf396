// restlake live dashboard: reads the JSON API of this service and renders it.
// Every value is written with textContent (text from an API is data, never markup), and
// no request leaves this service.
"use strict";

// ?refresh=N seconds, within 5 s .. 1 h (setInterval overflows past 2^31 ms and then fires at
// once, again and again); anything that is not a positive number means the default.
const REFRESH_DEFAULT_S = 30, REFRESH_MIN_S = 5, REFRESH_MAX_S = 3600;

function refreshSeconds(text) {
  const n = Number(text);
  if (text === null || text === "" || !Number.isFinite(n) || n <= 0) return REFRESH_DEFAULT_S;
  return Math.min(REFRESH_MAX_S, Math.max(REFRESH_MIN_S, Math.round(n)));
}

const REFRESH_S = refreshSeconds(new URLSearchParams(location.search).get("refresh"));
const KEY_STORE = "restlake-api-key";

function apiKey() { return sessionStorage.getItem(KEY_STORE) || ""; }

class Unauthorized extends Error {}

async function getJson(path) {
  const headers = { "Accept": "application/json" };
  if (apiKey()) headers["X-API-Key"] = apiKey();
  const resp = await fetch(path, { headers, cache: "no-store" });
  if (resp.status === 401) throw new Unauthorized("API key needed");
  const body = await resp.json();
  if (!resp.ok) throw new Error(`${path}: ${body.detail || resp.status}`);
  return body;
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function fmtTime(iso) {
  if (!iso) return "—";
  return iso.replace("T", " ").replace(/\.\d+/, "").replace("Z", "Z");
}

function fmtPct(v) { return v === null || v === undefined ? "—" : `${Number(v).toFixed(2)}%`; }

function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const m = Math.floor(seconds / 60), h = Math.floor(m / 60), d = Math.floor(h / 24);
  if (d) return `${d}d ${h % 24}h`;
  if (h) return `${h}h ${m % 60}m`;
  if (m) return `${m}m`;
  return `${Math.round(seconds)}s`;
}

function badge(text, cls) { return el("span", text, `badge ${cls || text}`); }

function fillTable(sectionId, rows, makeRow, emptyText) {
  const section = document.getElementById(sectionId);
  const body = section.querySelector("tbody");
  const cols = section.querySelectorAll("thead th").length;
  body.replaceChildren();
  if (!rows.length) {
    const tr = el("tr", null, "empty");
    const td = el("td", emptyText);
    td.colSpan = cols;
    tr.appendChild(td);
    body.appendChild(tr);
  }
  for (const row of rows) body.appendChild(makeRow(row));
  section.dataset.rows = String(rows.length);
}

function cells(tr, values) {
  for (const v of values) {
    if (v instanceof Node) { const td = el("td"); td.appendChild(v); tr.appendChild(td); }
    else if (v && typeof v === "object" && "text" in v) tr.appendChild(el("td", v.text, v.cls));
    else tr.appendChild(el("td", v));
  }
  return tr;
}

function sparkline(points) {
  const ns = "http://www.w3.org/2000/svg", w = 120, h = 24;
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("width", w); svg.setAttribute("height", h);
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("role", "img");
  const values = points.map(p => Number(p.uptime_pct));
  svg.setAttribute("aria-label", values.length ? `uptime by hour: ${values.join(", ")}` : "no checks");
  if (!values.length) return svg;
  const step = values.length > 1 ? (w - 4) / (values.length - 1) : 0;
  const xy = values.map((v, i) => `${(2 + i * step).toFixed(1)},${(2 + (100 - v) / 100 * (h - 4)).toFixed(1)}`);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", values.length > 1 ? xy.join(" ") : `${xy[0]} ${w - 2},${xy[0].split(",")[1]}`);
  line.setAttribute("fill", "none");
  line.setAttribute("stroke-width", "1.5");
  const last = values[values.length - 1];
  line.setAttribute("stroke", last >= 99 ? "#16a34a" : last >= 90 ? "#d97706" : "#dc2626");
  svg.appendChild(line);
  return svg;
}

function renderHeadline(summary, sources) {
  const h = summary.health || {};
  const cards = [
    ["sources", summary.sources, "ok"],
    ["sources down", h.sources_down ?? 0, (h.sources_down ?? 0) ? "bad" : "ok"],
    ["open incidents", h.open_incidents ?? 0, (h.open_incidents ?? 0) ? "bad" : "ok"],
    ["stale sources", summary.stale, summary.stale ? "warn" : "ok"],
    ["failed loads 24h", summary.failed_loads_24h, summary.failed_loads_24h ? "bad" : "ok"],
    ["uptime 24h", fmtPct(h.uptime_pct_24h), (h.uptime_pct_24h ?? 100) >= 99 ? "ok" : "warn"],
    ["p95 response 24h", h.p95_ms_24h === null || h.p95_ms_24h === undefined ? "—" : `${h.p95_ms_24h} ms`, ""],
  ];
  const box = document.getElementById("headline");
  box.replaceChildren();
  for (const [label, value, cls] of cards) {
    const card = el("div", null, `card ${cls}`);
    card.appendChild(el("div", value, "value"));
    card.appendChild(el("div", label, "label"));
    box.appendChild(card);
  }
}

function renderSources(items) {
  fillTable("sources", items, s => {
    const tr = el("tr");
    tr.dataset.configId = s.config_id;
    const name = el("div");
    name.appendChild(el("strong", s.config_id));
    name.appendChild(el("div", s.target, "muted"));
    const state = el("div");
    state.appendChild(badge(s.status || "NEW", s.status || ""));
    if (!s.enabled) state.appendChild(el("div", "disabled", "muted"));
    state.appendChild(el("div", s.load_type, "muted"));
    const last = el("div");
    if (s.last_load) {
      last.appendChild(badge(s.last_load.status, s.last_load.status));
      last.appendChild(el("div", fmtTime(s.last_load.logged_at), "muted"));
    } else last.textContent = "—";
    const fresh = el("div");
    if (s.freshness) {
      fresh.appendChild(badge(s.freshness.stale ? "stale" : "fresh"));
      fresh.appendChild(el("div", s.freshness.reason, "muted"));
    } else fresh.textContent = "—";
    return cells(tr, [name, state, last, { text: s.rows ?? "—", cls: "num" }, fresh,
      { text: fmtPct(s.uptime["24h"]), cls: "num" }, { text: fmtPct(s.uptime["7d"]), cls: "num" },
      { text: fmtPct(s.uptime["30d"]), cls: "num" }, sparkline(s.sparkline || [])]);
  }, "no sources yet: POST a config to /api/v1/sources or run 'restlake generate'");
}

function renderIncidents(items) {
  fillTable("incidents", items, i => cells(el("tr"), [
    i.config_id, fmtTime(i.started_at), fmtDuration(i.duration_s), { text: i.failed_checks, cls: "num" },
    { text: i.last_error || "", cls: "error-text" }]), "no open incident");
}

function renderFailures(items) {
  fillTable("failures", items, a => cells(el("tr"), [
    fmtTime(a.LoggedAt), a.ConfigId, a.LoadType, badge(a.LoadStatus, a.LoadStatus),
    { text: a.ErrorMessage || "", cls: "error-text" }]), "no failed load");
}

function renderStale(items) {
  fillTable("stale", items, f => cells(el("tr"), [
    f.config_id, f.target, f.frequency, fmtTime(f.newest_collected_at), f.reason]), "every source is fresh");
}

function showError(text) {
  const box = document.getElementById("error");
  box.hidden = !text;
  box.textContent = text || "";
}

async function refresh() {
  try {
    const health = await getJson("/health");
    document.getElementById("service-state").textContent =
      `restlake ${health.version} · warehouse ${health.warehouse.readable ? "readable" : "NOT readable"}` +
      (health.scheduler && health.scheduler.attached === false ? " · no scheduler" : " · scheduler attached");
    const summary = await getJson("/api/v1/stats/summary");
    // the failed loads the headline counts: the same statuses, since the same instant
    const since = encodeURIComponent(summary.loads_since);
    const [sources, incidents, failed, stale] = await Promise.all([
      getJson("/api/v1/sources?limit=500"), getJson("/api/v1/incidents?open=true&limit=100"),
      getJson(`/api/v1/loads?failed=true&since=${since}&limit=20`), getJson("/api/v1/stale?limit=500")]);
    renderHeadline(summary, sources.items);
    renderSources(sources.items);
    renderIncidents(incidents.items);
    renderFailures(failed.items);
    renderStale(stale.items);
    document.getElementById("key-form").hidden = true;
    showError("");
    document.getElementById("refreshed-at").textContent = fmtTime(new Date().toISOString());
    document.body.dataset.state = "ready";
  } catch (err) {
    if (err instanceof Unauthorized) {
      document.getElementById("key-form").hidden = false;
      showError(apiKey() ? "the API key was refused" : "");
      document.body.dataset.state = "needs-key";
    } else {
      showError(String(err.message || err));
      document.body.dataset.state = "error";
    }
  }
}

document.getElementById("key-form").addEventListener("submit", ev => {
  ev.preventDefault();
  sessionStorage.setItem(KEY_STORE, document.getElementById("api-key").value.trim());
  document.getElementById("api-key").value = "";
  refresh();
});
document.getElementById("refresh-s").textContent = String(REFRESH_S);
refresh();
setInterval(refresh, REFRESH_S * 1000);
