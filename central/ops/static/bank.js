// One bank: compartment grid, parcels (with their recipient notices), alerts, timeline and
// charts; admin actions by dialog.
import {
  api, ApiError, esc, fmtHours, fmtPct, followCommand, humanize, isAdmin, poll,
  reportError, setStatus, stackBar, timeTag,
} from "./ops.js";
import { lineChart, throughputChart } from "./chartkit.js";
import {
  alertWords, noticeSummary, noticeSummaryText, noticeTable, rawDetails, timelineWords,
} from "./words.js";

const bankId = document.body.dataset.bankId;
const base = `/ops/api/banks/${encodeURIComponent(bankId)}`;
const grid = document.getElementById("compartment-grid");
const dialog = document.getElementById("compartment-dialog");
const facts = document.getElementById("compartment-facts");
const commandStatus = document.getElementById("command-status");
const admin = isAdmin();

let detail = null;
let selected = null;
let lastKey = "";
// Parcels whose notices the operator opened: reservation id -> the notices' HTML (null while
// loading). They stay open across refreshes, and are read again when the page changes.
const openNotices = new Map();

const ACTION_LABEL = { open: "Remote open", disable: "Disable", enable: "Enable" };
const COMMAND_STATUS = {
  pending: "sent, waiting for the node",
  acknowledged: "done, acknowledged by the node",
  failed: "failed on the node",
  expired: "expired before the node took it",
};

const STATE_LABEL = {
  free: "free",
  reserved: "reserved",
  occupied: "occupied",
  out_of_service: "out of service",
};

function renderSummary(bank) {
  document.getElementById("bank-title").textContent = `${bank.name} (${bank.id})`;
  const classes = Object.entries(bank.classes || {})
    .map(([size, c]) => `<span class="cls-sum">${esc(size)} ${stackBar(c, 60, 8)} ${c.occupied + c.reserved}/${c.total}</span>`)
    .join("");
  document.getElementById("bank-summary").innerHTML =
    `<span class="muted">${esc(bank.address || "")}</span>` +
    (bank.online ? `<span class="pill ok">online</span>` : `<span class="pill off">offline</span>`) +
    `<span>last seen ${timeTag(bank.last_seen_at)}</span>` +
    `<span id="bank-occupancy" data-occupancy="${bank.occupancy_pct}">occupancy <strong>${fmtPct(bank.occupancy_pct)}</strong></span>` +
    `<span>open alerts <strong>${bank.open_alerts}</strong></span>${classes}`;
}

function renderGrid(compartments) {
  grid.innerHTML = compartments.map((c) => {
    const door = c.door === "open" ? `<span class="badge door-open">door open</span>` : "";
    const label = `${c.label}, size ${c.size}, ${STATE_LABEL[c.state] || c.state}${c.door === "open" ? ", door open" : ""}`;
    return `<button type="button" class="cell st-${esc(c.state)}${c.door === "open" ? " is-open" : ""}" data-label="${esc(c.label)}" data-size="${esc(c.size)}" data-state="${esc(c.state)}" data-door="${esc(c.door)}" aria-label="${esc(label)}">` +
      `<span class="lbl">${esc(c.label)}</span><span class="size">${esc(c.size)}</span>${door}</button>`;
  }).join("");
  grid.setAttribute("aria-busy", "false");
  const unbound = Object.entries(detail.reserved_unbound || {}).filter(([, n]) => n > 0);
  document.getElementById("reserved-unbound").textContent = unbound.length
    ? `Reserved, not yet in a compartment: ${unbound.map(([s, n]) => `${n} × ${s}`).join(", ")}`
    : "";
}

function renderFacts() {
  const c = detail && detail.compartments.find((x) => x.label === selected);
  if (!c) return;
  document.getElementById("compartment-dialog-title").textContent = `Compartment ${c.label}`;
  const rows = [
    ["Size", c.size],
    ["State", STATE_LABEL[c.state] || c.state],
    ["Door", c.door],
  ];
  if (c.parcel) {
    rows.push(
      ["Tracking number", c.parcel.tracking_number],
      ["Carrier", c.parcel.carrier],
      ["Parcel status", c.parcel.status],
      ["Dwell", fmtHours(c.parcel.dwell_hours)],
      ["Notices", noticeSummaryText(c.parcel.notice_counts)],
    );
  }
  facts.innerHTML = rows.map(([k, v]) => `<dt>${esc(k)}</dt><dd data-fact="${esc(k.toLowerCase())}">${esc(v)}</dd>`).join("");
  const enable = document.getElementById("action-enable");
  const disable = document.getElementById("action-disable");
  if (enable && disable) {
    enable.hidden = c.state !== "out_of_service";
    disable.hidden = c.state === "out_of_service";
  }
}

const PARCEL_COLUMNS = admin ? 9 : 8;

function noticesCell(p) {
  const counts = p.notice_counts || {};
  if (!Object.values(counts).some((n) => n > 0)) return `<td class="notices-cell"><span class="muted">none</span></td>`;
  const id = esc(p.reservation_id);
  const open = openNotices.has(p.reservation_id);
  return `<td class="notices-cell"><button type="button" class="notice-toggle" data-notices="${id}" aria-expanded="${open}" aria-controls="notices-${id}" ` +
    `aria-label="Notices: ${esc(noticeSummaryText(counts))}">${noticeSummary(counts)}</button></td>`;
}

function noticeRow(rid) {
  const body = openNotices.get(rid) ?? `<p class="muted">Loading…</p>`;
  return `<tr class="notice-detail" id="notices-${esc(rid)}" data-notices-for="${esc(rid)}"><td colspan="${PARCEL_COLUMNS}"><div class="notice-detail-body">${body}</div></td></tr>`;
}

function parcelRows(compartments) {
  const rows = compartments.filter((c) => c.parcel).map((c) => {
    const p = c.parcel;
    const actions = admin
      ? `<td class="row-actions"><button type="button" class="button small" data-act="extend" data-reservation="${esc(p.reservation_id)}">Extend</button> ` +
        `<button type="button" class="button small" data-act="reissue" data-reservation="${esc(p.reservation_id)}">Reissue code</button></td>`
      : "";
    const row = `<tr data-reservation="${esc(p.reservation_id)}"><td>${esc(c.label)}</td>` +
      `<td><a href="/ops/parcels?tracking_number=${encodeURIComponent(p.tracking_number)}">${esc(p.tracking_number)}</a></td>` +
      `<td>${esc(p.carrier)}</td><td>${esc(humanize(p.status))}</td><td>${timeTag(p.deposited_at)}</td>` +
      `<td>${fmtHours(p.dwell_hours)}</td><td>${timeTag(p.pickup_deadline)}</td>${noticesCell(p)}${actions}</tr>`;
    return openNotices.has(p.reservation_id) ? row + noticeRow(p.reservation_id) : row;
  });
  const shown = new Set(compartments.filter((c) => c.parcel).map((c) => c.parcel.reservation_id));
  for (const rid of [...openNotices.keys()]) if (!shown.has(rid)) openNotices.delete(rid);
  document.getElementById("bank-parcels").innerHTML = rows.length ? rows.join("") : `<tr><td colspan="${PARCEL_COLUMNS}" class="muted">No parcels in this bank.</td></tr>`;
}

// A parcel's notices in full, from their own API: the bank's answer carries only the counts.
async function loadNotices(rid) {
  let html;
  try {
    const data = await api("GET", `/ops/api/parcels/${encodeURIComponent(rid)}/notices`);
    html = noticeTable(data.notices);
  } catch (error) {
    html = `<p class="error">Could not load the notices: ${esc(error.message)}</p>`;
  }
  if (!openNotices.has(rid)) return;
  openNotices.set(rid, html);
  const cell = document.querySelector(`#bank-parcels tr[data-notices-for="${CSS.escape(rid)}"] .notice-detail-body`);
  if (cell) cell.innerHTML = html;
}

document.getElementById("bank-parcels").addEventListener("click", (event) => {
  const button = event.target.closest("[data-notices]");
  if (!button) return;
  const rid = button.dataset.notices;
  const row = button.closest("tr");
  if (openNotices.has(rid)) {
    openNotices.delete(rid);
    const shown = document.querySelector(`#bank-parcels tr[data-notices-for="${CSS.escape(rid)}"]`);
    if (shown) shown.remove();
  } else {
    openNotices.set(rid, null);
    row.insertAdjacentHTML("afterend", noticeRow(rid));
    loadNotices(rid);
  }
  button.setAttribute("aria-expanded", String(openNotices.has(rid)));
});

function alertList(alerts) {
  const box = document.getElementById("bank-alerts");
  if (!alerts.length) {
    box.innerHTML = `<p class="muted">No open alerts.</p>`;
    return;
  }
  box.innerHTML = `<ul class="alert-list">${alerts.map((a) => {
    const acked = a.acknowledged_at ? `<span class="pill">acknowledged by ${esc(a.acknowledged_by || "")}</span>` : "";
    const actions = admin
      ? (a.acknowledged_at ? "" : `<button type="button" class="button small" data-alert="${a.id}" data-alert-act="acknowledge">Acknowledge</button> `) +
        `<button type="button" class="button small" data-alert="${a.id}" data-alert-act="resolve">Resolve</button>`
      : "";
    return `<li data-alert-id="${a.id}" data-alert-type="${esc(a.type)}"><div><strong>${esc(alertWords(a))}</strong> ${acked}<div class="sub">${timeTag(a.created_at)}</div>${rawDetails(a.detail, { alert_id: a.id })}</div><div class="row-actions">${actions}</div></li>`;
  }).join("")}</ul>`;
}

function timeline(entries, compartments) {
  const box = document.getElementById("timeline");
  const tracking = new Map(compartments.filter((c) => c.parcel).map((c) => [c.parcel.reservation_id, c.parcel.tracking_number]));
  box.innerHTML = entries.length
    ? entries.map((e) => {
      const ids = e.reservation_id ? { reservation_id: e.reservation_id } : {};
      return `<li data-kind="${esc(e.kind)}" data-type="${esc(e.type)}"><span class="when">${timeTag(e.at)}</span> <span class="kind">${esc(humanize(e.kind))}</span> ` +
        `<span class="words">${esc(timelineWords(e, bankId, tracking))}</span>${rawDetails(e.detail, { type: e.type, ...ids })}</li>`;
    }).join("")
    : `<li class="muted">Nothing yet.</li>`;
}

async function refresh() {
  let data;
  try {
    data = await api("GET", base);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      document.getElementById("bank-summary").textContent = "There is no bank with this id.";
      grid.setAttribute("aria-busy", "false");
      return;
    }
    throw error;
  }
  detail = data;
  const key = JSON.stringify(data);
  if (key === lastKey) return;
  lastKey = key;
  renderSummary(data.bank);
  renderGrid(data.compartments);
  parcelRows(data.compartments);
  for (const rid of openNotices.keys()) loadNotices(rid);
  alertList(data.alerts || []);
  timeline(data.timeline || [], data.compartments);
  if (dialog.open) renderFacts();
}

const refreshNow = poll(refresh);

grid.addEventListener("click", (event) => {
  const cell = event.target.closest("[data-label]");
  if (!cell) return;
  selected = cell.dataset.label;
  commandStatus.textContent = "";
  renderFacts();
  dialog.showModal();
});

// What central shows once a command's effect has reached it. The node acknowledges a command
// before its next sync pass reports the state the command caused, so one refresh at the
// acknowledgement can still read the old state.
const OUTCOME = {
  disable: (c) => c.state === "out_of_service",
  enable: (c) => c.state !== "out_of_service",
};
const SETTLE_TRIES = 20;
const SETTLE_MS = 500;

async function showOutcome(label, reached) {
  for (let i = 0; i < SETTLE_TRIES; i += 1) {
    await refreshNow();
    const c = detail && detail.compartments.find((x) => x.label === label);
    if (!reached || !c || reached(c)) return;
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
  }
}

const actionForm = document.getElementById("compartment-action");
if (actionForm) {
  actionForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const action = event.submitter ? event.submitter.value : "open";
    const reason = actionForm.reason.value.trim();
    if (!reason) {
      commandStatus.textContent = "A reason is required.";
      actionForm.reason.focus();
      return;
    }
    const buttons = actionForm.querySelectorAll("button");
    buttons.forEach((b) => { b.disabled = true; });
    const label = selected;
    try {
      const sent = await api("POST", `${base}/compartments/${encodeURIComponent(label)}/${action}`, { reason });
      commandStatus.dataset.commandId = sent.command_id;
      commandStatus.dataset.commandStatus = sent.status;
      commandStatus.textContent = `${ACTION_LABEL[action]}: ${COMMAND_STATUS[sent.status] || sent.status}`;
      actionForm.reason.value = "";
      await refreshNow();
      const command = await followCommand(sent.command_id, (update) => {
        commandStatus.dataset.commandStatus = update.status;
        const outcome = update.result && update.result.detail ? ` (${update.result.detail})` : "";
        commandStatus.textContent = `${ACTION_LABEL[action]}: ${COMMAND_STATUS[update.status] || update.status}${outcome}`;
      });
      await showOutcome(label, command && command.status === "acknowledged" ? OUTCOME[action] : null);
    } catch (error) {
      commandStatus.textContent = error instanceof ApiError ? `${error.code}: ${error.message}` : String(error);
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  });
}

async function alertAction(id, act) {
  try {
    await api("POST", `/ops/api/alerts/${encodeURIComponent(id)}/${act}`, {});
    setStatus(`Alert ${act === "resolve" ? "resolved" : "acknowledged"}.`);
    refreshNow();
  } catch (error) {
    reportError(error);
  }
}

document.getElementById("bank-alerts").addEventListener("click", (event) => {
  const button = event.target.closest("[data-alert]");
  if (button) alertAction(button.dataset.alert, button.dataset.alertAct);
});

const parcelDialog = document.getElementById("parcel-dialog");
if (parcelDialog) {
  const form = document.getElementById("parcel-action");
  const status = document.getElementById("parcel-status");
  document.getElementById("bank-parcels").addEventListener("click", (event) => {
    const button = event.target.closest("[data-act]");
    if (!button) return;
    const kind = button.dataset.act;
    document.getElementById("parcel-action-kind").value = kind;
    document.getElementById("parcel-action-id").value = button.dataset.reservation;
    document.getElementById("extend-fields").hidden = kind !== "extend";
    document.getElementById("extend-hours").disabled = kind !== "extend";
    document.getElementById("parcel-dialog-title").textContent = kind === "extend" ? "Extend the pickup deadline" : "Invalidate and reissue the pickup code";
    status.textContent = "";
    parcelDialog.showModal();
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const kind = document.getElementById("parcel-action-kind").value;
    const id = encodeURIComponent(document.getElementById("parcel-action-id").value);
    const reason = document.getElementById("parcel-reason").value.trim();
    if (!reason) {
      status.textContent = "A reason is required.";
      return;
    }
    try {
      if (kind === "extend") {
        const hours = Number(document.getElementById("extend-hours").value);
        await api("POST", `/ops/api/reservations/${id}/extend`, { hours, reason });
        status.textContent = `Deadline extended by ${hours} h.`;
      } else {
        const sent = await api("POST", `/ops/api/reservations/${id}/reissue-code`, { reason });
        const show = (s) => { status.textContent = `Reissue code: ${COMMAND_STATUS[s] || s}`; };
        show(sent.status);
        followCommand(sent.command_id, (command) => show(command.status)).catch(reportError);
      }
      document.getElementById("parcel-reason").value = "";
      refreshNow();
    } catch (error) {
      status.textContent = error instanceof ApiError ? `${error.code}: ${error.message}` : String(error);
    }
  });
}

// Charts refresh less often than the grid: a minute is plenty for a 24-hour window.
const occupancy = lineChart(document.getElementById("bank-occupancy-chart"));
const throughput = throughputChart(document.getElementById("bank-throughput-chart"));
const q = `bank_id=${encodeURIComponent(bankId)}`;
poll(async () => {
  const [occ, thr] = await Promise.all([
    api("GET", `/ops/api/charts/occupancy?${q}&hours=24`),
    api("GET", `/ops/api/charts/throughput?${q}&hours=24`),
  ]);
  occupancy.show(occ.series);
  throughput.show(thr.series);
}, 60000);
