// Alerts: filtered list (polled), acknowledge or resolve with an optional reason, raise one.
import { api, esc, humanize, isAdmin, poll, reportError, setStatus, timeTag } from "./ops.js";
import { alertWords, rawDetails } from "./words.js";

const statusInput = document.getElementById("alert-status");
const bankInput = document.getElementById("alert-bank");
const typeInput = document.getElementById("alert-type");
const rows = document.getElementById("alert-rows");
const admin = isAdmin();

const initial = new URLSearchParams(location.search);
statusInput.value = initial.get("status") || "open";
bankInput.value = initial.get("bank_id") || "";
typeInput.value = initial.get("type") || "";

function query() {
  const params = new URLSearchParams({ status: statusInput.value });
  if (bankInput.value.trim()) params.set("bank_id", bankInput.value.trim());
  if (typeInput.value) params.set("type", typeInput.value);
  return params;
}

function who(at, by) {
  return at ? `${timeTag(at)}<div class="sub">${esc(by || "")}</div>` : "—";
}

function bankCell(a) {
  if (!a.bank_id) return `<span class="muted">network</span>`;
  return `<a href="/ops/banks/${encodeURIComponent(a.bank_id)}">${esc(a.bank_name || a.bank_id)}</a><div class="sub">${esc(a.bank_id)}</div>`;
}

function row(a) {
  let actions = "";
  if (admin) {
    if (!a.acknowledged_at && !a.resolved_at) {
      actions += `<button type="button" class="button small" data-alert="${a.id}" data-act="acknowledge">Acknowledge</button> `;
    }
    if (!a.resolved_at) {
      actions += `<button type="button" class="button small" data-alert="${a.id}" data-act="resolve">Resolve</button>`;
    }
    actions = `<td class="row-actions">${actions}</td>`;
  }
  return `<tr data-alert-id="${a.id}" data-alert-type="${esc(a.type)}" data-acknowledged="${a.acknowledged_at ? "yes" : "no"}" data-resolved="${a.resolved_at ? "yes" : "no"}">` +
    `<td>${timeTag(a.created_at)}</td><td>${bankCell(a)}</td>` +
    `<td><span class="pill alert-type">${esc(humanize(a.type))}</span>${a.subject ? `<div class="sub">${esc(a.subject)}</div>` : ""}</td>` +
    `<td class="alert-words"><span class="words">${esc(alertWords(a))}</span>${a.note ? `<div class="sub">Operator note: ${esc(a.note)}</div>` : ""}${rawDetails(a.detail, { alert_id: a.id, subject: a.subject })}</td>` +
    `<td>${who(a.acknowledged_at, a.acknowledged_by)}</td><td>${who(a.resolved_at, a.resolved_by)}</td>${actions}</tr>`;
}

let lastKey = "";
async function refresh() {
  const data = await api("GET", `/ops/api/alerts?${query()}`);
  const key = JSON.stringify(data.alerts);
  if (key === lastKey) return;
  lastKey = key;
  rows.innerHTML = data.alerts.length
    ? data.alerts.map(row).join("")
    : `<tr><td colspan="${admin ? 7 : 6}" class="muted">No alerts.</td></tr>`;
}

const refreshNow = poll(refresh);

function filtersChanged() {
  history.replaceState(null, "", `?${query()}`);
  lastKey = "";
  refreshNow();
}
statusInput.addEventListener("change", filtersChanged);
typeInput.addEventListener("change", filtersChanged);
let typing = null;
bankInput.addEventListener("input", () => {
  clearTimeout(typing);
  typing = setTimeout(filtersChanged, 250);
});
document.getElementById("alert-filters").addEventListener("submit", (event) => {
  event.preventDefault();
  filtersChanged();
});

const dialog = document.getElementById("alert-dialog");
if (dialog) {
  const kind = document.getElementById("alert-action-kind");
  const id = document.getElementById("alert-action-id");
  const reason = document.getElementById("alert-reason");
  rows.addEventListener("click", (event) => {
    const button = event.target.closest("[data-act]");
    if (!button) return;
    kind.value = button.dataset.act;
    id.value = button.dataset.alert;
    reason.value = "";
    document.getElementById("alert-dialog-title").textContent =
      kind.value === "resolve" ? "Resolve the alert" : "Acknowledge the alert";
    document.getElementById("alert-submit").textContent = kind.value === "resolve" ? "Resolve" : "Acknowledge";
    dialog.showModal();
  });
  document.getElementById("alert-action").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = reason.value.trim();
    try {
      await api("POST", `/ops/api/alerts/${encodeURIComponent(id.value)}/${kind.value}`, text ? { reason: text } : {});
      dialog.close();
      setStatus(kind.value === "resolve" ? "Alert resolved." : "Alert acknowledged.");
      lastKey = "";
      refreshNow();
    } catch (error) {
      dialog.close();
      reportError(error);
    }
  });

  const raise = document.getElementById("raise-alert");
  raise.addEventListener("submit", async (event) => {
    event.preventDefault();
    const bank = document.getElementById("raise-bank").value.trim();
    const note = document.getElementById("raise-note").value.trim();
    if (!bank || !note) return;
    try {
      await api("POST", "/ops/api/alerts", { bank_id: bank, type: "manual", detail: { note } });
      raise.reset();
      setStatus(`Alert raised for ${bank}.`);
      lastKey = "";
      refreshNow();
    } catch (error) {
      reportError(error);
    }
  });
}
