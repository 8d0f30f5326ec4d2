// The network overview: totals, banks grouped by region, a location plot; polled every 5 s.
// Recipient notices that failed or wait for another try show beside the totals.
import { api, esc, fmtPct, fmtTime, occupancyClass, poll, stackBar } from "./ops.js";

const CLASS_ORDER = ["S", "M", "L", "XL"];
const controls = {
  q: document.getElementById("filter-q"),
  status: document.getElementById("filter-status"),
  sort: document.getElementById("sort-by"),
  order: document.getElementById("sort-order"),
};
const totalsBox = document.getElementById("totals");
const regionsBox = document.getElementById("regions");
const mapBox = document.getElementById("bank-map");
const shownCount = document.getElementById("shown-count");

let latest = null;
let lastKey = "";
let notices = null; // /ops/api/overview/notices: network-wide, whatever the filter

// The filter lives in the address, so a view can be bookmarked and survives a reload.
function readParams() {
  const params = new URLSearchParams(location.search);
  controls.q.value = params.get("q") || "";
  controls.status.value = params.get("status") || "all";
  controls.sort.value = params.get("sort") || "name";
  controls.order.value = params.get("order") || "asc";
}

function writeParams() {
  const params = new URLSearchParams();
  if (controls.q.value) params.set("q", controls.q.value);
  if (controls.status.value !== "all") params.set("status", controls.status.value);
  if (controls.sort.value !== "name") params.set("sort", controls.sort.value);
  if (controls.order.value !== "asc") params.set("order", controls.order.value);
  const query = params.toString();
  history.replaceState(null, "", query ? `?${query}` : location.pathname);
}

function tile(label, key, value, extra = "", warn = false) {
  return `<div${warn ? ` class="warn"` : ""}><dt>${label}</dt><dd data-total="${esc(key)}">${esc(value)}</dd>${extra}</div>`;
}

// A channel in trouble (the SMTP server down, Twilio refusing) shows here: notices that failed
// in the last 24 hours, and those waiting for another try after a failed attempt.
function noticeTiles() {
  if (!notices) return "";
  const since = notices.waiting_since ? `<dd class="sub">since ${esc(fmtTime(notices.waiting_since))}</dd>` : "";
  return tile("Notices failed (24 h)", "notices_failed", notices.failed_last_24h, "", notices.failed_last_24h > 0) +
    tile("Notices waiting", "notices_waiting", notices.waiting, since, notices.waiting > 0);
}

function renderTotals(t) {
  const items = [
    ["Banks", t.banks],
    ["Online", t.online],
    ["Offline", t.offline],
    ["Compartments", t.compartments],
    ["Free", t.free],
    ["Reserved", t.reserved],
    ["Occupied", t.occupied],
    ["Out of service", t.out_of_service],
    ["Open alerts", t.open_alerts],
    ["Occupancy", fmtPct(t.occupancy_pct)],
  ];
  totalsBox.innerHTML = items
    .map(([label, value]) => tile(label, label.toLowerCase().replaceAll(" ", "_"), value))
    .join("") + noticeTiles();
  totalsBox.setAttribute("aria-busy", "false");
}

function matches(bank, q, status) {
  if (status === "online" && !bank.online) return false;
  if (status === "offline" && bank.online) return false;
  if (!q) return true;
  const hay = `${bank.id} ${bank.name} ${bank.address || ""}`.toLowerCase();
  return hay.includes(q);
}

function comparator(sort, order) {
  const sign = order === "desc" ? -1 : 1;
  const byName = (a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id);
  if (sort === "occupancy") return (a, b) => sign * (a.occupancy_pct - b.occupancy_pct) || byName(a, b);
  if (sort === "alerts") return (a, b) => sign * (a.open_alerts - b.open_alerts) || byName(a, b);
  return (a, b) => sign * byName(a, b);
}

function classCells(classes) {
  return CLASS_ORDER.map((size) => {
    const c = classes && classes[size];
    if (!c || !c.total) return `<td class="cls empty">—</td>`;
    const used = (c.occupied || 0) + (c.reserved || 0);
    return `<td class="cls" data-class="${size}" data-occupied="${c.occupied}" data-reserved="${c.reserved}" data-free="${c.free}">` +
      `${stackBar(c, 64, 8)}<span class="num">${used}/${c.total}</span></td>`;
  }).join("");
}

function bankRow(bank) {
  const status = bank.online
    ? `<span class="pill ok">online</span>`
    : `<span class="pill off">offline</span>`;
  const alerts = bank.open_alerts
    ? `<a class="pill alert" href="/ops/alerts?bank_id=${encodeURIComponent(bank.id)}">${bank.open_alerts}</a>`
    : `<span class="muted">0</span>`;
  return `<tr data-bank="${esc(bank.id)}">` +
    `<th scope="row"><a href="/ops/banks/${encodeURIComponent(bank.id)}">${esc(bank.name)}</a><div class="sub">${esc(bank.id)} · ${esc(bank.address || "")}</div></th>` +
    `<td>${status}</td>${classCells(bank.classes)}` +
    `<td class="pct ${occupancyClass(bank.occupancy_pct, true)}" data-occupancy="${bank.occupancy_pct}">${fmtPct(bank.occupancy_pct)}</td>` +
    `<td class="alerts" data-alerts="${bank.open_alerts}">${alerts}</td></tr>`;
}

const HEAD = `<thead><tr><th scope="col">Bank</th><th scope="col">Status</th>${CLASS_ORDER.map((s) => `<th scope="col" class="cls">${s}</th>`).join("")}<th scope="col">Occupancy</th><th scope="col">Alerts</th></tr></thead>`;

// A region shows its first ROWS_PER_REGION banks (in the chosen order) until the operator asks
// for all of them: laying out thousands of table rows costs the browser far more than the data.
const ROWS_PER_REGION = 100;
const expanded = new Set();
let renderedRows = new Map(); // bank id -> the row's HTML as last rendered
let renderedLayout = "";      // what the current DOM shows: regions, their bank ids, in order

function layoutOf(groups) {
  return JSON.stringify(groups.map((g) => [g.name, g.total, g.banks.map((b) => b.id)]));
}

function renderRegions(regions) {
  const q = controls.q.value.trim().toLowerCase();
  const status = controls.status.value;
  const compare = comparator(controls.sort.value, controls.order.value);
  const groups = [];
  let shown = 0;
  let all = 0;
  const visible = [];
  for (const region of regions) {
    all += region.banks.length;
    const banks = region.banks.filter((b) => matches(b, q, status)).sort(compare);
    if (!banks.length) continue;
    shown += banks.length;
    visible.push(...banks);
    const limit = expanded.has(region.name) ? banks.length : ROWS_PER_REGION;
    groups.push({ name: region.name, total: banks.length, banks: banks.slice(0, limit) });
  }
  const rows = new Map();
  for (const group of groups) for (const bank of group.banks) rows.set(bank.id, bankRow(bank));
  const layout = layoutOf(groups);
  if (layout === renderedLayout) {
    // The same banks in the same places: replace only the rows whose figures changed.
    for (const [id, html] of rows) {
      if (renderedRows.get(id) !== html) {
        const row = regionsBox.querySelector(`tr[data-bank="${CSS.escape(id)}"]`);
        if (row) row.outerHTML = html;
      }
    }
  } else {
    regionsBox.innerHTML = groups.length
      ? groups.map((group, index) => regionHtml(group, index, rows)).join("")
      : `<p class="muted">No bank matches.</p>`;
  }
  renderedRows = rows;
  renderedLayout = layout;
  regionsBox.setAttribute("aria-busy", "false");
  shownCount.textContent = `${shown} of ${all} banks`;
  renderMap(visible);
}

function regionHtml(group, index, rows) {
  const id = `region-${index}`;
  const hidden = group.total - group.banks.length;
  const more = hidden > 0
    ? `<p class="more"><button type="button" class="button small" data-expand="${esc(group.name)}">Show all ${group.total} banks in ${esc(group.name)}</button> <span class="muted">${hidden} more not shown</span></p>`
    : "";
  return `<section class="region card" aria-labelledby="${id}"><h3 id="${id}">${esc(group.name)} <span class="muted">${group.total} bank${group.total === 1 ? "" : "s"}</span></h3>` +
    `<div class="table-wrap"><table class="data banks">${HEAD}<tbody>${group.banks.map((b) => rows.get(b.id)).join("")}</tbody></table></div>${more}</section>`;
}

regionsBox.addEventListener("click", (event) => {
  const button = event.target.closest("[data-expand]");
  if (!button) return;
  expanded.add(button.dataset.expand);
  render();
});

// Banks placed by longitude and latitude (equirectangular, scaled at the middle latitude).
function renderMap(banks) {
  const placed = banks.filter((b) => typeof b.lat === "number" && typeof b.lon === "number");
  if (!placed.length) {
    mapBox.innerHTML = `<p class="muted">No located banks.</p>`;
    return;
  }
  let minLat = Infinity, maxLat = -Infinity, minLon = Infinity, maxLon = -Infinity;
  for (const b of placed) {
    minLat = Math.min(minLat, b.lat); maxLat = Math.max(maxLat, b.lat);
    minLon = Math.min(minLon, b.lon); maxLon = Math.max(maxLon, b.lon);
  }
  const kx = Math.cos(((minLat + maxLat) / 2) * Math.PI / 180) || 1;
  // A lone bank, or banks in one street, would otherwise fill the plot from one corner.
  const spanX = Math.max((maxLon - minLon) * kx, 0.02);
  const spanY = Math.max(maxLat - minLat, 0.02);
  const midLon = (minLon + maxLon) / 2;
  const midLat = (minLat + maxLat) / 2;
  const width = 400;
  const height = Math.max(180, Math.min(320, (width * spanY) / spanX));
  const pad = 12;
  const r = placed.length > 500 ? 2.5 : placed.length > 50 ? 4 : 6;
  const scale = Math.min((width - 2 * pad) / spanX, (height - 2 * pad) / spanY);
  const project = (b) => [
    width / 2 + (b.lon - midLon) * kx * scale,
    height / 2 - (b.lat - midLat) * scale,
  ];
  const dots = placed.map((b) => {
    const [x, y] = project(b);
    return `<a href="/ops/banks/${encodeURIComponent(b.id)}" tabindex="-1"><circle class="${occupancyClass(b.occupancy_pct, b.online)}" cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="${r}"><title>${esc(b.name)} (${esc(b.id)}): ${fmtPct(b.occupancy_pct)}${b.online ? "" : ", offline"}</title></circle></a>`;
  });
  const range = (lo, hi) => (lo === hi ? lo.toFixed(2) : `${lo.toFixed(2)} to ${hi.toFixed(2)}`);
  const extent = `latitude ${range(minLat, maxLat)}, longitude ${range(minLon, maxLon)}`;
  mapBox.innerHTML = `<svg viewBox="0 0 ${width} ${height.toFixed(0)}" role="img" aria-label="${placed.length} banks by location, coloured by occupancy"><rect class="map-bg" width="${width}" height="${height.toFixed(0)}" rx="6"/>${dots.join("")}</svg>` +
    `<p class="sub">${placed.length} bank${placed.length === 1 ? "" : "s"} · ${extent}</p>`;
}

function render() {
  if (!latest) return;
  renderTotals(latest.totals);
  renderRegions(latest.regions);
}

async function refresh() {
  const data = await api("GET", "/ops/api/overview?status=all&sort=name&order=asc");
  // Rebuilding 2,000 rows when nothing changed would only cost the browser: compare first.
  const key = JSON.stringify([data.totals, data.regions]);
  latest = data;
  if (key === lastKey) return;
  lastKey = key;
  render();
}

readParams();
let typing = null;
controls.q.addEventListener("input", () => {
  clearTimeout(typing);
  typing = setTimeout(() => { writeParams(); render(); }, 120);
});
for (const control of [controls.status, controls.sort, controls.order]) {
  control.addEventListener("change", () => { writeParams(); render(); });
}
document.getElementById("overview-filters").addEventListener("submit", (e) => e.preventDefault());
poll(refresh);
// Its own request, and less often: one cheap count, not worth a round trip every 5 s.
let noticesKey = "";
poll(async () => {
  notices = await api("GET", "/ops/api/overview/notices");
  const key = JSON.stringify([notices.failed_last_24h, notices.waiting, notices.waiting_since]);
  if (key === noticesKey) return;
  noticesKey = key;
  if (latest) renderTotals(latest.totals);
}, 15000);
