// Fleet health: the nodes per software version and each bank's node (uptime, disk, temperatures,
// power, last heartbeat, open health alerts); sorted and filtered here, polled every 5 s.
import { api, esc, poll, timeTag } from "./ops.js";
import { alertWords } from "./words.js";

const controls = {
  q: document.getElementById("fleet-q"),
  status: document.getElementById("fleet-status"),
  show: document.getElementById("fleet-show"),
  version: document.getElementById("fleet-version"),
  sort: document.getElementById("fleet-sort"),
  order: document.getElementById("fleet-order"),
};
const DEFAULTS = { q: "", status: "all", show: "all", version: "", sort: "bank", order: "asc" };
const totalsBox = document.getElementById("fleet-totals");
const versionsBody = document.getElementById("fleet-versions");
const rowsBody = document.getElementById("fleet-rows");
const shownCount = document.getElementById("fleet-shown");
const limitsBox = document.getElementById("fleet-limits");
const moreBox = document.getElementById("fleet-more");
const hiddenCount = document.getElementById("fleet-hidden");
// Laying out thousands of rows costs the browser far more than the data: the first ROWS until
// the operator asks for all.
const ROWS = 200;
let showAll = false;
let latest = null;
let lastKey = "";

// ---- Units: seconds as days and hours, bytes in GB (10^9), temperatures in °C.
export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.max(0, Number(seconds));
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

export function fmtBytes(bytes) {
  if (bytes === null || bytes === undefined) return "—";
  const b = Number(bytes);
  if (b >= 1e9) return `${(b / 1e9).toFixed(1)} GB`;
  if (b >= 1e6) return `${Math.round(b / 1e6)} MB`;
  return `${Math.round(b / 1e3)} kB`;
}

function fmtTemp(value) {
  return value === null || value === undefined ? "—" : `${Number(value).toFixed(1)} °C`;
}

// The filter lives in the address, so a view can be bookmarked and survives a reload.
function readParams() {
  const params = new URLSearchParams(location.search);
  for (const [key, input] of Object.entries(controls)) {
    const value = params.get(key) || DEFAULTS[key];
    if (input.tagName === "SELECT" && key === "version" && value) ensureVersionOption(value);
    input.value = value;
  }
}

function writeParams() {
  const params = new URLSearchParams();
  for (const [key, input] of Object.entries(controls)) {
    const value = key === "q" ? input.value.trim() : input.value;
    if (value && value !== DEFAULTS[key]) params.set(key, value);
  }
  const query = params.toString();
  history.replaceState(null, "", query ? `?${query}` : location.pathname);
}

function ensureVersionOption(version) {
  if ([...controls.version.options].some((o) => o.value === version)) return;
  const option = document.createElement("option");
  option.value = version;
  option.textContent = version;
  controls.version.append(option);
}

function tile(label, key, value, warn = false) {
  return `<div${warn ? ` class="warn"` : ""}><dt>${esc(label)}</dt><dd data-total="${esc(key)}">${esc(value)}</dd></div>`;
}

function renderTotals(t, newest) {
  totalsBox.innerHTML = [
    tile("Banks", "banks", t.banks),
    tile("Nodes online", "online", `${t.online} of ${t.nodes}`, t.online < t.nodes),
    tile("On battery", "on_battery", t.on_battery, t.on_battery > 0),
    tile("With health alerts", "with_alerts", t.with_alerts, t.with_alerts > 0),
    tile("Newest version", "newest", newest || "—"),
    tile("Behind the newest", "behind_newest", t.behind_newest),
    tile("Not on the wanted version", "behind_wanted", t.behind_wanted),
  ].join("");
  totalsBox.setAttribute("aria-busy", "false");
}

function renderVersions(data) {
  const nodes = data.totals.nodes || 0;
  versionsBody.innerHTML = data.versions.length
    ? data.versions.map((v) => {
      const share = nodes ? Math.round((v.nodes * 100) / nodes) : 0;
      const notes = [];
      if (v.newest) notes.push(`<span class="pill ok">newest</span>`);
      else notes.push(`<span class="pill behind"><span aria-hidden="true">↓ </span>behind</span>`);
      if (v.wanted_by.length) notes.push(`<span class="pill wanted">wanted at ${v.wanted_by.length} bank${v.wanted_by.length === 1 ? "" : "s"}</span>`);
      return `<tr data-version="${esc(v.version)}"${v.newest ? "" : ` class="version-behind"`}>` +
        `<th scope="row"><button type="button" class="link-button" data-pick-version="${esc(v.version)}" aria-label="List the banks on version ${esc(v.version)}">${esc(v.version)}</button></th>` +
        `<td class="num" data-nodes="${v.nodes}">${v.nodes}</td>` +
        `<td><svg class="bar" width="120" height="10" viewBox="0 0 120 10" aria-hidden="true"><rect class="seg-free" width="120" height="10"/><rect class="seg-${v.newest ? "version-newest" : "version-behind"}" width="${(share * 1.2).toFixed(1)}" height="10"/></svg> <span class="num">${share} %</span></td>` +
        `<td>${notes.join(" ")}</td></tr>`;
    }).join("")
    : `<tr><td colspan="4" class="muted">No node has reported a version yet.</td></tr>`;
  const chosen = controls.version.value;
  controls.version.innerHTML = `<option value="">Any</option>` +
    data.versions.map((v) => `<option value="${esc(v.version)}">${esc(v.version)} (${v.nodes})</option>`).join("");
  if (chosen) ensureVersionOption(chosen);
  controls.version.value = chosen;
}

function renderLimits(limits) {
  limitsBox.textContent = `Alerts: CPU over ${limits.cpu_temp_max_c} °C, enclosure over ` +
    `${limits.enclosure_temp_max_c} °C, disk under ${limits.disk_free_min_mb} MB or ` +
    `${limits.disk_free_min_pct} % free, power lost, battery low.`;
}

function matches(bank, c) {
  if (c.status === "online" && !bank.online) return false;
  if (c.status === "offline" && (bank.online || !bank.node_id)) return false;
  if (c.status === "no_node" && bank.node_id) return false;
  if (c.show === "alerts" && !bank.alerts.length) return false;
  if (c.show === "battery" && bank.power !== "battery") return false;
  if (c.show === "behind_newest" && !bank.behind_newest) return false;
  if (c.show === "behind_wanted" && !bank.behind_wanted) return false;
  if (c.version && bank.version !== c.version) return false;
  if (!c.q) return true;
  return `${bank.bank_id} ${bank.bank_name}`.toLowerCase().includes(c.q);
}

// Versions compare by their numeric parts (1.10 after 1.9); the API orders the spread exactly.
function versionParts(version) {
  return String(version || "").split(/[^0-9]+/).filter(Boolean).map(Number);
}

function compareVersions(a, b) {
  const x = versionParts(a);
  const y = versionParts(b);
  for (let i = 0; i < Math.max(x.length, y.length); i += 1) {
    const d = (x[i] || 0) - (y[i] || 0);
    if (d) return d;
  }
  return 0;
}

const SORT_VALUE = {
  uptime: (b) => b.uptime_s,
  disk: (b) => b.disk_free_bytes,
  cpu: (b) => b.cpu_temp_c,
  enclosure: (b) => b.enclosure_temp_c,
  seen: (b) => (b.last_seen_at ? Date.parse(b.last_seen_at) : null),
  alerts: (b) => b.alerts.length,
};

function comparator(sort, order) {
  const sign = order === "desc" ? -1 : 1;
  const byBank = (a, b) => a.bank_id.localeCompare(b.bank_id);
  if (sort === "version") {
    return (a, b) => (!a.version - !b.version) || sign * compareVersions(a.version, b.version) || byBank(a, b);
  }
  const value = SORT_VALUE[sort];
  if (!value) return (a, b) => sign * byBank(a, b);
  // Banks without a reading go last, whichever the order.
  return (a, b) => {
    const x = value(a);
    const y = value(b);
    if (x === null || x === undefined) return y === null || y === undefined ? byBank(a, b) : 1;
    if (y === null || y === undefined) return -1;
    return sign * (x - y) || byBank(a, b);
  };
}

function warnCell(text, warn, label) {
  return warn
    ? `<span class="health-warn" title="${esc(label)}"><span aria-hidden="true">⚠ </span>${esc(text)}<span class="visually-hidden"> (${esc(label)})</span></span>`
    : esc(text);
}

function statusCell(bank) {
  if (!bank.node_id) return `<span class="pill off">no node</span>`;
  return bank.online ? `<span class="pill ok">online</span>` : `<span class="pill off">offline</span>`;
}

function versionCell(bank) {
  if (!bank.version) return `<span class="muted">—</span>`;
  const notes = [];
  if (bank.behind_newest) notes.push("behind the newest");
  if (bank.behind_wanted) notes.push(`wanted ${bank.wanted_version}`);
  const text = esc(bank.version);
  return notes.length
    ? `<span class="version-behind"><span aria-hidden="true">↓ </span>${text}</span><div class="sub">${esc(notes.join(" · "))}</div>`
    : text;
}

function diskCell(bank, limits) {
  if (bank.disk_free_bytes === null || bank.disk_free_bytes === undefined) return "—";
  const pct = bank.disk_free_pct;
  const low = bank.disk_free_bytes < limits.disk_free_min_mb * 1e6 || (pct !== null && pct < limits.disk_free_min_pct);
  const of = bank.disk_total_bytes ? ` of ${fmtBytes(bank.disk_total_bytes)}` : "";
  return `${warnCell(fmtBytes(bank.disk_free_bytes), low, "disk low")}<div class="sub">${esc(`${pct ?? "—"} %${of}`)}</div>`;
}

function powerCell(bank) {
  const low = bank.battery_low === true;
  if (bank.power === "battery") {
    return warnCell(low ? "Battery, low" : "Battery", true, low ? "power lost, battery low" : "power lost");
  }
  if (bank.power === "mains") return low ? warnCell("Mains, battery low", true, "battery low") : "Mains";
  return `<span class="muted">unknown</span>`;
}

function alertsCell(bank) {
  if (!bank.alerts.length) return `<span class="muted">none</span>`;
  const items = bank.alerts.map((a) =>
    `<li data-alert-type="${esc(a.type)}"><a href="/ops/alerts?bank_id=${encodeURIComponent(bank.bank_id)}&amp;type=${encodeURIComponent(a.type)}">${esc(alertWords({ ...a, bank_id: bank.bank_id, detail: {} }))}</a> <span class="sub">since ${timeTag(a.created_at)}</span></li>`);
  return `<ul class="health-alerts">${items.join("")}</ul>`;
}

function bankRow(bank, limits) {
  const hot = (value, max) => value !== null && value !== undefined && value > max;
  const uptime = bank.uptime_s === null || bank.uptime_s === undefined
    ? "—"
    : `${fmtDuration(bank.uptime_s)}${bank.host_uptime_s !== null && bank.host_uptime_s !== undefined ? `<div class="sub">computer ${fmtDuration(bank.host_uptime_s)}</div>` : ""}`;
  return `<tr data-bank="${esc(bank.bank_id)}" data-power="${esc(bank.power)}" data-alerts="${bank.alerts.length}">` +
    `<th scope="row"><a href="/ops/banks/${encodeURIComponent(bank.bank_id)}">${esc(bank.bank_name)}</a><div class="sub">${esc(bank.bank_id)}</div></th>` +
    `<td>${statusCell(bank)}</td><td data-version="${esc(bank.version || "")}">${versionCell(bank)}</td>` +
    `<td class="num">${uptime}</td><td class="num">${diskCell(bank, limits)}</td>` +
    `<td class="num" data-cpu="${bank.cpu_temp_c ?? ""}">${warnCell(fmtTemp(bank.cpu_temp_c), hot(bank.cpu_temp_c, limits.cpu_temp_max_c), "too hot")}</td>` +
    `<td class="num" data-enclosure="${bank.enclosure_temp_c ?? ""}">${warnCell(fmtTemp(bank.enclosure_temp_c), hot(bank.enclosure_temp_c, limits.enclosure_temp_max_c), "too hot")}</td>` +
    `<td data-power-cell>${powerCell(bank)}</td><td>${timeTag(bank.last_seen_at)}</td><td>${alertsCell(bank)}</td></tr>`;
}

function render() {
  if (!latest) return;
  const c = {
    q: controls.q.value.trim().toLowerCase(),
    status: controls.status.value,
    show: controls.show.value,
    version: controls.version.value,
  };
  const shown = latest.banks.filter((b) => matches(b, c)).sort(comparator(controls.sort.value, controls.order.value));
  const listed = showAll ? shown : shown.slice(0, ROWS);
  rowsBody.innerHTML = listed.length
    ? listed.map((b) => bankRow(b, latest.limits)).join("")
    : `<tr><td colspan="10" class="muted">No bank matches.</td></tr>`;
  rowsBody.setAttribute("aria-busy", "false");
  shownCount.textContent = `${shown.length} of ${latest.banks.length} banks`;
  moreBox.hidden = listed.length >= shown.length;
  hiddenCount.textContent = moreBox.hidden ? "" : `${shown.length - listed.length} more not shown`;
}

async function refresh() {
  const data = await api("GET", "/ops/api/fleet");
  const key = JSON.stringify({ ...data, generated_at: null });
  if (key === lastKey) return;
  lastKey = key;
  latest = data;
  renderTotals(data.totals, data.newest_version);
  renderVersions(data);
  renderLimits(data.limits);
  render();
}

function changed() {
  writeParams();
  render();
}

readParams();
for (const input of [controls.status, controls.show, controls.version, controls.sort, controls.order]) {
  input.addEventListener("change", changed);
}
let typing = null;
controls.q.addEventListener("input", () => {
  clearTimeout(typing);
  typing = setTimeout(changed, 200);
});
document.getElementById("fleet-filters").addEventListener("submit", (event) => {
  event.preventDefault();
  changed();
});
document.getElementById("fleet-show-all").addEventListener("click", () => {
  showAll = true;
  render();
});
versionsBody.addEventListener("click", (event) => {
  const button = event.target.closest("[data-pick-version]");
  if (!button) return;
  controls.version.value = button.dataset.pickVersion;
  changed();
  document.getElementById("banks-health-title").scrollIntoView({ block: "start" });
});
poll(refresh);
