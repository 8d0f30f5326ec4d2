// The network overview: totals, banks grouped by region, a map of the banks; polled every 5 s.
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
  const status = (bank.online
    ? `<span class="pill ok">online</span>`
    : `<span class="pill off">offline</span>`) +
    (bank.maintenance ? ` <span class="pill maintenance">maintenance</span>` : "");
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

// ---- The map: Leaflet (from npm, static/vendor/leaflet), circles coloured by occupancy and state.
// The tile server is a setting (the element's data-tile-url; empty: no tiles). Without tiles, or
// with the tile server unreachable, the circles, popups and legend work on a plain background.
const Leaflet = globalThis.L;
const mapStatus = document.getElementById("map-status");
// Beyond this many banks on the map their circles leave the Tab order (the tables list them all):
// a thousand tab stops before the tables would make the page unusable from the keyboard.
const MAX_FOCUSABLE = 100;
const STATE_CLASSES = ["occ-low", "occ-mid", "occ-high", "occ-offline", "is-offline", "is-maintenance"];
let map = null;
let markerLayer = null;
const markers = new Map(); // bank id -> { marker, classes, popup, label }
let fittedKey = "";
let openBank = null;

function createMap() {
  // A view from the start: Leaflet adds layers (and makes their elements) only once it has one.
  const created = Leaflet.map(mapBox, { maxZoom: 19, zoomSnap: 0.5 }).setView([20, 0], 1);
  const url = mapBox.dataset.tileUrl;
  if (url) {
    let failed = false;
    Leaflet.tileLayer(url, {
      attribution: mapBox.dataset.attribution || "",
      maxZoom: 19,
      // The pages send no Referer elsewhere; a tile server (OpenStreetMap's requires one) gets
      // this site's origin only, never a dashboard path.
      referrerPolicy: "strict-origin-when-cross-origin",
    })
      .on("tileerror", () => {
        if (failed) return;
        failed = true;
        mapBox.classList.add("tiles-failed");
        mapStatus.textContent = "The map tiles could not be loaded: the banks are shown on a plain background.";
      })
      .on("tileload", () => {
        if (!failed) return;
        failed = false;
        mapBox.classList.remove("tiles-failed");
        mapStatus.textContent = "";
      })
      .addTo(created);
  } else {
    mapBox.classList.add("no-tiles");
    mapStatus.textContent = "Map tiles are off: the banks are shown on a plain background.";
  }
  created.on("popupopen", (event) => { openBank = event.popup.options.bankId || null; });
  created.on("popupclose", () => { openBank = null; });
  markerLayer = Leaflet.layerGroup().addTo(created);
  // Escape closes a popup and gives the focus back to its bank's circle (Leaflet's own Escape
  // handling works only while the map itself has the focus).
  mapBox.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || !openBank) return;
    const entry = markers.get(openBank);
    created.closePopup();
    if (entry) entry.marker.getElement()?.focus();
  });
  return created;
}

function bankState(bank) {
  const classes = [occupancyClass(bank.occupancy_pct, bank.online)];
  if (!bank.online) classes.push("is-offline");
  if (bank.maintenance) classes.push("is-maintenance");
  return classes;
}

function maintenanceText(maintenance) {
  if (!maintenance || typeof maintenance !== "object") return "in maintenance";
  const until = maintenance.until ? `, expected to end ${fmtTime(maintenance.until)}` : "";
  return `in maintenance${maintenance.reason ? `: ${maintenance.reason}` : ""}${until}`;
}

function markerLabel(bank) {
  const states = [bank.online ? "online" : "offline"];
  if (bank.maintenance) states.push("in maintenance");
  const alerts = bank.open_alerts ? `, ${bank.open_alerts} open alert${bank.open_alerts === 1 ? "" : "s"}` : "";
  return `${bank.name} (${bank.id}): ${fmtPct(bank.occupancy_pct)} occupied, ${states.join(", ")}${alerts}`;
}

function popupHtml(bank) {
  const href = `/ops/banks/${encodeURIComponent(bank.id)}`;
  const rows = CLASS_ORDER.filter((size) => bank.classes && bank.classes[size] && bank.classes[size].total)
    .map((size) => {
      const c = bank.classes[size];
      return `<tr data-class="${size}"><th scope="row">${size}</th><td>${c.occupied}</td><td>${c.reserved}</td><td>${c.free}</td><td>${c.total}</td></tr>`;
    });
  const status = bank.online ? `<span class="pill ok">online</span>` : `<span class="pill off">offline</span>`;
  const maintenance = bank.maintenance
    ? ` <span class="pill maintenance" data-maintenance>${esc(maintenanceText(bank.maintenance))}</span>`
    : "";
  const alerts = bank.open_alerts
    ? `<a href="/ops/alerts?bank_id=${encodeURIComponent(bank.id)}">${bank.open_alerts} open alert${bank.open_alerts === 1 ? "" : "s"}</a>`
    : "no open alerts";
  const table = rows.length
    ? `<table class="popup-classes"><caption class="visually-hidden">Compartments by size</caption><thead><tr><th scope="col">Size</th><th scope="col"><abbr title="occupied">Occ.</abbr></th><th scope="col"><abbr title="reserved">Res.</abbr></th><th scope="col">Free</th><th scope="col">Total</th></tr></thead><tbody>${rows.join("")}</tbody></table>`
    : `<p class="muted">No compartments.</p>`;
  return `<div class="bank-popup" data-bank="${esc(bank.id)}">` +
    `<p class="popup-title"><a href="${href}" data-bank-link>${esc(bank.name)}</a></p>` +
    `<p class="sub">${esc(bank.id)} · ${esc(bank.address || "")}</p>` +
    `<p>${status}${maintenance}</p>${table}` +
    `<p><span data-occupancy>${fmtPct(bank.occupancy_pct)} occupied</span> · <span data-alerts>${alerts}</span></p>` +
    `<p><a href="${href}">Open the bank's page</a></p></div>`;
}

// Enter or Space on a focused circle opens its popup and moves the focus into it.
function wireMarkerKeys(marker, element) {
  element.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" && event.key !== " ") return;
    event.preventDefault();
    marker.openPopup();
    marker.getPopup().getElement()?.querySelector("[data-bank-link]")?.focus();
  });
}

function addMarker(bank, radius) {
  const marker = Leaflet.circleMarker([bank.lat, bank.lon], {
    radius,
    weight: 2,
    fillOpacity: 0.9,
    className: "bank-marker",
  });
  // The popup fits the map's narrow column, clear of the zoom buttons at the top left.
  marker.bindPopup("", {
    bankId: bank.id,
    maxWidth: 210,
    minWidth: 170,
    autoPanPaddingTopLeft: [48, 8],
    autoPanPaddingBottomRight: [8, 8],
  });
  marker.addTo(markerLayer);
  const element = marker.getElement();
  element.setAttribute("role", "button");
  element.dataset.bank = bank.id;
  wireMarkerKeys(marker, element);
  const entry = { marker, classes: [], popup: "", label: "" };
  markers.set(bank.id, entry);
  return entry;
}

function updateMarker(entry, bank, radius, focusable) {
  const { marker } = entry;
  const element = marker.getElement();
  const classes = bankState(bank);
  if (classes.join(" ") !== entry.classes.join(" ")) {
    element.classList.remove(...STATE_CLASSES);
    element.classList.add(...classes);
    entry.classes = classes;
  }
  element.dataset.occupancy = String(bank.occupancy_pct);
  element.dataset.state = !bank.online ? "offline" : bank.maintenance ? "maintenance" : "online";
  element.setAttribute("tabindex", focusable ? "0" : "-1");
  const label = markerLabel(bank);
  if (label !== entry.label) {
    element.setAttribute("aria-label", label);
    entry.label = label;
  }
  const popup = popupHtml(bank);
  if (popup !== entry.popup) {
    marker.setPopupContent(popup);
    entry.popup = popup;
  }
  const position = marker.getLatLng();
  if (position.lat !== bank.lat || position.lng !== bank.lon) marker.setLatLng([bank.lat, bank.lon]);
  if (marker.getRadius() !== radius) marker.setRadius(radius);
}

// Banks on the map: only circles whose figures changed are touched, and the view is fitted to the
// banks only when the set shown changes (a filter), never on a poll, so a pan or zoom stays.
function renderMap(banks) {
  if (!Leaflet) {
    mapBox.innerHTML = `<p class="muted">The map could not load (its script is missing); the tables list every bank.</p>`;
    return;
  }
  if (!map) map = createMap();
  const placed = banks.filter((b) => Number.isFinite(b.lat) && Number.isFinite(b.lon));
  const radius = placed.length > 500 ? 4 : placed.length > 50 ? 6 : 8;
  const focusable = placed.length <= MAX_FOCUSABLE;
  const shown = new Set(placed.map((b) => b.id));
  for (const [id, entry] of markers) {
    if (!shown.has(id)) {
      markerLayer.removeLayer(entry.marker);
      markers.delete(id);
    }
  }
  for (const bank of placed) updateMarker(markers.get(bank.id) || addMarker(bank, radius), bank, radius, focusable);
  mapBox.dataset.markers = String(placed.length);
  const key = [...shown].sort().join("\n");
  if (key !== fittedKey && placed.length) {
    const bounds = Leaflet.latLngBounds(placed.map((b) => [b.lat, b.lon]));
    map.fitBounds(bounds, { padding: [24, 24], maxZoom: 15, animate: false });
  } else if (!placed.length) {
    map.setView([20, 0], 1, { animate: false });
  }
  fittedKey = key;
  const keys = focusable ? "" : " Filter to 100 or fewer to reach them with the Tab key.";
  mapBox.setAttribute("aria-label", `Map of ${placed.length} bank${placed.length === 1 ? "" : "s"}.${keys}`);
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
